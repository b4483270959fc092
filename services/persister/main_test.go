package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/natsconn"
	"github.com/chatrt/chat/services/persister/app"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestRunServesAndShutsDown(t *testing.T) {
	n := chattest.StartNATS(t)
	m := chattest.StartMongo(t)
	cfg := app.Config{
		NATS: natsconn.NATS{URL: n.URL()}, MongoURI: m.URI(), HTTPAddr: freeAddr(t),
		Stream: chat.DefaultStreamOptions(), ShutdownTimeout: 5 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()

	chattest.Eventually(t, 15*time.Second, func() bool {
		res, err := http.Get("http://" + cfg.HTTPAddr + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, "run serves /readyz")
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
