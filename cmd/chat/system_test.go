package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/gorilla/websocket"
	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// system is the all-in-one running inside a test.
type system struct {
	t      *testing.T
	cfg    Config
	url    string // http://127.0.0.1:port
	cancel context.CancelFunc
	done   chan error
}

// testConfig is the default configuration with embedded servers on free ports in a
// temporary data directory.
func testConfig(t *testing.T) Config {
	t.Helper()
	var cfg Config
	for _, c := range []any{&cfg, &cfg.API, &cfg.Persister, &cfg.Pusher} {
		if err := envconfig.Process("chat_test_unset", c); err != nil {
			t.Fatal(err)
		}
	}
	cfg.DataDir = t.TempDir()
	cfg.EmbeddedNATSAddr = chattest.FreeAddr(t)
	cfg.EmbeddedMongoAddr = chattest.FreeAddr(t)
	cfg.Pusher.CloseSpread = 0
	return cfg
}

func startSystemWith(t *testing.T, cfg Config) *system {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startSystemOn(t, cfg, ln, nil)
}

// startSystemOn serves the system on ln, logging to log (nil: nowhere); its url is ln's
// port on 127.0.0.1.
func startSystemOn(t *testing.T, cfg Config, ln net.Listener, log *slog.Logger) *system {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	url := fmt.Sprintf("http://127.0.0.1:%d", ln.Addr().(*net.TCPAddr).Port)
	s := &system{t: t, cfg: cfg, url: url, cancel: cancel, done: make(chan error, 1)}
	if log == nil {
		var logw io.Writer = io.Discard
		if os.Getenv("CHAT_TEST_LOG") != "" { // the system's logs, to debug a test
			logw = os.Stderr
		}
		log = slog.New(slog.NewTextHandler(logw, nil))
	}
	go func() { s.done <- serve(ctx, cfg, log, ln) }()
	t.Cleanup(s.stop)
	chattest.Eventually(t, 60*time.Second, func() bool {
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("system stopped: %v", err)
		default:
		}
		resp, err := http.Get(s.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "system not ready")
	return s
}

// stop shuts the system down and checks it stopped cleanly.
func (s *system) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("system stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		s.t.Errorf("system did not stop within 30s; goroutines:\n%s", buf)
	}
}

// startSystem starts the whole system (embedded NATS and FerretDB, api, persister and
// pusher on one port) and returns its base URL.
func startSystem(t *testing.T) string { return startSystemWith(t, testConfig(t)).url }

type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
}

func dialWS(t *testing.T, base, query string) *wsClient {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &wsClient{t: t, conn: conn}
}

func (c *wsClient) next() map[string]any {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, data, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var f map[string]any
	if err := json.Unmarshal(data, &f); err != nil {
		c.t.Fatal(err)
	}
	return f
}

// quiet asserts nothing more arrives for a short while (no duplicates).
func (c *wsClient) quiet(d time.Duration) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	if _, data, err := c.conn.ReadMessage(); err == nil {
		c.t.Fatalf("unexpected frame %s", data)
	}
}

