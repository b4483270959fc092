package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/auth"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/clientip"
	"github.com/chatrt/chat/services/pusher/internal/hub"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const gateSecret = "gate-test-secret-gate-test-secret!"

type gateEnv struct {
	t      *testing.T
	hub    *hub.Hub
	hubReg *prometheus.Registry // the hub's metrics
	gate   *Gate
	url    string // ws://.../ws
	seq    atomic.Uint64
}

func newGateEnv(t *testing.T, gc GateConfig, mod func(*testConfig)) *gateEnv {
	t.Helper()
	cfg := testConfig{Window: 64, QueueSize: 256, ReplayBatch: 16, PingInterval: 5 * time.Second,
		PongTimeout: 20 * time.Second, WriteTimeout: 2 * time.Second, MaxSubs: 8}
	if mod != nil {
		mod(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hubReg := prometheus.NewRegistry()
	h := hub.New(cfg.hub(), 0, time.Unix(1_700_000_000, 0), nil, hubReg, log)
	handler := NewHandler(h, cfg.session(gc), prometheus.NewRegistry())
	srv := httptest.NewServer(handler)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		srv.Close()
	})
	return &gateEnv{t: t, hub: h, hubReg: hubReg, gate: handler.gate, url: "ws" + strings.TrimPrefix(srv.URL, "http")}
}

// publish sends one message to room through the hub, as the feed would.
func (e *gateEnv) publish(room, text string) uint64 {
	seq := e.seq.Add(1)
	e.hub.Fanout(&chat.Message{ID: fmt.Sprintf("m%d", seq), Room: room, Name: "n", Message: text,
		SentAt: time.Unix(1_700_000_000, 0).UTC(), Seq: seq})
	return seq
}

func (e *gateEnv) dial(query string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	c, resp, err := websocket.DefaultDialer.Dial(e.url+query, hdr)
	if err == nil {
		e.t.Cleanup(func() { c.Close() })
	}
	return c, resp, err
}

func (e *gateEnv) mustDial(query string, hdr http.Header) *websocket.Conn {
	e.t.Helper()
	c, resp, err := e.dial(query, hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		e.t.Fatalf("dial %s: %v (status %d)", query, err, status)
	}
	return c
}

// dialStatus expects the upgrade to be refused with status.
func (e *gateEnv) dialStatus(query string, hdr http.Header, status int) *http.Response {
	e.t.Helper()
	c, resp, err := e.dial(query, hdr)
	if err == nil {
		c.Close()
		e.t.Fatalf("dial %s: upgraded, want %d", query, status)
	}
	if resp == nil || resp.StatusCode != status {
		e.t.Fatalf("dial %s: %v %v, want status %d", query, err, resp, status)
	}
	var body map[string]string
	if json.NewDecoder(resp.Body).Decode(&body) != nil || body["error"] == "" {
		e.t.Fatalf("dial %s: refusal body is not {\"error\":...}", query)
	}
	return resp
}

type frameMsg struct {
	Type  string `json:"type"`
	Error string `json:"error"`
	Room  string `json:"room"`
	Seq   uint64 `json:"seq"`
}

func read(t *testing.T, c *websocket.Conn) frameMsg {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var f frameMsg
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("frame %s: %v", data, err)
	}
	return f
}

func wantFrame(t *testing.T, c *websocket.Conn, typ, room string) frameMsg {
	t.Helper()
	f := read(t, c)
	if f.Type != typ || f.Room != room {
		t.Fatalf("frame %+v, want type %s room %s", f, typ, room)
	}
	return f
}

// wantClose reads until the close frame and checks its code.
func wantClose(t *testing.T, c *websocket.Conn, code int) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != code {
			t.Fatalf("connection ended with %v, want close %d", err, code)
		}
		return ce.Text
	}
}

