package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/services/api/app"
	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkPost is one acknowledged post through the api's whole handler (middleware,
// body, publish, PubAck, answer) on a real embedded NATS, without the HTTP server's own
// connection handling: its allocations are what the api adds per post (issue 14).
func BenchmarkPost(b *testing.B) {
	n := chattest.StartNATS(b)
	m := chattest.StartMongo(b)
	nc, err := nats.Connect(n.URL(), nats.ReconnectBufSize(-1))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	var cfg app.Config
	if err := envconfig.Process("chat_api_bench_unused", &cfg); err != nil {
		b.Fatal(err)
	}
	cfg.RateLimit = 0
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := app.New(ctx, cfg, app.Deps{NATS: nc, Mongo: m.Connect(b), Metrics: prometheus.NewRegistry(),
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	h := a.Handler()
	const body = `{"name":"load-3","message":"0123456789012345678901234567890123456789012345678901234567890123"}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/rooms/load-0/messages", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
