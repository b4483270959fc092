package app_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/services/api/app"
)

func TestNATSOutage(t *testing.T) {
	e := newEnv(t, nil)
	resp, body := e.postJSON("/messages", `{"name":"a","message":"before"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	e.nats.Stop()
	chattest.Eventually(t, 10*time.Second, func() bool { return !e.nc.IsConnected() }, "app connection still up after NATS stopped")

	for i := range 3 {
		resp, body := e.postJSON("/messages", `{"name":"a","message":"during `+strconv.Itoa(i)+`"}`, "Idempotency-Key", "outage-"+strconv.Itoa(i))
		wantError(t, resp, body, http.StatusServiceUnavailable)
		wantRetryAfter(t, resp)
	}
	resp, body = e.do("GET", "/readyz", "")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"ready":false`) {
		t.Fatalf("readyz during outage: %d %s", resp.StatusCode, body)
	}
	if err := e.app.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "nats") {
		t.Fatalf("Ready during outage = %v, want an error naming nats", err)
	}

	e.nats.Start()
	chattest.Eventually(t, 10*time.Second, e.nc.IsConnected, "app connection did not reconnect")
	if err := e.app.Ready(context.Background()); err != nil {
		t.Fatalf("Ready after reconnect: %v", err)
	}
	resp, body = e.postJSON("/messages", `{"name":"a","message":"after"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("after restart: status %d: %s", resp.StatusCode, body)
	}
	if m := decodeMessage(t, body); m.Seq != 2 {
		t.Fatalf("after restart stored at seq %d, want 2 (nothing stored for the 503s)", m.Seq)
	}
	if got := e.count(); got != 2 {
		t.Fatalf("stream has %d messages, want 2", got)
	}
	// The keys of the 503s were never stored: using one now stores a new message.
	resp, body = e.postJSON("/messages", `{"name":"a","message":"retried"}`, "Idempotency-Key", "outage-0")
	if resp.StatusCode != http.StatusCreated || decodeMessage(t, body).Message != "retried" {
		t.Fatalf("retry of a 503: %d %s", resp.StatusCode, body)
	}
	if got := e.count(); got != 3 {
		t.Fatalf("stream has %d messages, want 3", got)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *app.Config) {
		c.RateLimit = 0.001 // one token per 1000 s: nothing refills during the test
		c.RateBurst = 2
		c.TrustedProxies = []string{"127.0.0.1", "::1"}
	})
	post := func(client string) (*http.Response, []byte) {
		return e.postJSON("/messages", `{"name":"a","message":"b"}`, "X-Forwarded-For", client)
	}
	for i := range 2 {
		if resp, body := post("203.0.113.1"); resp.StatusCode != http.StatusCreated {
			t.Fatalf("post %d inside the burst: %d %s", i, resp.StatusCode, body)
		}
	}
	before := e.count()
	resp, body := post("203.0.113.1")
	wantError(t, resp, body, http.StatusTooManyRequests)
	wantRetryAfter(t, resp)
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 900 || ra > 1000 {
		t.Fatalf("Retry-After %d, want about 1000", ra)
	}
	// Bad input is limited too (the limit comes first).
	resp, body = e.postJSON("/messages", `{`, "X-Forwarded-For", "203.0.113.1")
	wantError(t, resp, body, http.StatusTooManyRequests)
	if e.count() != before {
		t.Fatal("a refused post was stored")
	}
	if resp, body := post("203.0.113.2"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("other client: %d %s", resp.StatusCode, body)
	}
	// History is not rate limited.
	if resp, body := e.do("GET", "/messages", "", "X-Forwarded-For", "203.0.113.1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("history while limited: %d %s", resp.StatusCode, body)
	}
	_, metrics := e.do("GET", "/metrics", "")
	if !strings.Contains(string(metrics), "chat_api_rate_limited_total 2") {
		t.Fatalf("metrics do not count 2 refusals:\n%s", metrics)
	}
}

func TestRateLimitByRemoteAddr(t *testing.T) {
	// No trusted proxies: the peer address counts and X-Forwarded-For is ignored.
	e := newEnv(t, func(c *app.Config) {
		c.RateLimit = 0.001
		c.RateBurst = 1
	})
	post := func(remote, xff string) int {
		req := httptest.NewRequest("POST", "/messages", strings.NewReader(`{"name":"a","message":"b"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", xff)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		e.app.Handler().ServeHTTP(rec, req)
		if rec.Code == http.StatusTooManyRequests && rec.Header().Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
		return rec.Code
	}
	if c := post("198.51.100.1:1000", "1.1.1.1"); c != 201 {
		t.Fatalf("first post %d", c)
	}
	if c := post("198.51.100.1:2000", "2.2.2.2"); c != 429 {
		t.Fatalf("second post from the same address (spoofed X-Forwarded-For) %d, want 429", c)
	}
	if c := post("198.51.100.2:1000", ""); c != 201 {
		t.Fatalf("other address %d, want 201", c)
	}
}

func TestDrain(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.app.Run(ctx) }()
	if resp, body := e.do("GET", "/readyz", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz %d %s", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	resp, body := e.do("GET", "/readyz", "")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"draining":true`) {
		t.Fatalf("readyz while draining: %d %s", resp.StatusCode, body)
	}
	before := e.count()
	resp, body = e.postJSON("/messages", `{"name":"a","message":"b"}`)
	wantError(t, resp, body, http.StatusServiceUnavailable)
	wantRetryAfter(t, resp)
	if e.count() != before {
		t.Fatal("posted while draining")
	}
}
