package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	apiapp "github.com/chatrt/chat/services/api/app"
	persisterapp "github.com/chatrt/chat/services/persister/app"
	pusherapp "github.com/chatrt/chat/services/pusher/app"
	"github.com/kelseyhightower/envconfig"
	"github.com/prometheus/client_golang/prometheus"
)

// TestMain lets the test binary serve as a -procs child, as the chatload binary does.
func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(childMain(spec))
	}
	os.Exit(m.Run())
}

// startChat runs the api, a persister and a pusher in this process on one httptest server
// and one metrics registry, like the all-in-one does (/ws → pusher, the rest → api), on
// test NATS and MongoDB servers.
func startChat(t *testing.T) string {
	t.Helper()
	nc, _ := chattest.StartNATS(t).Connect(t)
	mc := chattest.StartMongo(t).Connect(t)
	var acfg apiapp.Config
	var pcfg pusherapp.Config
	var scfg persisterapp.Config
	for _, c := range []any{&acfg, &pcfg, &scfg} {
		if err := envconfig.Process("chatload_test_unset", c); err != nil {
			t.Fatal(err)
		}
	}
	acfg.RateLimit = 0
	scfg.PendingInterval = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	api, err := apiapp.New(ctx, acfg, apiapp.Deps{NATS: nc, Mongo: mc, Metrics: reg, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	pusher, err := pusherapp.New(ctx, pcfg, pusherapp.Deps{NATS: nc, Mongo: mc, Metrics: reg, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	persister, err := persisterapp.New(ctx, scfg, persisterapp.Deps{NATS: nc, Mongo: mc, Metrics: reg, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", pusher.Handler())
	mux.Handle("/", api.Handler())
	srv := httptest.NewServer(mux)
	done := make(chan struct{}, 3)
	go func() { _ = api.Run(ctx); done <- struct{}{} }()
	go func() { _ = pusher.Run(ctx); done <- struct{}{} }()
	go func() { _ = persister.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		srv.Close()
		for range 3 {
			<-done
		}
	})
	return srv.URL
}

func smokeConfig(t *testing.T, base string, procs int) config {
	cfg, err := parseFlags([]string{"-api", base, "-ws", "ws" + strings.TrimPrefix(base, "http") + "/ws",
		"-subs", "20", "-rooms", "2", "-rate", "100", "-publishers", "2", "-duration", "1500ms", "-warmup", "500ms",
		"-drain", "5s", "-procs", itoa(procs), "-server-pid", itoa(os.Getpid()), "-src-ips", "127.0.0.1,127.0.0.2",
		"-size", "100"})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func itoa(n int) string { return strconv.Itoa(n) }

// checkRun checks that every subscriber got every acknowledged post of its room exactly
// once and that the report adds up.
func checkRun(t *testing.T, rep *report) {
	t.Helper()
	var sb strings.Builder
	rep.writeSummary(&sb)
	t.Log("\n" + sb.String())
	p, d := &rep.Posts, &rep.Deliveries
	if p.Acked == 0 || p.Acked != p.Attempted {
		t.Errorf("posts: %d acked of %d attempted (%v, %s)", p.Acked, p.Attempted, p.Statuses, p.FirstError)
	}
	if d.Subscribers != 20 || d.ConnectFailed != 0 {
		t.Errorf("subscribers: %d connected, %d failed", d.Subscribers, d.ConnectFailed)
	}
	// 20 subscribers over 2 rooms: each acknowledged post is expected 10 times.
	if d.Expected != 10*p.Acked || d.Total != d.Expected {
		t.Errorf("deliveries: %d of %d expected (%d acked posts)", d.Total, d.Expected, p.Acked)
	}
	if d.Lost != 0 || d.Duplicates != 0 || d.OutOfOrder != 0 || d.BadFrames != 0 || d.Disconnected != 0 {
		t.Errorf("lost %d, duplicated %d, out of order %d, unparsable %d, disconnected %d",
			d.Lost, d.Duplicates, d.OutOfOrder, d.BadFrames, d.Disconnected)
	}
	if d.E2E.Count == 0 || d.E2E.Count != d.Window || p.Latency.Count == 0 {
		t.Errorf("latencies: e2e %d (window deliveries %d), posts %d", d.E2E.Count, d.Window, p.Latency.Count)
	}
	if rep.Server.CPUSeconds <= 0 || rep.Server.RSSEnd <= 0 || rep.Server.WriteCalls == 0 {
		t.Errorf("server sample: cpu %.2f s, rss %d, write calls %d", rep.Server.CPUSeconds, rep.Server.RSSEnd, rep.Server.WriteCalls)
	}
}

func TestSmoke(t *testing.T) {
	base := startChat(t)
	t.Run("in-process", func(t *testing.T) {
		rep, err := run(context.Background(), smokeConfig(t, base, 0))
		if err != nil {
			t.Fatal(err)
		}
		checkRun(t, rep)
	})
	t.Run("children", func(t *testing.T) {
		rep, err := run(context.Background(), smokeConfig(t, base, 2))
		if err != nil {
			t.Fatal(err)
		}
		checkRun(t, rep)
		if rep.Tool.ChildrenCPUSeconds <= 0 {
			t.Errorf("children reported no CPU time")
		}
	})
}

func TestParseFrame(t *testing.T) {
	sent, idx, seq, ok := parseFrame([]byte(`{"type":"message","id":"x","room":"load-0","name":"load","message":"1764000000123456789.42 xxxx","sent_at":"2026-11-26T12:00:00.123Z","seq":9001}`))
	if !ok || sent != 1764000000123456789 || idx != 42 || seq != 9001 {
		t.Errorf("got %d %d %d %v", sent, idx, seq, ok)
	}
	for _, bad := range []string{
		`{"type":"message","message":"hello","seq":1}`,
		`{"type":"message","message":"1.x ","seq":1}`,
		`{"type":"message","message":"1.2 "}`,
	} {
		if _, _, _, ok := parseFrame([]byte(bad)); ok {
			t.Errorf("parsed %s", bad)
		}
	}
}

func TestHist(t *testing.T) {
	var h atomicHist
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	s := h.snapshot()
	sum := s.summary()
	if sum.Count != 1000 || sum.Max != 1000 {
		t.Fatalf("count %d max %v", sum.Count, sum.Max)
	}
	for _, c := range []struct{ got, want float64 }{{sum.P50, 500}, {sum.P90, 900}, {sum.P99, 990}} {
		if c.got < c.want || c.got > c.want*1.04 {
			t.Errorf("quantile %v, want %v within 4%%", c.got, c.want)
		}
	}
	var m hist
	m.merge(s)
	m.merge(s)
	if m.count() != 2000 || m.summary().P50 != sum.P50 {
		t.Errorf("merge: count %d p50 %v", m.count(), m.summary().P50)
	}
	for v := uint64(0); v < 1<<20; v = v*3/2 + 1 {
		if b := bucketOf(v); bucketHigh(b) < v || (b > 0 && bucketHigh(b-1) >= v) {
			t.Fatalf("value %d in bucket %d [.., %d]", v, b, bucketHigh(b))
		}
	}
}

// TestPresenceLoad: with -presence, -typers and -churn every subscriber gets its presence
// frame, the typers' notices reach the others, the churn connections' joins and leaves
// come as join and leave frames, and the messages are still all delivered exactly once.
func TestPresenceLoad(t *testing.T) {
	base := startChat(t)
	cfg := smokeConfig(t, base, 0)
	cfg.Presence = presenceConfig{On: true, Typers: 4, TypingEvery: 2100 * time.Millisecond, Churn: 20, ChurnHold: 300 * time.Millisecond}
	rep, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, rep)
	pr, ch := &rep.Presence, &rep.Churn
	if pr.Frames.Presence != 20 || pr.Frames.Join == 0 || pr.Frames.Leave == 0 || pr.Frames.Typing == 0 {
		t.Errorf("presence frames %+v: want 20 presence frames, joins, leaves and typing", pr.Frames)
	}
	// 4 typers over 2 s of publishing: each sends once (phases 0, 0.5, 1, 1.5 s of 2.1).
	if pr.TypingSent < 4 || pr.TypingErrors != 0 {
		t.Errorf("typing: %d sent, %d failed", pr.TypingSent, pr.TypingErrors)
	}
	// 10 connections a second for ~2 s.
	if ch.Joined < 15 || ch.Failed != 0 {
		t.Errorf("churn: %+v", ch)
	}
}

func TestPresenceFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-typers", "2"},                  // typing needs names
		{"-presence", "-churn", "-1"},     // negative
		{"-presence", "-churn-hold", "0"}, // no hold
		{"-presence", "-typing-every", "0"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	cfg, err := parseFlags([]string{"-presence", "-typers", "50", "-churn", "100"})
	if err != nil || !cfg.Presence.On || cfg.Presence.Typers != 50 || cfg.Presence.Churn != 100 || cfg.Presence.ChurnHold != time.Second {
		t.Errorf("got %+v, %v", cfg.Presence, err)
	}
}
