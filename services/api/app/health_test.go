package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/services/api/app"
)

func TestHealthReadyMetrics(t *testing.T) {
	e := newEnv(t, nil)
	resp, body := e.do("GET", "/healthz", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", "/readyz", "")
	var rd struct {
		Ready    bool   `json:"ready"`
		NATS     string `json:"nats"`
		Mongo    string `json:"mongo"`
		Draining bool   `json:"draining"`
	}
	if err := json.Unmarshal(body, &rd); err != nil || resp.StatusCode != http.StatusOK || !rd.Ready || rd.NATS != "CONNECTED" || rd.Mongo != "ok" || rd.Draining {
		t.Fatalf("readyz %d %s (%v)", resp.StatusCode, body, err)
	}
	if err := e.app.Ready(context.Background()); err != nil {
		t.Fatalf("Ready = %v, want nil", err)
	}
	e.postJSON("/messages", `{"name":"a","message":"b"}`)
	e.postJSON("/messages", `{`)
	e.do("GET", "/messages", "")
	e.do("GET", "/messages?limit=0", "")
	resp, body = e.do("GET", "/metrics", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics %d", resp.StatusCode)
	}
	for _, want := range []string{
		`chat_api_posts_total{status="201"} 1`,
		`chat_api_posts_total{status="400"} 1`,
		`chat_api_publish_ack_seconds_count 1`,
		`chat_api_history_requests_total{status="200"} 1`,
		`chat_api_history_requests_total{status="400"} 1`,
		`chat_api_rate_limited_total 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestRoutesAndHeaders(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct{ method, path, allow string }{
		{"DELETE", "/messages", "GET, HEAD, POST"},
		{"PUT", "/rooms/a/messages", "GET, HEAD, POST"},
		{"POST", "/healthz", "GET, HEAD"},
		{"POST", "/readyz", "GET, HEAD"},
		{"POST", "/metrics", "GET, HEAD"},
		{"POST", "/", "GET, HEAD"},
		{"OPTIONS", "/messages", "GET, HEAD, POST"},
		{"GET", "/rooms/a/messages/x", "PATCH, DELETE"},
		{"POST", "/rooms/a/messages/x", "PATCH, DELETE"},
		{"GET", "/rooms/a/messages/x/reactions", "POST"},
		{"PATCH", "/rooms/a/messages/x/reactions/👍", "DELETE"},
	} {
		resp, body := e.do(tc.method, tc.path, "")
		wantError(t, resp, body, http.StatusMethodNotAllowed)
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
	resp, body := e.do("GET", "/", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(strings.ToLower(string(body)), "<html") {
		t.Fatalf("GET / %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatal("UI without nosniff")
	}
	resp, _ = e.do("HEAD", "/messages", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD /messages %d", resp.StatusCode)
	}
	resp, _ = e.do("GET", "/healthz", "", "X-Request-Id", "trace-123")
	if resp.Header.Get("X-Request-Id") != "trace-123" {
		t.Fatalf("X-Request-Id %q, want the client's", resp.Header.Get("X-Request-Id"))
	}
	resp, _ = e.do("GET", "/healthz", "", "X-Request-Id", "bad id with spaces")
	if id := resp.Header.Get("X-Request-Id"); id == "" || strings.Contains(id, " ") {
		t.Fatalf("X-Request-Id %q, want a fresh one", id)
	}
	r1, _ := e.do("GET", "/healthz", "")
	r2, _ := e.do("GET", "/healthz", "")
	if r1.Header.Get("X-Request-Id") == r2.Header.Get("X-Request-Id") {
		t.Fatal("request ids repeat")
	}
}

func TestConfigFromEnvironment(t *testing.T) {
	c := defaultConfig(t)
	if c.RateLimit != 50 || c.RateBurst != 200 || c.PublishTimeout != 5*time.Second || c.Stream.Duplicates != 2*time.Minute ||
		c.HTTPAddr != "127.0.0.1:8080" || c.URL != "nats://127.0.0.1:4222" {
		t.Fatalf("defaults %+v", c)
	}
	t.Setenv("CHAT_RATE_LIMIT", "0")
	t.Setenv("CHAT_RATE_BURST", "7")
	t.Setenv("CHAT_STREAM_DUPLICATES", "10m")
	t.Setenv("CHAT_PUBLISH_TIMEOUT", "2s")
	t.Setenv("CHAT_TRUSTED_PROXIES", "10.0.0.0/8,192.0.2.1")
	// The embedded natsconn.NATS keeps the variables' v1 names.
	t.Setenv("CHAT_NATS_URL", "nats://n1:4222,nats://n2:4222")
	t.Setenv("CHAT_NATS_CREDS", "/run/chat.creds")
	t.Setenv("CHAT_NATS_TLS_CA", "/run/ca.pem")
	var got app.Config
	if err := envconfigProcess(&got); err != nil {
		t.Fatal(err)
	}
	if got.RateLimit != 0 || got.RateBurst != 7 || got.Stream.Duplicates != 10*time.Minute || got.PublishTimeout != 2*time.Second ||
		len(got.TrustedProxies) != 2 || got.TrustedProxies[1] != "192.0.2.1" ||
		got.URL != "nats://n1:4222,nats://n2:4222" || got.Creds != "/run/chat.creds" || got.TLSCA != "/run/ca.pem" {
		t.Fatalf("from environment %+v", got)
	}
}