func postJSON(t *testing.T, url string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func getHistory(t *testing.T, url string) []map[string]any {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameMessage(a, b map[string]any) bool {
	for _, k := range []string{"id", "room", "name", "message", "sent_at", "seq"} {
		if fmt.Sprint(a[k]) != fmt.Sprint(b[k]) {
			return false
		}
	}
	return true
}

// TestEndToEnd: a POST reaches two websockets and history exactly once with the same id
// and seq; another service's direct publish is stored and pushed; a poison payload is
// dead-lettered and the message after it still flows; data survives a restart.
func TestEndToEnd(t *testing.T) {
	cfg := testConfig(t)
	sys := startSystemWith(t, cfg)
	a := dialWS(t, sys.url, "?room=e2e")
	b := dialWS(t, sys.url, "")
	b.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","room":"e2e"}`))
	for _, c := range []*wsClient{a, b} {
		if f := c.next(); f["type"] != "subscribed" {
			t.Fatalf("got %v", f)
		}
	}

	start := time.Now()
	status, posted := postJSON(t, sys.url+"/rooms/e2e/messages", map[string]string{"name": "Ann", "message": "hello <b>&</b>"})
	if status != http.StatusCreated || posted["id"] == "" || posted["seq"] == nil {
		t.Fatalf("POST = %d %v", status, posted)
	}
	for _, c := range []*wsClient{a, b} {
		f := c.next()
		if f["type"] != "message" || !sameMessage(f, posted) {
			t.Fatalf("pushed %v, posted %v", f, posted)
		}
	}
	t.Logf("POST→websocket latency sample: %v", time.Since(start))

	// Another service publishes straight to the subject: no id, no sent_at.
	nc, err := nats.Connect("nats://" + cfg.EmbeddedNATSAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	direct, err := js.Publish(ctx, "chat.messages.e2e", []byte(`{"name":"bot","message":"from a service"}`))
	if err != nil {
		t.Fatal(err)
	}
	poison, err := js.Publish(ctx, "chat.messages.e2e", []byte(`{"name":"bot","message":"x","room":"elsewhere"}`))
	if err != nil {
		t.Fatal(err)
	}
	after, err := js.Publish(ctx, "chat.messages.e2e", []byte(`{"name":"bot","message":"after the poison"}`))
	if err != nil {
		t.Fatal(err)
	}
	var pushed []map[string]any
	for _, c := range []*wsClient{a, b} {
		f1, f2 := c.next(), c.next()
		if f1["seq"] != float64(direct.Sequence) || f1["message"] != "from a service" ||
			f2["seq"] != float64(after.Sequence) || f2["message"] != "after the poison" {
			t.Fatalf("pushed %v then %v", f1, f2)
		}
		pushed = append(pushed, f1, f2)
	}

	// History: exactly the three valid messages, same ids and seqs as pushed.
	var hist []map[string]any
	chattest.Eventually(t, 10*time.Second, func() bool {
		hist = getHistory(t, sys.url+"/rooms/e2e/messages")
		return len(hist) >= 3
	}, "history has %d messages, want 3", len(hist))
	if len(hist) != 3 || !sameMessage(hist[0], posted) || !sameMessage(hist[1], pushed[0]) || !sameMessage(hist[2], pushed[1]) {
		t.Fatalf("history %v", hist)
	}
	if !sameMessage(pushed[0], pushed[2]) {
		t.Fatalf("two websockets disagree on a derived id: %v vs %v", pushed[0], pushed[2])
	}

	// The poison message is in the dead-letter stream with its reason and original bytes.
	dl, err := js.Stream(ctx, chat.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	chattest.Eventually(t, 10*time.Second, func() bool {
		info, err := dl.Info(ctx)
		return err == nil && info.State.Msgs == 1
	}, "dead-letter stream does not hold the poison message")
	raw, err := dl.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get(chat.HeaderOriginalSubject) != "chat.messages.e2e" || raw.Header.Get(chat.HeaderDeadLetterReason) == "" ||
		string(raw.Data) != `{"name":"bot","message":"x","room":"elsewhere"}` {
		t.Fatalf("dead letter %v %q", raw.Header, raw.Data)
	}
	_ = poison
	a.quiet(200 * time.Millisecond)

	// Data survives a restart on the same data directory.
	nc.Close()
	sys.stop()
	sys = startSystemWith(t, cfg)
	again := getHistory(t, sys.url+"/messages?room=e2e")
	if len(again) != 3 || !sameMessage(again[0], posted) {
		t.Fatalf("after restart: %v", again)
	}
	// The seed's routes: POST /messages (form) and GET /messages (room general).
	resp, err := http.PostForm(sys.url+"/messages", map[string][]string{"name": {"seed"}, "message": {"form post"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("form POST /messages = %d", resp.StatusCode)
	}
	chattest.Eventually(t, 10*time.Second, func() bool {
		h := getHistory(t, sys.url+"/messages")
		return len(h) == 1 && h[0]["message"] == "form post" && h[0]["room"] == "general"
	}, "GET /messages does not show the form post")
}
