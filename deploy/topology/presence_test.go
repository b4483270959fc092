package topology_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/gorilla/websocket"
)

// presenceWatcher is a websocket subscription with presence, applying what it reads.
type presenceWatcher struct {
	conn    *websocket.Conn
	members map[string]int
	online  int
}

func dialPresence(t *testing.T, pusherURL, query string) *presenceWatcher {
	t.Helper()
	url := "ws" + strings.TrimPrefix(pusherURL, "http") + "/ws?" + query
	conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", url, err, resp)
	}
	t.Cleanup(func() { conn.Close() })
	return &presenceWatcher{conn: conn, members: map[string]int{}}
}

// until reads frames until cond holds; false at the deadline.
func (w *presenceWatcher) until(deadline time.Time, cond func() bool) bool {
	for !cond() {
		_ = w.conn.SetReadDeadline(deadline)
		_, data, err := w.conn.ReadMessage()
		if err != nil {
			return false
		}
		var f struct {
			Type    string
			Online  int
			Members []struct {
				Name        string
				Connections int
			}
		}
		if json.Unmarshal(data, &f) != nil {
			continue
		}
		switch f.Type {
		case "presence":
			clear(w.members)
			fallthrough
		case "join", "leave":
			w.online = f.Online
			for _, m := range f.Members {
				if m.Connections == 0 {
					delete(w.members, m.Name)
				} else {
					w.members[m.Name] = m.Connections
				}
			}
		}
	}
	return true
}

// presenceAcrossPushers: a member on pusher 1 is seen by a watcher on pusher 3 and by the
// api behind nginx; after pusher 1 is killed -9, its members leave the watcher's presence
// and the api's within CHAT_PRESENCE_TIMEOUT (10 s) + coalescing, well under 15 s.
func presenceAcrossPushers(t *testing.T, e *env) {
	ctx := context.Background()
	room := fmt.Sprintf("presence-%d", time.Now().UnixNano()%1e6)
	victim, observer := e.topo.Pushers[0], e.topo.Pushers[len(e.topo.Pushers)-1]
	bob := dialPresence(t, observer.URL(), "room="+room+"&presence=1&name=Bob")
	dialPresence(t, victim.URL(), "room="+room+"&presence=1&name=Ann")
	dialPresence(t, victim.URL(), "room="+room) // anonymous
	if !bob.until(time.Now().Add(15*time.Second), func() bool { return bob.members["Ann"] == 1 && bob.online == 3 }) {
		t.Fatalf("the watcher on %s never saw Ann on %s: online %d, %v", observer.Name, victim.Name, bob.online, bob.members)
	}
	apiPresence := func() string {
		_, body, err := get(e.topo.URL + "/rooms/" + room + "/presence")
		if err != nil {
			return err.Error()
		}
		return strings.TrimSpace(body)
	}
	withAnn := fmt.Sprintf(`{"room":"%s","online":3,"members":[{"name":"Ann","connections":1},{"name":"Bob","connections":1}]}`, room)
	chattest.Eventually(t, 15*time.Second, func() bool { return apiPresence() == withAnn }, "api presence %s, want %s", apiPresence(), withAnn)

	killAt := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	if !bob.until(killAt.Add(20*time.Second), func() bool { _, ann := bob.members["Ann"]; return !ann && bob.online == 1 }) {
		t.Fatalf("Ann still in presence %v after %v", bob.members, since(killAt))
	}
	seen := since(killAt)
	withoutAnn := fmt.Sprintf(`{"room":"%s","online":1,"members":[{"name":"Bob","connections":1}]}`, room)
	chattest.Eventually(t, 20*time.Second, func() bool { return apiPresence() == withoutAnn }, "api presence %s, want %s", apiPresence(), withoutAnn)
	api := since(killAt)
	t.Logf("after kill -9 of %s its members left the presence of a watcher on %s after %v, the api's after %v", victim.Name, observer.Name, seen, api)
	summary.Lock()
	summary.rows = append(summary.rows, summaryRow{fault: "presence: pusher kill -9", recovery: fmt.Sprintf("members left a watcher on %s after %v, the api's presence after %v", observer.Name, seen, api),
		notes: "a member on " + victim.Name + " was seen from " + observer.Name + " and the api first"})
	summary.Unlock()
	if seen > 15*time.Second || api > 15*time.Second {
		t.Errorf("members left after %v (watcher) / %v (api), want within 15 s", seen, api)
	}
	restart := time.Now()
	if err := victim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s restarted in %v", victim.Name, since(restart))
}
