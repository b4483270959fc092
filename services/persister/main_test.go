package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/diag"
	"github.com/chatrt/chat/pkg/natsconn"
	"github.com/chatrt/chat/services/persister/app"
)

func TestRunServesAndShutsDown(t *testing.T) {
	n := chattest.StartNATS(t)
	m := chattest.StartMongo(t)
	cfg := app.Config{
		NATS: natsconn.NATS{URL: n.URL()}, MongoURI: m.URI(), HTTPAddr: chattest.FreeAddr(t),
		Stream: chat.DefaultStreamOptions(), ShutdownTimeout: 5 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	dcfg := diag.Config{DebugAddr: chattest.FreeAddr(t)}
	go func() { done <- run(ctx, cfg, dcfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()

	chattest.Eventually(t, 15*time.Second, func() bool {
		res, err := http.Get("http://" + cfg.HTTPAddr + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, "run serves /readyz")
	chattest.CheckBuildInfo(t, "http://"+cfg.HTTPAddr, "persister")
	chattest.CheckPprof(t, dcfg.DebugAddr)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

// TestRunRefusesRemoteDebugAddr: a profiling endpoint reachable from other machines must
// be asked for explicitly; run fails before connecting anything.
func TestRunRefusesRemoteDebugAddr(t *testing.T) {
	err := run(context.Background(), app.Config{}, diag.Config{DebugAddr: "0.0.0.0:0"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "CHAT_DEBUG_ALLOW_REMOTE") {
		t.Fatalf("run with CHAT_DEBUG_ADDR=0.0.0.0:0: %v", err)
	}
}
