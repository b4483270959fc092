package app_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"github.com/chatrt/chat/services/api/app"
	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// env is an api on real embedded NATS and FerretDB, served by an httptest server.
type env struct {
	t      *testing.T
	nats   *chattest.NATS
	mongo  *chattest.Mongo
	nc     *nats.Conn // the app's connection
	stream jetstream.Stream
	store  *history.Store
	app    *app.App
	srv    *httptest.Server
	reg    *prometheus.Registry
}

// defaultConfig is the Config with every envconfig default (read under an unused prefix).
func defaultConfig(t *testing.T) app.Config {
	t.Helper()
	var c app.Config
	if err := envconfig.Process("chat_api_test_unused", &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func newEnv(t *testing.T, configure func(*app.Config)) *env {
	t.Helper()
	n := chattest.StartNATS(t)
	m := chattest.StartMongo(t)
	nc, err := nats.Connect(n.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	_, js := n.Connect(t)
	mc := m.Connect(t)

	cfg := defaultConfig(t)
	cfg.RateLimit = 0
	if configure != nil {
		configure(&cfg)
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := app.New(ctx, cfg, app.Deps{NATS: nc, Mongo: mc, Metrics: reg, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, chat.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, nats: n, mongo: m, nc: nc, stream: stream, store: history.New(mc), app: a, srv: srv, reg: reg}
}

// do sends a request; hdr are extra headers ("Content-Type" among them).
func (e *env) do(method, path, body string, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	return doOn(e.t, e.srv.URL, method, path, strings.NewReader(body), hdr...)
}

func doOn(t *testing.T, base, method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

func (e *env) postJSON(path, body string, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	return e.do("POST", path, body, append([]string{"Content-Type", "application/json"}, hdr...)...)
}

// count is the number of messages in the CHAT stream.
func (e *env) count() uint64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := e.stream.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

// stored is the stream message at seq.
func (e *env) stored(seq uint64) *jetstream.RawStreamMsg {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := e.stream.GetMsg(ctx, seq)
	if err != nil {
		e.t.Fatalf("get seq %d: %v", seq, err)
	}
	return raw
}

// wireMessage is the contract's message JSON, decoded strictly.
type wireMessage struct {
	ID      string `json:"id"`
	Room    string `json:"room"`
	Name    string `json:"name"`
	Message string `json:"message"`
	SentAt  string `json:"sent_at"`
	Seq     uint64 `json:"seq"`
	// EditKey is in a post's 201 when authentication is off.
	EditKey string `json:"edit_key,omitempty"`
}

func decodeMessage(t *testing.T, b []byte) wireMessage {
	t.Helper()
	var m wireMessage
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode message %s: %v", b, err)
	}
	if m.ID == "" || m.Seq == 0 {
		t.Fatalf("message without id or seq: %s", b)
	}
	if _, err := time.Parse(chat.TimeLayout, m.SentAt); err != nil || len(m.SentAt) != len("2026-11-26T12:00:00.123Z") {
		t.Fatalf("sent_at %q not in the contract format", m.SentAt)
	}
	return m
}

func decodeMessages(t *testing.T, b []byte) []wireMessage {
	t.Helper()
	var ms []wireMessage
	if err := json.Unmarshal(b, &ms); err != nil {
		t.Fatalf("decode messages %s: %v", b, err)
	}
	return ms
}

// wantError checks an error answer: status, JSON content type, body {"error": "..."}.
func wantError(t *testing.T, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error Content-Type %q", ct)
	}
	var e map[string]any
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %s: %v", body, err)
	}
	reason, ok := e["error"].(string)
	if !ok || reason == "" || len(e) != 1 {
		t.Fatalf("error body %s is not {\"error\": \"<reason>\"}", body)
	}
}

func wantRetryAfter(t *testing.T, resp *http.Response) {
	t.Helper()
	v := resp.Header.Get("Retry-After")
	if v == "" || strings.Trim(v, "0123456789") != "" || v == "0" {
		t.Fatalf("Retry-After %q, want a positive number of seconds", v)
	}
}

// streamCreated is the CHAT stream's creation time (the epoch of derived ids).
func (e *env) streamCreated() time.Time {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := e.stream.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return info.Created
}

func envconfigProcess(c *app.Config) error { return envconfig.Process("chat", c) }

// editKey computes message id's edit key from the secret in NATS, independently of the
// app: HMAC-SHA256(secret, room + "\x00" + id), unpadded base64url.
func (e *env) editKey(room, id string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, js := e.nats.Connect(e.t)
	kv, err := js.KeyValue(ctx, "CHAT_SECRETS")
	if err != nil {
		e.t.Fatal(err)
	}
	secret, err := kv.Get(ctx, "edit-key")
	if err != nil {
		e.t.Fatal(err)
	}
	h := hmac.New(sha256.New, secret.Value())
	h.Write([]byte(room + "\x00" + id))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}
