package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/chatrt/chat/pkg/buildinfo"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// Node describes the node a Responder answers for.
type Node struct {
	Service string // api, persister or pusher
	Addr    string // CHAT_HTTP_ADDR, shown to humans
	// Metrics is the node's registry (Flatten picks the service's series). Nil: none.
	Metrics prometheus.Gatherer
	// Ready returns nil when the node serves, else why not (the /readyz check). It is
	// given at most ReadyTimeout.
	Ready func(ctx context.Context) error
	// Draining reports whether the node is shutting down. Nil: never.
	Draining func() bool
	// Rooms returns the busiest rooms (pushers). Nil: none.
	Rooms func() []RoomStats
	Log   *slog.Logger // nil: slog.Default()
}

// ReadyTimeout bounds a node's readiness check while it answers a stats request.
const ReadyTimeout = 300 * time.Millisecond

// Responder answers SubjectStats for one node.
type Responder struct {
	nc      *nats.Conn
	node    Node
	name    string
	started time.Time
}

// NewResponder returns a responder for node on nc; Run subscribes.
func NewResponder(nc *nats.Conn, node Node) *Responder {
	if node.Log == nil {
		node.Log = slog.Default()
	}
	return &Responder{nc: nc, node: node, name: NodeName(), started: time.Now()}
}

// NodeName is this process's node name: host name and process id.
func NodeName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return host + "/" + strconv.Itoa(os.Getpid())
}

// Run answers stats requests until ctx is done. Every node subscribes without a queue
// group, so every node answers every request.
func (r *Responder) Run(ctx context.Context) error {
	sub, err := r.nc.Subscribe(SubjectStats, func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		b, err := json.Marshal(r.Stats(ctx))
		if err != nil {
			r.node.Log.Warn("ops stats encode", "error", err)
			return
		}
		if err := m.Respond(b); err != nil {
			r.node.Log.Debug("ops stats reply", "error", err)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", SubjectStats, err)
	}
	// The server has the subscription once Run is running, also for a request right after.
	if err := r.nc.Flush(); err != nil {
		r.node.Log.Warn("ops subscribe flush", "error", err)
	}
	<-ctx.Done()
	if err := sub.Unsubscribe(); err != nil && r.nc.IsConnected() {
		r.node.Log.Debug("ops unsubscribe", "error", err)
	}
	return nil
}

// Stats is this node's answer now.
func (r *Responder) Stats(ctx context.Context) Stats {
	bi := buildinfo.Read()
	now := time.Now()
	s := Stats{Service: r.node.Service, Node: r.name, Addr: r.node.Addr, Version: bi.Version, Commit: bi.Commit(),
		StartedAt: r.started.UTC(), UptimeSeconds: now.Sub(r.started).Seconds(), At: now.UTC(), Ready: true}
	if r.node.Ready != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ReadyTimeout)
		if err := r.node.Ready(rctx); err != nil {
			s.Ready, s.NotReady = false, err.Error()
		}
		cancel()
	}
	if r.node.Draining != nil {
		s.Draining = r.node.Draining()
	}
	s.Metrics = map[string]float64{}
	if r.node.Metrics != nil {
		m, err := Flatten(r.node.Metrics, r.node.Service)
		if err != nil {
			r.node.Log.Debug("ops gather metrics", "error", err)
		}
		s.Metrics = m
	}
	if r.node.Rooms != nil {
		s.Rooms = r.node.Rooms()
	}
	return s
}
