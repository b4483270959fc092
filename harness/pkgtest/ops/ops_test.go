// Package ops_test checks pkg/ops against a real nats-server (in the harness module, so
// that pkg's go.mod does not require nats-server).
package ops_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/ops"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// TestEveryNodeAnswers: two nodes on separate connections both answer one request, each
// with its own service's series only (a shared registry, as in the all-in-one), its
// readiness and its rooms; a node whose Run ended no longer answers.
func TestEveryNodeAnswers(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(s.Shutdown)
	conn := func() *nats.Conn {
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	reg := prometheus.NewRegistry()
	posts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_api_posts_total", Help: "h"}, []string{"status"})
	lag := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chat_pusher_lag_seconds", Help: "h"})
	reg.MustRegister(posts, lag)
	posts.WithLabelValues("201").Add(3)
	lag.Observe(0.5)
	lag.Observe(1.5)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	api := ops.NewResponder(conn(), ops.Node{Service: "api", Addr: "a:1", Metrics: reg,
		Ready: func(context.Context) error { return errors.New("draining") }, Draining: func() bool { return true }})
	pusherCtx, stopPusher := context.WithCancel(ctx)
	pusher := ops.NewResponder(conn(), ops.Node{Service: "pusher", Addr: "p:1", Metrics: reg,
		Rooms: func() []ops.RoomStats { return []ops.RoomStats{{Room: "hot", Subscribers: 2, MessagesPerSecond: 1.5}} }})
	done := make(chan struct{}, 2)
	go func() { _ = api.Run(ctx); done <- struct{}{} }()
	go func() { _ = pusher.Run(pusherCtx); done <- struct{}{} }()

	requester := conn()
	var nodes []ops.Stats
	deadline := time.Now().Add(10 * time.Second)
	for len(nodes) != 2 && time.Now().Before(deadline) { // the subscriptions become active as Run starts
		if nodes, _, err = ops.Gather(ctx, requester, 200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if len(nodes) != 2 || nodes[0].Service != "api" || nodes[1].Service != "pusher" {
		t.Fatalf("nodes %+v", nodes)
	}
	a, p := nodes[0], nodes[1]
	if a.Ready || a.NotReady != "draining" || !a.Draining || a.Addr != "a:1" || a.Node == "" || a.Version == "" {
		t.Errorf("api %+v", a)
	}
	if a.Metrics[`chat_api_posts_total{status="201"}`] != 3 || len(a.Metrics) != 1 {
		t.Errorf("api metrics %v", a.Metrics)
	}
	if !p.Ready || p.Draining || len(p.Rooms) != 1 || p.Rooms[0].Room != "hot" {
		t.Errorf("pusher %+v", p)
	}
	if p.Metrics["chat_pusher_lag_seconds_sum"] != 2 || p.Metrics["chat_pusher_lag_seconds_count"] != 2 || len(p.Metrics) != 2 {
		t.Errorf("pusher metrics %v", p.Metrics)
	}

	stopPusher()
	<-done
	if nodes, _, err = ops.Gather(ctx, requester, 300*time.Millisecond); err != nil || len(nodes) != 1 || nodes[0].Service != "api" {
		t.Fatalf("after the pusher stopped: %+v %v", nodes, err)
	}
}
