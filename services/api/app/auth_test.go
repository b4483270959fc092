package app_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/auth"
	"github.com/chatrt/chat/services/api/app"
	"github.com/prometheus/client_golang/prometheus"
)

const testSecret = "test-secret-test-secret-test-secret"

func token(t *testing.T, key any, claims map[string]any) string {
	t.Helper()
	if _, ok := claims["exp"]; !ok {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
	}
	tok, err := auth.Sign(key, claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestAuthMatrix: with a key configured, posts and history reads need a token allowing
// the room; the author comes from the token; refusals publish nothing.
func TestAuthMatrix(t *testing.T) {
	e := newEnv(t, func(c *app.Config) { c.HS256Secret = testSecret })
	key := []byte(testSecret)
	ann := token(t, key, map[string]any{"sub": "ann", "name": "Ann", "rooms": []string{"general", "team-*"}})
	bob := token(t, key, map[string]any{"sub": "bob"}) // no rooms claim: every room
	none := token(t, key, map[string]any{"sub": "eve", "rooms": []string{}})
	expired := token(t, key, map[string]any{"sub": "ann", "exp": time.Now().Add(-time.Hour).Unix()})
	forged := token(t, []byte(testSecret+"x"), map[string]any{"sub": "ann"})
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

	cases := []struct {
		name, path, body string
		hdr              []string
		status           int
		author           string
	}{
		{"no token", "/messages", `{"name":"a","message":"m"}`, nil, 401, ""},
		{"basic auth", "/messages", `{"name":"a","message":"m"}`, []string{"Authorization", "Basic YTpi"}, 401, ""},
		{"malformed", "/messages", `{"name":"a","message":"m"}`, bearer("not.a.jwt"), 401, ""},
		{"expired", "/messages", `{"name":"a","message":"m"}`, bearer(expired), 401, ""},
		{"forged", "/messages", `{"name":"a","message":"m"}`, bearer(forged), 401, ""},
		{"token in query is not accepted", "/messages?access_token=" + ann, `{"message":"m"}`, nil, 401, ""},
		{"default room allowed", "/messages", `{"name":"Mallory","message":"m"}`, bearer(ann), 201, "Ann"},
		{"body room allowed by glob", "/messages", `{"message":"m","room":"team-x"}`, bearer(ann), 201, "Ann"},
		{"body room forbidden", "/messages", `{"message":"m","room":"random"}`, bearer(ann), 403, ""},
		{"path room allowed", "/rooms/team-a/messages", `{"message":"m"}`, bearer(ann), 201, "Ann"},
		{"path room forbidden", "/rooms/random/messages", `{"message":"m"}`, bearer(ann), 403, ""},
		{"empty rooms claim", "/messages", `{"message":"m"}`, bearer(none), 403, ""},
		{"no rooms claim, sub as author", "/rooms/random/messages", `{"message":"m"}`, bearer(bob), 201, "bob"},
		{"invalid room still 400", "/rooms/bad!room/messages", `{"message":"m"}`, bearer(ann), 400, ""},
		{"invalid message still 400", "/messages", `{"message":"  "}`, bearer(ann), 400, ""},
	}
	for _, c := range cases {
		before := e.count()
		resp, body := e.postJSON(c.path, c.body, c.hdr...)
		if c.status != http.StatusCreated {
			wantError(t, resp, body, c.status)
			if c.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: 401 without WWW-Authenticate", c.name)
			}
			if e.count() != before {
				t.Errorf("%s: a refused post was published", c.name)
			}
			if strings.Contains(string(body), "eyJ") {
				t.Errorf("%s: the answer echoes a token: %s", c.name, body)
			}
			continue
		}
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("%s: status %d %s", c.name, resp.StatusCode, body)
			continue
		}
		if m := decodeMessage(t, body); m.Name != c.author {
			t.Errorf("%s: author %q, want %q", c.name, m.Name, c.author)
		}
		if e.count() != before+1 {
			t.Errorf("%s: not published exactly once", c.name)
		}
	}

	for _, c := range []struct {
		name, path string
		hdr        []string
		status     int
	}{
		{"history without token", "/messages", nil, 401},
		{"history allowed", "/messages", bearer(ann), 200},
		{"history glob", "/rooms/team-x/messages", bearer(ann), 200},
		{"history forbidden", "/rooms/random/messages", bearer(ann), 403},
		{"history ?room forbidden", "/messages?room=random", bearer(ann), 403},
	} {
		resp, body := e.do("GET", c.path, "", c.hdr...)
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d: %s", c.name, resp.StatusCode, c.status, body)
		}
	}
	// Health and metrics stay open for probes and scrapers.
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if resp, _ := e.do("GET", p, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	_, metrics := e.do("GET", "/metrics", "")
	for _, want := range []string{`chat_api_posts_total{status="401"} 6`, `chat_api_posts_total{status="403"} 3`, `chat_api_posts_total{status="201"} 4`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestAuthJWKS: the api verifies tokens with keys from an identity provider's JWKS (the
// kid selects the key, ES256 here), checks the audience, and refuses to start with a
// JWKS but no CHAT_AUTH_AUDIENCE.
func TestAuthJWKS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := key.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding
	jwks, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
		"x": b64.EncodeToString(pub[1:33]), "y": b64.EncodeToString(pub[33:]),
	}}})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	defer idp.Close()

	e := newEnv(t, func(c *app.Config) { c.JWKSURL = idp.URL; c.Audience = "chat" })
	cfg := defaultConfig(t)
	cfg.JWKSURL = idp.URL
	if _, err := app.New(t.Context(), cfg, app.Deps{NATS: e.nc, Mongo: e.mongo.Connect(t)}); err == nil || !strings.Contains(err.Error(), "CHAT_AUTH_AUDIENCE") {
		t.Fatalf("JWKS without audience: %v", err)
	}
	sign := func(kid string, claims map[string]any) string {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
		tok, err := auth.SignWithKeyID(key, kid, claims)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	resp, body := e.postJSON("/rooms/general/messages", `{"message":"m"}`, "Authorization", sign("k1", map[string]any{"sub": "ann", "aud": "chat"}))
	if resp.StatusCode != http.StatusCreated || decodeMessage(t, body).Name != "ann" {
		t.Fatalf("JWKS token: %d %s", resp.StatusCode, body)
	}
	for _, tok := range []string{
		sign("k1", map[string]any{"sub": "ann", "aud": "billing"}), // another app's token
		sign("k2", map[string]any{"sub": "ann", "aud": "chat"}),    // a kid the provider does not list
	} {
		resp, body := e.postJSON("/rooms/general/messages", `{"message":"m"}`, "Authorization", tok)
		wantError(t, resp, body, http.StatusUnauthorized)
	}
}

