package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/chatrt/chat/services/api/app"
)

// headerAuthor is the stream header that records who posted (chat.HeaderAuthor).
const headerAuthor = "Chat-Author"

// wantKeyConflict checks a 409 for a reused Idempotency-Key: an error body that says
// nothing of the first message, and nothing published.
func wantKeyConflict(t *testing.T, e *env, before uint64, resp *http.Response, body []byte, secrets ...string) {
	t.Helper()
	wantError(t, resp, body, http.StatusConflict)
	for _, s := range secrets {
		if strings.Contains(string(body), s) {
			t.Fatalf("409 body %s discloses %q of the first message", body, s)
		}
	}
	if got := e.count(); got != before {
		t.Fatalf("stream has %d new messages, want 0", got-before)
	}
}

// TestIdempotencyKeyIsScopedToTheRoom: a key names one message in one room. Reused for
// another room, by either route, it answers 409 and discloses nothing of the first.
func TestIdempotencyKeyIsScopedToTheRoom(t *testing.T) {
	e := newEnv(t, nil)
	const key = "k-secret-1"
	resp1, body1 := e.postJSON("/rooms/secret/messages", `{"name":"ops","message":"the launch code is 1234"}`, "Idempotency-Key", key)
	if resp1.StatusCode != http.StatusCreated {
		t.Fatalf("status %d: %s", resp1.StatusCode, body1)
	}
	secrets := []string{"secret", "launch", "1234", "ops", `"seq"`, `"sent_at"`}

	for _, r := range []struct{ path, body string }{
		{"/rooms/public/messages", `{"name":"eve","message":"hello"}`},
		{"/rooms/public/messages", `{"name":"ops","message":"the launch code is 1234"}`},
		{"/messages", `{"name":"eve","message":"hello"}`},
		{"/messages", `{"name":"eve","message":"hello","room":"public"}`},
	} {
		before := e.count()
		resp, body := e.postJSON(r.path, r.body, "Idempotency-Key", key)
		wantKeyConflict(t, e, before, resp, body, secrets...)
	}

	// The same room keeps today's behaviour: same status and body, the first body wins.
	for _, r := range []struct{ path, body string }{
		{"/rooms/secret/messages", `{"name":"ops","message":"another text"}`},
		{"/messages", `{"name":"x","message":"y","room":"secret"}`},
	} {
		before := e.count()
		resp, body := e.postJSON(r.path, r.body, "Idempotency-Key", key)
		if resp.StatusCode != resp1.StatusCode || string(body) != string(body1) {
			t.Fatalf("retry %s %s: %d %s, want %d %s", r.path, r.body, resp.StatusCode, body, resp1.StatusCode, body1)
		}
		if e.count() != before {
			t.Fatal("a retry in the same room was stored again")
		}
	}

	t.Run("seed route and room route share the default room", func(t *testing.T) {
		const key = "k-general-1"
		resp1, body1 := e.do("POST", "/messages", "name=Seed&message=hi", "Content-Type", "application/x-www-form-urlencoded", "Idempotency-Key", key)
		if resp1.StatusCode != http.StatusCreated {
			t.Fatalf("status %d: %s", resp1.StatusCode, body1)
		}
		resp, body := e.postJSON("/rooms/general/messages", `{"name":"a","message":"b"}`, "Idempotency-Key", key)
		if resp.StatusCode != http.StatusCreated || string(body) != string(body1) {
			t.Fatalf("same room by the room route: %d %s, want %s", resp.StatusCode, body, body1)
		}
		before := e.count()
		resp, body = e.postJSON("/rooms/other/messages", `{"name":"a","message":"b"}`, "Idempotency-Key", key)
		wantKeyConflict(t, e, before, resp, body, "Seed", "hi")
	})

	t.Run("a room post's key reused by the seed route", func(t *testing.T) {
		const key = "k-room-2"
		resp1, body1 := e.postJSON("/rooms/team/messages", `{"name":"a","message":"private"}`, "Idempotency-Key", key)
		if resp1.StatusCode != http.StatusCreated {
			t.Fatalf("status %d: %s", resp1.StatusCode, body1)
		}
		before := e.count()
		resp, body := e.do("POST", "/messages", "name=Seed&message=hello", "Content-Type", "application/x-www-form-urlencoded", "Idempotency-Key", key)
		wantKeyConflict(t, e, before, resp, body, "team", "private")
	})

	t.Run("concurrent posts to two rooms", func(t *testing.T) {
		const key = "k-race-1"
		before := e.count()
		const n = 16
		statuses := make([]int, n)
		bodies := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				room := []string{"red", "blue"}[i%2]
				req, _ := http.NewRequest("POST", e.srv.URL+"/rooms/"+room+"/messages", strings.NewReader(`{"name":"n","message":"`+room+`"}`))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				statuses[i], bodies[i] = resp.StatusCode, string(b)
			}()
		}
		wg.Wait()
		if e.count() != before+1 {
			t.Fatalf("stream has %d new messages, want 1", e.count()-before)
		}
		var winner string
		for i := range n {
			if statuses[i] == http.StatusCreated {
				winner = bodies[i]
			}
		}
		if winner == "" {
			t.Fatalf("no post succeeded: %v", statuses)
		}
		won := decodeMessage(t, []byte(winner)).Room
		for i := range n {
			room := []string{"red", "blue"}[i%2]
			switch {
			case room == won && (statuses[i] != http.StatusCreated || bodies[i] != winner):
				t.Errorf("post %d to %s (the winner): %d %s", i, room, statuses[i], bodies[i])
			case room != won && (statuses[i] != http.StatusConflict || strings.Contains(bodies[i], won)):
				t.Errorf("post %d to %s: %d %s, want 409 saying nothing of %s", i, room, statuses[i], bodies[i], won)
			}
		}
	})

	t.Run("no author is recorded without auth", func(t *testing.T) {
		if v := e.stored(decodeMessage(t, body1).Seq).Header.Values(headerAuthor); len(v) != 0 {
			t.Fatalf("anonymous post stored with %s %q", headerAuthor, v)
		}
	})
}

