package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/services/pusher/app"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// presenceNode is a pusher whose NATS connection the test can cut.
type presenceNode struct {
	url string
	nc  *nats.Conn
}

func (e *env) startPresencePusher(cfg app.Config) *presenceNode {
	e.t.Helper()
	nc, err := nats.Connect(e.nats.URL(), nats.NoReconnect())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	a, err := app.New(context.Background(), cfg, app.Deps{NATS: nc, Mongo: e.mongo.Connect(e.t), Metrics: prometheus.NewRegistry(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		e.t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	return &presenceNode{url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws", nc: nc}
}

type presenceFrame struct {
	Type      string `json:"type"`
	Room      string `json:"room"`
	Name      string `json:"name"`
	Error     string `json:"error"`
	Online    int    `json:"online"`
	Anonymous int    `json:"anonymous"`
	Members   []struct {
		Name        string `json:"name"`
		Connections int    `json:"connections"`
	} `json:"members"`
}

// watcher applies the presence, join and leave frames it reads, as a client would.
type watcher struct {
	t       *testing.T
	conn    *websocket.Conn
	online  int
	anon    int
	members map[string]int
	typing  []string
}

func (w *watcher) read(deadline time.Time) (presenceFrame, bool) {
	w.t.Helper()
	_ = w.conn.SetReadDeadline(deadline)
	_, data, err := w.conn.ReadMessage()
	if err != nil {
		return presenceFrame{}, false
	}
	var f presenceFrame
	if err := json.Unmarshal(data, &f); err != nil {
		w.t.Fatalf("frame %s: %v", data, err)
	}
	switch f.Type {
	case "presence":
		w.members = map[string]int{}
		fallthrough
	case "join", "leave":
		w.online, w.anon = f.Online, f.Anonymous
		for _, m := range f.Members {
			if m.Connections == 0 {
				delete(w.members, m.Name)
			} else {
				w.members[m.Name] = m.Connections
			}
		}
	case "typing":
		w.typing = append(w.typing, f.Name)
	}
	return f, true
}

// until reads frames until the state is want ("online/anon/Name:n,...") or timeout.
func (w *watcher) until(want string, timeout time.Duration) time.Duration {
	w.t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for w.state() != want {
		if _, ok := w.read(deadline); !ok {
			w.t.Fatalf("presence %q, want %q within %v", w.state(), want, timeout)
		}
	}
	return time.Since(start)
}

func (w *watcher) state() string {
	s := ""
	for _, name := range []string{"Ann", "Bob", "Cy"} {
		if n := w.members[name]; n > 0 {
			s += "," + name + ":" + string(rune('0'+n))
		}
	}
	return string(rune('0'+w.online)) + "/" + string(rune('0'+w.anon)) + s
}

func dialWatcher(t *testing.T, url string) *watcher {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", url, err, resp)
	}
	t.Cleanup(func() { conn.Close() })
	w := &watcher{t: t, conn: conn, members: map[string]int{}}
	if f, ok := w.read(time.Now().Add(10 * time.Second)); !ok || f.Type != "subscribed" {
		t.Fatalf("first frame %+v, want subscribed", f)
	}
	return w
}

// A member on one pusher is seen from another; anonymous and non-watching subscriptions
// count; typing reaches the other watchers (not the typer, not twice within 2 s); and when
// a pusher's NATS connection dies without a goodbye, its members leave within the timeout.
func TestPresenceAcrossPushers(t *testing.T) {
	e := newEnv(t, chat.DefaultStreamOptions())
	cfg := defaultConfig()
	cfg.PresenceHeartbeat, cfg.PresenceTimeout = 200*time.Millisecond, time.Second
	p1, p3 := e.startPresencePusher(cfg), e.startPresencePusher(cfg)

	bob := dialWatcher(t, p3.url+"?room=r&presence=1&name=Bob")
	bob.until("1/0,Bob:1", 5*time.Second)
	ann := dialWatcher(t, p1.url+"?room=r&presence=1&name=%20Ann%20")
	cy := dialWatcher(t, p1.url+"?room=r&name=Cy")               // counted, not watching
	anon := dialWatcher(t, p1.url+"?room=r")                     // anonymous
	other := dialWatcher(t, p1.url+"?room=elsewhere&presence=1") // another room
	_ = cy
	_ = other
	bob.until("4/1,Ann:1,Bob:1,Cy:1", 5*time.Second)
	ann.until("4/1,Ann:1,Bob:1,Cy:1", 5*time.Second)

	// Typing: Ann twice (the second dropped), then Bob; Cy is not subscribed to x.
	for _, cmd := range []string{`{"type":"typing","room":"r"}`, `{"type":"typing","room":"r"}`} {
		if err := ann.conn.WriteMessage(websocket.TextMessage, []byte(cmd)); err != nil {
			t.Fatal(err)
		}
	}
	if err := cy.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"typing","room":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if f, ok := cy.read(time.Now().Add(5 * time.Second)); !ok || f.Type != "error" || f.Error != "not subscribed" || f.Room != "x" {
		t.Fatalf("typing unsubscribed: %+v", f)
	}
	if err := bob.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"typing","room":"r"}`)); err != nil {
		t.Fatal(err)
	}
	for len(bob.typing) < 1 {
		if f, ok := bob.read(time.Now().Add(5 * time.Second)); !ok {
			t.Fatalf("bob got no typing (last %+v)", f)
		}
	}
	for len(ann.typing) < 1 {
		if _, ok := ann.read(time.Now().Add(5 * time.Second)); !ok {
			t.Fatal("ann got no typing")
		}
	}
	if bob.typing[0] != "Ann" || ann.typing[0] != "Bob" {
		t.Fatalf("typing: bob saw %v, ann saw %v", bob.typing, ann.typing)
	}
	_ = anon

	// Pusher 1 loses NATS without a goodbye: its members (Ann, Cy, the anonymous one)
	// leave Bob's presence within the timeout.
	p1.nc.Close()
	took := bob.until("1/0,Bob:1", 5*time.Second)
	t.Logf("members of a pusher cut from NATS left another pusher's presence after %v (timeout %v)", took, cfg.PresenceTimeout)
	if took > cfg.PresenceTimeout+2*time.Second {
		t.Fatalf("members left after %v, want within the timeout %v (+ coalescing)", took, cfg.PresenceTimeout)
	}
	if len(bob.typing) != 1 {
		t.Fatalf("bob saw typing %v, want Ann once", bob.typing)
	}
}
