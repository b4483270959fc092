package app

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"github.com/prometheus/client_golang/prometheus"
)

func testConfig() Config {
	return Config{
		Stream:          chat.DefaultStreamOptions(),
		ShutdownTimeout: 5 * time.Second,
		BatchSize:       100,
		AckWait:         2 * time.Second,
		PendingInterval: 50 * time.Millisecond,
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestAppStoresAndServesProbes(t *testing.T) {
	n := chattest.StartNATS(t)
	m := chattest.StartMongo(t)
	nc, js := n.Connect(t)
	mc := m.Connect(t)
	reg := prometheus.NewRegistry()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := New(ctx, testConfig(), Deps{NATS: nc, Mongo: mc, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	if code, body := get(t, srv.URL+"/healthz"); code != 200 {
		t.Fatalf("healthz %d %s", code, body)
	}
	if code, body := get(t, srv.URL+"/readyz"); code != 200 {
		t.Fatalf("readyz %d %s", code, body)
	}
	if err := a.Ready(ctx); err != nil {
		t.Fatalf("Ready = %v, want nil", err)
	}

	msg, err := chat.NewMessage(chat.Post{Name: "ann", Message: "hi <there> & you"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, msg.NATSMsg("")); err != nil {
		t.Fatal(err)
	}
	store := history.New(mc)
	chattest.Eventually(t, 10*time.Second, func() bool {
		got, err := store.Latest(ctx, chat.DefaultRoom, 10)
		return err == nil && len(got) == 1 && got[0].ID == msg.ID && got[0].Message == msg.Message
	}, "message stored")
	chattest.Eventually(t, 10*time.Second, func() bool {
		_, body := get(t, srv.URL+"/metrics")
		return strings.Contains(body, "chat_persister_stored_total 1\n") &&
			strings.Contains(body, "chat_persister_consumer_pending 0\n")
	}, "metrics")

	// MongoDB down: not ready.
	m.Stop()
	if code, body := get(t, srv.URL+"/readyz"); code != 503 || !strings.Contains(body, "mongodb") {
		t.Errorf("readyz with MongoDB down: %d %s", code, body)
	}
	if err := a.Ready(ctx); err == nil || !strings.Contains(err.Error(), "mongodb") {
		t.Errorf("Ready with MongoDB down = %v, want an error naming mongodb", err)
	}
	m.Start()
	chattest.Eventually(t, 15*time.Second, func() bool { code, _ := get(t, srv.URL+"/readyz"); return code == 200 }, "ready again")

	// Draining: not ready, and Run returns.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if code, body := get(t, srv.URL+"/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("readyz while draining: %d %s", code, body)
	}
	if err := a.Ready(context.Background()); err == nil || err.Error() != "draining" {
		t.Errorf("Ready while draining = %v, want draining", err)
	}
}