// TestIdempotencyKeyIsScopedToTheAuthor: with auth on, a key names one author's message:
// another token subject reusing it gets 409, even in the same room.
func TestIdempotencyKeyIsScopedToTheAuthor(t *testing.T) {
	e := newEnv(t, func(c *app.Config) { c.HS256Secret = testSecret })
	key := []byte(testSecret)
	bearer := func(claims map[string]any) []string {
		return []string{"Authorization", "Bearer " + token(t, key, claims)}
	}
	ann := bearer(map[string]any{"sub": "ann-0001", "name": "Ann"})
	annRenamed := bearer(map[string]any{"sub": "ann-0001", "name": "Ann B.", "rooms": []string{"team"}})
	bob := bearer(map[string]any{"sub": "bob-0002", "name": "Ann"}) // same display name, another subject

	const k = "k-team-1"
	resp1, body1 := e.postJSON("/rooms/team/messages", `{"message":"ann's draft"}`, append([]string{"Idempotency-Key", k}, ann...)...)
	if resp1.StatusCode != http.StatusCreated {
		t.Fatalf("status %d: %s", resp1.StatusCode, body1)
	}
	first := decodeMessage(t, body1)

	before := e.count()
	resp, body := e.postJSON("/rooms/team/messages", `{"message":"bob's"}`, append([]string{"Idempotency-Key", k}, bob...)...)
	wantKeyConflict(t, e, before, resp, body, "draft", first.SentAt)

	// The same subject (whatever its display name now) keeps today's behaviour.
	resp, body = e.postJSON("/rooms/team/messages", `{"message":"retry"}`, append([]string{"Idempotency-Key", k}, annRenamed...)...)
	if resp.StatusCode != http.StatusCreated || string(body) != string(body1) {
		t.Fatalf("same author retry: %d %s, want %s", resp.StatusCode, body, body1)
	}
	// Another room, same author: 409 as without auth.
	resp, body = e.postJSON("/rooms/other/messages", `{"message":"x"}`, append([]string{"Idempotency-Key", k}, ann...)...)
	wantKeyConflict(t, e, before, resp, body, "draft")

	// The author is recorded with the stream message (for the checks above, and for
	// "the author may edit" later), never as the raw subject and never to clients.
	raw := e.stored(first.Seq)
	author := raw.Header.Get(headerAuthor)
	if author == "" || strings.Contains(author, "ann-0001") {
		t.Fatalf("stream message %s header %q, want an opaque author id", headerAuthor, author)
	}
	var payload map[string]any
	if err := json.Unmarshal(raw.Data, &payload); err != nil {
		t.Fatal(err)
	}
	for f := range payload {
		if f != "id" && f != "room" && f != "name" && f != "message" && f != "sent_at" {
			t.Fatalf("payload field %q: %s", f, raw.Data)
		}
	}
	if strings.Contains(string(body1), author) || strings.Contains(string(body1), "ann-0001") {
		t.Fatalf("201 body carries the author id: %s", body1)
	}
	// Another subject's post records another author id.
	_, b2 := e.postJSON("/rooms/team/messages", `{"message":"bob's own"}`, bob...)
	if other := e.stored(decodeMessage(t, b2).Seq).Header.Get(headerAuthor); other == "" || other == author {
		t.Fatalf("bob's author id %q, ann's %q", other, author)
	}
}
