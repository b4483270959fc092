package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/presence"
	"github.com/chatrt/chat/services/api/app"
)

// runApp runs the app (its presence view) for the test.
func (e *env) runApp() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.app.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Error(err)
		}
	})
}

func (e *env) publishPresence(u presence.Update) {
	e.t.Helper()
	b, _ := json.Marshal(u)
	if err := e.nc.Publish(presence.StateSubject+"."+u.Node, b); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) presence(room string, hdr ...string) (int, string) {
	e.t.Helper()
	resp, body := e.do("GET", "/rooms/"+room+"/presence", "", hdr...)
	return resp.StatusCode, string(body)
}

// GET /rooms/{room}/presence sums what the pushers publish on NATS (named and anonymous,
// every node), and forgets a node that stops publishing after the timeout; GET /rooms
// shows the online counts.
func TestPresenceRoute(t *testing.T) {
	e := newEnv(t, func(c *app.Config) { c.PresenceTimeout = 500 * time.Millisecond })
	e.runApp()
	if err := e.store.InsertMany(context.Background(), []chat.Message{{ID: "a", Room: "r", Name: "n", Message: "m",
		SentAt: chat.NormalizeTime(time.Now()), Seq: 1}}); err != nil {
		t.Fatal(err)
	}
	if status, body := e.presence("r"); status != 200 || body != `{"room":"r","online":0,"members":[]}` {
		t.Fatalf("empty presence: %d %s", status, body)
	}
	want := `{"room":"r","online":5,"members":[{"name":"Ann","connections":2},{"name":"Bob \"B\" <b>","connections":1}]}`
	// Node 1 keeps heartbeating; node 2 sends one update and falls silent.
	stop := make(chan struct{})
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			e.publishPresence(presence.Update{Node: "n1", Full: true, Rooms: map[string]presence.Counts{
				"r": {Anonymous: 1, Members: map[string]int{"Ann": 1}}}})
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { close(stop); <-hbDone }()
	e.publishPresence(presence.Update{Node: "n2", Rooms: map[string]presence.Counts{
		"r": {Anonymous: 1, Members: map[string]int{"Ann": 1, `Bob "B" <b>`: 1}}}})
	chattest.Eventually(t, 5*time.Second, func() bool { _, body := e.presence("r"); return body == want },
		"presence never became %s", want)
	if got := e.rooms("/rooms"); got != "r:1:1 " {
		t.Fatalf("rooms = %q", got)
	}
	_, body := e.do("GET", "/rooms", "")
	var rooms []roomEntry
	if err := json.Unmarshal(body, &rooms); err != nil || len(rooms) != 1 || *rooms[0].Online != 5 {
		t.Fatalf("GET /rooms = %s (%v), want online 5", body, err)
	}
	// Node 2 is silent: its connections expire.
	chattest.Eventually(t, 5*time.Second, func() bool {
		_, body := e.presence("r")
		return body == `{"room":"r","online":2,"members":[{"name":"Ann","connections":1}]}`
	}, "node 2 never expired")
	if status, body := e.presence("bad!room"); status != http.StatusBadRequest {
		t.Fatalf("invalid room: %d %s", status, body)
	}
}

// With authentication, presence needs a token allowing the room.
func TestPresenceRouteAuth(t *testing.T) {
	e := newEnv(t, func(c *app.Config) { c.HS256Secret = testSecret })
	bearer := func(claims map[string]any) []string {
		return []string{"Authorization", "Bearer " + token(t, []byte(testSecret), claims)}
	}
	if status, _ := e.presence("team-a"); status != http.StatusUnauthorized {
		t.Fatalf("no token: %d", status)
	}
	if status, _ := e.presence("random", bearer(map[string]any{"sub": "ann", "rooms": "team-*"})...); status != http.StatusForbidden {
		t.Fatalf("forbidden room: %d", status)
	}
	if status, body := e.presence("team-a", bearer(map[string]any{"sub": "ann", "rooms": "team-*"})...); status != 200 ||
		body != `{"room":"team-a","online":0,"members":[]}` {
		t.Fatalf("allowed room: %d %s", status, body)
	}
}
