package app_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/services/api/app"
)

// changeRequests are one request of each change route on message m, authorized with key.
func changeRequests(m wireMessage) []struct{ method, path, body string } {
	return []struct{ method, path, body string }{
		{"PATCH", msgPath(m), `{"message":"edited"}`},
		{"POST", msgPath(m) + "/reactions", `{"emoji":"👍","name":"Ann"}`},
		{"DELETE", msgPath(m) + "/reactions/👍?name=Ann", ``},
		{"DELETE", msgPath(m), ``},
	}
}

// TestChangesDuringOutages: NATS down answers 503 + Retry-After and publishes nothing;
// MongoDB down answers 503 (history unavailable); both recover.
func TestChangesDuringOutages(t *testing.T) {
	e := newEnv(t, func(c *app.Config) { c.HistoryTimeout = time.Second })
	m := e.post("general", "Ann", "x")
	hdr := []string{"Content-Type", "application/json", "Edit-Key", m.EditKey}

	e.nats.Stop()
	chattest.Eventually(t, 10*time.Second, func() bool { return !e.nc.IsConnected() }, "still connected")
	for _, r := range changeRequests(m) {
		resp, body := e.do(r.method, r.path, r.body, hdr...)
		wantError(t, resp, body, http.StatusServiceUnavailable)
		wantRetryAfter(t, resp)
	}
	e.nats.Start()
	chattest.Eventually(t, 10*time.Second, e.nc.IsConnected, "did not reconnect")
	if e.count() != 1 {
		t.Fatalf("stream has %d messages, want only the post", e.count())
	}

	e.mongo.Stop()
	for _, r := range changeRequests(m) {
		resp, body := e.do(r.method, r.path, r.body, hdr...)
		wantError(t, resp, body, http.StatusServiceUnavailable)
		wantRetryAfter(t, resp)
		if !strings.Contains(string(body), "history unavailable") {
			t.Errorf("%s %s: %s", r.method, r.path, body)
		}
	}
	e.mongo.Start()
	chattest.Eventually(t, 20*time.Second, func() bool {
		resp, _ := e.do("PATCH", msgPath(m), `{"message":"after"}`, hdr...)
		return resp.StatusCode == http.StatusOK
	}, "changes did not recover after MongoDB restarted")
	if e.count() != 2 {
		t.Fatalf("stream has %d messages, want the post and one edit", e.count())
	}
}

// TestChangesAreRateLimitedAndDrained: changes share the posts' rate limit (checked
// first, bad requests included) and are refused while draining.
func TestChangesAreRateLimitedAndDrained(t *testing.T) {
	e := newEnv(t, func(c *app.Config) {
		c.RateLimit = 0.001
		c.RateBurst = 1
		c.TrustedProxies = []string{"127.0.0.1", "::1"}
	})
	m := e.post("general", "Ann", "x", "X-Forwarded-For", "203.0.113.9") // uses the burst
	for _, r := range changeRequests(m) {
		for _, body := range []string{r.body, `{`} {
			resp, b := e.do(r.method, r.path, body, "Content-Type", "application/json", "Edit-Key", m.EditKey, "X-Forwarded-For", "203.0.113.9")
			wantError(t, resp, b, http.StatusTooManyRequests)
			wantRetryAfter(t, resp)
		}
	}
	_, metrics := e.do("GET", "/metrics", "")
	if !strings.Contains(string(metrics), `chat_api_changes_total{route="edit",status="429"} 2`) {
		t.Fatalf("metrics do not count the refused edits:\n%s", metrics)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.app.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, r := range changeRequests(m) {
		resp, b := e.do(r.method, r.path, r.body, "Content-Type", "application/json", "Edit-Key", m.EditKey, "X-Forwarded-For", "203.0.113."+itoa(uint64(10+i)))
		wantError(t, resp, b, http.StatusServiceUnavailable)
		wantRetryAfter(t, resp)
	}
	if e.count() != 1 {
		t.Fatal("a change was published while draining")
	}
}

// TestReactionsConfig: CHAT_REACTIONS sets the allowlist; a bad list refuses to start.
func TestReactionsConfig(t *testing.T) {
	t.Setenv("CHAT_REACTIONS", "🚀, ✅ ,+1")
	var cfg app.Config
	if err := envconfigProcess(&cfg); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *app.Config) { c.Reactions = cfg.Reactions })
	m := e.post("general", "Ann", "x")
	for emoji, status := range map[string]int{"🚀": 200, "✅": 200, "+1": 200, "👍": 400} {
		resp, body := e.postJSON(msgPath(m)+"/reactions", `{"emoji":"`+emoji+`","name":"Ann"}`)
		if resp.StatusCode != status {
			t.Errorf("%s: %d %s, want %d", emoji, resp.StatusCode, body, status)
		}
	}
	if def := defaultConfig(t).Reactions; strings.Join(def, ",") != "👍,❤️,😂,🎉,😮,😢" {
		t.Fatalf("default CHAT_REACTIONS %q", def)
	}

	many := make([]string, 65)
	for i := range many {
		many[i] = "e" + itoa(uint64(i))
	}
	cfg = defaultConfig(t)
	cfg.Reactions = nil // empty: the default
	if _, err := app.New(t.Context(), cfg, app.Deps{NATS: e.nc, Mongo: e.mongo.Connect(t)}); err != nil {
		t.Fatalf("no reactions configured: %v", err)
	}
	for _, bad := range [][]string{{""}, {"👍", " "}, {"👍", ""}, {"a b"}, {"👍", "👍"}, {strings.Repeat("x", 33)}, {"\x01"}, many} {
		cfg := defaultConfig(t)
		cfg.Reactions = bad
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := app.New(ctx, cfg, app.Deps{NATS: e.nc, Mongo: e.mongo.Connect(t)})
		cancel()
		if err == nil || !strings.Contains(err.Error(), "CHAT_REACTIONS") {
			t.Errorf("reactions %q: %v, want a CHAT_REACTIONS error", bad, err)
		}
	}
}