func send(t *testing.T, c *websocket.Conn, v string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(v)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	if _, ok := claims["exp"]; !ok {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
	}
	tok, err := auth.Sign([]byte(gateSecret), claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// TestWebsocketAuthMatrix: every way to present a token, accepted and refused, per room.
func TestWebsocketAuthMatrix(t *testing.T) {
	v, err := auth.NewVerifier(auth.Config{HS256Secret: gateSecret})
	if err != nil {
		t.Fatal(err)
	}
	e := newGateEnv(t, GateConfig{Auth: v, AuthTimeout: 500 * time.Millisecond}, nil)
	ann := sign(t, map[string]any{"sub": "ann", "rooms": []string{"general", "team-*"}})
	expired := sign(t, map[string]any{"sub": "ann", "exp": time.Now().Add(-time.Hour).Unix()})
	forged, _ := auth.Sign([]byte(gateSecret+"x"), map[string]any{"sub": "ann", "exp": time.Now().Add(time.Hour).Unix()})

	// Refused before the upgrade.
	resp := e.dialStatus("/ws?room=general&access_token=garbage", nil, 401)
	if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatal("401 without WWW-Authenticate")
	}
	e.dialStatus("/ws?room=general", bearer(expired), 401)
	e.dialStatus("/ws?access_token="+forged, nil, 401)
	e.dialStatus("/ws?room=random", bearer(ann), 403)
	e.dialStatus("/ws?room=random&access_token="+ann, nil, 403)

	// Header token: allowed rooms subscribe, others get the forbidden error frame.
	c := e.mustDial("/ws?room=team-a", bearer(ann))
	wantFrame(t, c, "subscribed", "team-a")
	send(t, c, `{"type":"subscribe","room":"random"}`)
	if f := wantFrame(t, c, "error", "random"); f.Error != "forbidden" {
		t.Fatalf("error %q, want forbidden", f.Error)
	}
	send(t, c, `{"type":"subscribe","room":"general"}`)
	wantFrame(t, c, "subscribed", "general")
	send(t, c, `{"type":"auth","token":"x"}`)
	if f := wantFrame(t, c, "error", ""); f.Error != "already authenticated" {
		t.Fatalf("second auth: %+v", f)
	}
	e.publish("random", "secret")
	seq := e.publish("general", "hello")
	if f := wantFrame(t, c, "message", "general"); f.Seq != seq {
		t.Fatalf("got seq %d, want %d (the forbidden room leaked?)", f.Seq, seq)
	}

	// Query token (browsers).
	q := e.mustDial("/ws?room=general&access_token="+ann, nil)
	wantFrame(t, q, "subscribed", "general")

	// First-frame token, with the upgrade's room subscribed after it.
	f := e.mustDial("/ws?room=general", nil)
	send(t, f, `{"type":"auth","token":"`+ann+`"}`)
	wantFrame(t, f, "subscribed", "general")
	send(t, f, `{"type":"subscribe","room":"elsewhere"}`)
	if fr := wantFrame(t, f, "error", "elsewhere"); fr.Error != "forbidden" {
		t.Fatalf("first-frame token: %+v", fr)
	}

	// First-frame failures close with 4401.
	for name, first := range map[string]string{
		"bad token":       `{"type":"auth","token":"a.b.c"}`,
		"expired token":   `{"type":"auth","token":"` + expired + `"}`,
		"no token field":  `{"type":"auth"}`,
		"command first":   `{"type":"subscribe","room":"general"}`,
		"token not a str": `{"type":"auth","token":42}`,
	} {
		c := e.mustDial("", nil)
		send(t, c, first)
		if text := wantClose(t, c, CloseUnauthorized); text == "" {
			t.Errorf("%s: close without a reason", name)
		}
	}
	// Silence closes with 4401 after AuthTimeout.
	s := e.mustDial("/ws?room=general", nil)
	if text := wantClose(t, s, CloseUnauthorized); text != "authentication required" {
		t.Fatalf("silent client: close %q", text)
	}

	// A token expiring while connected closes the socket with 4401.
	short := sign(t, map[string]any{"sub": "ann", "exp": time.Now().Add(1500 * time.Millisecond).Unix()})
	x := e.mustDial("/ws?room=general", bearer(short))
	wantFrame(t, x, "subscribed", "general")
	if text := wantClose(t, x, CloseUnauthorized); text != "token expired" {
		t.Fatalf("expiry close %q", text)
	}

	got := testutil.ToFloat64(e.gate.rejected.WithLabelValues("unauthorized"))
	if got != 3 || testutil.ToFloat64(e.gate.rejected.WithLabelValues("forbidden")) != 2 {
		t.Fatalf("rejections unauthorized %v forbidden %v", got, testutil.ToFloat64(e.gate.rejected.WithLabelValues("forbidden")))
	}
}

// TestWebsocketAuthOff: without a verifier nothing changes (and "auth" is an unknown type).
func TestWebsocketAuthOff(t *testing.T) {
	e := newGateEnv(t, GateConfig{}, nil)
	c := e.mustDial("/ws?room=any", nil)
	wantFrame(t, c, "subscribed", "any")
	send(t, c, `{"type":"auth","token":"x"}`)
	if f := wantFrame(t, c, "error", ""); !strings.HasPrefix(f.Error, "unknown type") {
		t.Fatalf("%+v", f)
	}
}

// TestConnectionCaps: a full node answers 503 before the upgrade, a full address 429,
// while the connected clients keep being served; freed slots are reusable.
func TestConnectionCaps(t *testing.T) {
	clients, _ := clientip.New([]string{"127.0.0.1", "::1"})
	e := newGateEnv(t, GateConfig{MaxConns: 3, MaxConnsPerIP: 2, Clients: clients}, nil)
	from := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }
	a1 := e.mustDial("/ws?room=general", from("203.0.113.1"))
	wantFrame(t, a1, "subscribed", "general")
	a2 := e.mustDial("/ws?room=general", from("203.0.113.1"))
	wantFrame(t, a2, "subscribed", "general")
	resp := e.dialStatus("/ws?room=general", from("203.0.113.1"), http.StatusTooManyRequests)
	if resp.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	b1 := e.mustDial("/ws?room=general", from("203.0.113.2"))
	wantFrame(t, b1, "subscribed", "general")
	resp = e.dialStatus("/ws?room=general", from("203.0.113.3"), http.StatusServiceUnavailable)
	if resp.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	// The connected clients are still served.
	seq := e.publish("general", "still here")
	for _, c := range []*websocket.Conn{a1, a2, b1} {
		if f := wantFrame(t, c, "message", "general"); f.Seq != seq {
			t.Fatalf("seq %d, want %d", f.Seq, seq)
		}
	}
	// A closed connection frees its slot (and its address's).
	a1.Close()
	chattest.Eventually(t, 5*time.Second, func() bool {
		c, _, err := websocket.DefaultDialer.Dial(e.url+"/ws", from("203.0.113.1"))
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, "slot not freed after a client left")
	if n := testutil.ToFloat64(e.gate.rejected.WithLabelValues("max_connections")); n < 1 {
		t.Fatalf("max_connections rejections %v", n)
	}
}

// TestCommandRateLimit: over the limit a command gets an error frame; a client that keeps
// flooding is closed with 1008; another client on the same room is not affected.
func TestCommandRateLimit(t *testing.T) {
	e := newGateEnv(t, GateConfig{CommandRate: 0.001, CommandBurst: 5}, nil)
	other := e.mustDial("/ws?room=general", nil)
	wantFrame(t, other, "subscribed", "general")

	c := e.mustDial("", nil)
	for i := range 5 {
		send(t, c, `{"type":"unsubscribe","room":"r`+fmt.Sprint(i)+`"}`)
		if f := wantFrame(t, c, "error", "r"+fmt.Sprint(i)); f.Error != "not subscribed" {
			t.Fatalf("command %d inside the burst: %+v", i, f)
		}
	}
	for i := range 4 {
		send(t, c, `{"type":"subscribe","room":"general"}`)
		if f := wantFrame(t, c, "error", ""); f.Error != "rate limited" {
			t.Fatalf("refused command %d: %+v", i, f)
		}
	}
	send(t, c, `{"type":"subscribe","room":"general"}`)
	if text := wantClose(t, c, ClosePolicy); text != "rate limit exceeded" {
		t.Fatalf("close reason %q", text)
	}
	seq := e.publish("general", "unaffected")
	if f := wantFrame(t, other, "message", "general"); f.Seq != seq {
		t.Fatalf("other client got seq %d, want %d", f.Seq, seq)
	}
	if n := testutil.ToFloat64(e.gate.rateLimited); n != 5 {
		t.Fatalf("rate limited commands %v, want 5", n)
	}
}

// TestNeverReadingClient: a client that never reads is evicted (1013) once its queue is
// full; a reading client on the same room receives every message, in order.
func TestNeverReadingClient(t *testing.T) {
	e := newGateEnv(t, GateConfig{}, func(c *testConfig) { c.QueueSize = 64; c.WriteTimeout = 500 * time.Millisecond })
	// A small receive buffer so the stuck client's TCP window closes early.
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	stuck, _, err := d.Dial(e.url+"/ws?room=general", nil) // never read from again
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	good := e.mustDial("/ws?room=general", nil)
	wantFrame(t, good, "subscribed", "general")

	text := strings.Repeat("x", 4000)
	var published atomic.Uint64
	stop := make(chan struct{})
	received := make(chan error, 1)
	go func() {
		var last uint64
		for {
			_ = good.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, data, err := good.ReadMessage()
			if err != nil {
				received <- err
				return
			}
			var f frameMsg
			if err := json.Unmarshal(data, &f); err != nil || f.Type != "message" || f.Seq != last+1 {
				received <- fmt.Errorf("frame: %.80s (%v), want seq %d", data, err, last+1)
				return
			}
			last = f.Seq
			select {
			case <-stop:
				if last == published.Load() {
					received <- nil
					return
				}
			default:
			}
		}
	}()
	evicted := func() bool { return metric(t, e.hubReg, "chat_pusher_evictions_total") == 1 }
	for i := 0; i < 20000 && !evicted(); i++ {
		e.publish("general", text)
		if i%4 == 0 {
			time.Sleep(time.Millisecond) // a steady stream, as the feed delivers
		}
	}
	if !evicted() {
		t.Fatal("the never-reading client was not evicted")
	}
	// One more message so the reader sees the stop after the last one.
	published.Store(e.seq.Load() + 1)
	close(stop)
	e.publish("general", "last")
	if err := <-received; err != nil {
		t.Fatal(err)
	}
	chattest.Eventually(t, 10*time.Second, func() bool { return e.hub.Connections() == 1 }, "evicted client still registered")
}

func TestQueueDepthMetrics(t *testing.T) {
	e := newGateEnv(t, GateConfig{}, nil)
	c := e.mustDial("/ws?room=general", nil)
	wantFrame(t, c, "subscribed", "general")
	if v := testutil.ToFloat64(e.gate.queuedFrames); v != 0 {
		t.Fatalf("queued %v", v)
	}
	if v := testutil.ToFloat64(e.gate.queueDepthMax); v != 0 {
		t.Fatalf("max depth %v", v)
	}
}
