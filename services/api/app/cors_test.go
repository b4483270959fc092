package app_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/services/api/app"
	"github.com/nats-io/nats.go"
)

// TestCORS: with CHAT_ALLOWED_ORIGINS the api answers preflights and adds the CORS
// headers to every answer for those origins (errors too, so a page can read them), and
// gives other origins none.
func TestCORS(t *testing.T) {
	const page = "http://page.example:9000"
	t.Setenv("CHAT_ALLOWED_ORIGINS", page+",https://other.example")
	var cfg app.Config
	if err := envconfigProcess(&cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.AllowedOrigins) != 2 || cfg.AllowedOrigins[0] != page {
		t.Fatalf("CHAT_ALLOWED_ORIGINS read as %q", cfg.AllowedOrigins)
	}
	e := newEnv(t, func(c *app.Config) { c.AllowedOrigins = cfg.AllowedOrigins })

	resp, body := e.do("OPTIONS", "/rooms/general/messages", "", "Origin", page,
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type,idempotency-key")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != page ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Idempotency-Key") {
		t.Fatalf("preflight: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("preflight without a request id: it bypassed the common middleware")
	}

	// The changes' methods and their Edit-Key header are allowed too (issue 11).
	resp, body = e.do("OPTIONS", "/rooms/general/messages/x", "", "Origin", page,
		"Access-Control-Request-Method", "PATCH", "Access-Control-Request-Headers", "content-type,edit-key")
	if resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "PATCH") ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "DELETE") ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Edit-Key") {
		t.Fatalf("preflight of a PATCH: %d %v %s", resp.StatusCode, resp.Header, body)
	}

	resp, body = e.postJSON("/rooms/general/messages", `{"name":"a","message":"from another origin"}`, "Origin", page)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Access-Control-Allow-Origin") != page ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Fatalf("POST from %s: %d %v %s", page, resp.StatusCode, resp.Header, body)
	}
	resp, body = e.postJSON("/rooms/general/messages", `{`, "Origin", page)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Access-Control-Allow-Origin") != page {
		t.Fatalf("bad POST from %s: %d %v %s", page, resp.StatusCode, resp.Header, body)
	}
	resp, body = e.do("GET", "/rooms/general/messages", "", "Origin", page)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != page {
		t.Fatalf("GET from %s: %d %v %s", page, resp.StatusCode, resp.Header, body)
	}

	const evil = "http://evil.example"
	resp, _ = e.do("OPTIONS", "/rooms/general/messages", "", "Origin", evil, "Access-Control-Request-Method", "POST")
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from %s: %d, Allow-Origin %q", evil, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	resp, _ = e.do("GET", "/rooms/general/messages", "", "Origin", evil)
	for k := range resp.Header {
		if strings.HasPrefix(k, "Access-Control-") {
			t.Errorf("GET from %s: %s: %q", evil, k, resp.Header.Get(k))
		}
	}
}

// TestBadAllowedOriginRefusesToStart: a value that can never match an Origin is a
// configuration error, not a silently closed door.
func TestBadAllowedOriginRefusesToStart(t *testing.T) {
	n := chattest.StartNATS(t)
	m := chattest.StartMongo(t)
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cfg := defaultConfig(t)
	cfg.AllowedOrigins = []string{"http://page.example:9000/chat"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := app.New(ctx, cfg, app.Deps{NATS: nc, Mongo: m.Connect(t)}); err == nil || !strings.Contains(err.Error(), "allowed origin") {
		t.Fatalf("New with a path in an allowed origin: %v", err)
	}
}
