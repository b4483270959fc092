package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/diag"
	"github.com/chatrt/chat/pkg/natsconn"
	"github.com/chatrt/chat/services/api/app"
)

func TestServeAndShutdown(t *testing.T) {
	n := chattest.StartNATS(t)
	m := chattest.StartMongo(t)
	cfg := app.Config{
		NATS: natsconn.NATS{URL: n.URL()}, MongoURI: m.URI(), Stream: chat.DefaultStreamOptions(),
		ShutdownTimeout: 5 * time.Second, PublishTimeout: 5 * time.Second, PublishMaxPending: 64,
		RateLimit: 50, RateBurst: 200,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() { done <- serve(ctx, cfg, log, ln) }()

	chattest.Eventually(t, 20*time.Second, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "api never became ready")
	chattest.CheckBuildInfo(t, base, "api")
	resp, err := http.Post(base+"/messages", "application/json", strings.NewReader(`{"name":"a","message":"b"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("post: %d", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}

// TestRunRefusesRemoteDebugAddr: a profiling endpoint reachable from other machines must
// be asked for explicitly; run fails before connecting anything.
func TestRunRefusesRemoteDebugAddr(t *testing.T) {
	err := run(context.Background(), app.Config{}, diag.Config{DebugAddr: ":0"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "CHAT_DEBUG_ALLOW_REMOTE") {
		t.Fatalf("run with CHAT_DEBUG_ADDR=:0: %v", err)
	}
}