// TestLogsHaveNoTokensOrBodies: the access log (debug level included) records requests
// without their bearer token, query string or message text.
func TestLogsHaveNoTokensOrBodies(t *testing.T) {
	n := chattest.StartNATS(t)
	m := chattest.StartMongo(t)
	nc, _ := n.Connect(t)
	var buf syncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := defaultConfig(t)
	cfg.HS256Secret = testSecret
	a, err := app.New(t.Context(), cfg, app.Deps{NATS: nc, Mongo: m.Connect(t), Metrics: prometheus.NewRegistry(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	tok := token(t, []byte(testSecret), map[string]any{"sub": "ann"})
	const body = "top-secret-message-text"
	for _, c := range []struct{ path, tok string }{
		{"/messages", tok}, {"/messages?access_token=" + tok, ""}, {"/messages", tok + "x"},
	} {
		resp, _ := doOn(t, srv.URL, "POST", c.path, strings.NewReader(`{"message":"`+body+`"}`),
			"Content-Type", "application/json", "Authorization", "Bearer "+c.tok)
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: %d", c.path, resp.StatusCode)
		}
	}
	logs := buf.String()
	if !strings.Contains(logs, `"msg":"http request"`) {
		t.Fatalf("no access log lines:\n%s", logs)
	}
	for _, secret := range []string{tok, body, "access_token", testSecret} {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs contain %q:\n%s", secret, logs)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
