package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/services/api/app"
)

type roomEntry struct {
	Room       string `json:"room"`
	LastSeq    uint64 `json:"last_seq"`
	LastSentAt string `json:"last_sent_at"`
	Messages   int64  `json:"messages"`
	Online     *int   `json:"online"`
}

func (e *env) rooms(path string, hdr ...string) string {
	e.t.Helper()
	resp, body := e.do("GET", path, "", hdr...)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	var rooms []roomEntry
	if err := json.Unmarshal(body, &rooms); err != nil || rooms == nil {
		e.t.Fatalf("GET %s: %s: %v", path, body, err)
	}
	s := ""
	for _, r := range rooms {
		if r.Online == nil || r.LastSentAt == "" {
			e.t.Fatalf("GET %s: incomplete entry %s", path, body)
		}
		s += fmt.Sprintf("%s:%d:%d ", r.Room, r.LastSeq, r.Messages)
	}
	return s
}

// GET /rooms lists the rooms the persister's writes keep (history.Store.InsertMany), by
// last activity, paged with before; bad parameters are 400.
func TestRoomList(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := time.Date(2026, 11, 26, 12, 0, 0, 123_000_000, time.UTC)
	var msgs []chat.Message
	for i := 1; i <= 9; i++ {
		room := []string{"red", "green", "blue"}[i%3]
		msgs = append(msgs, chat.Message{ID: fmt.Sprintf("m%d", i), Room: room, Name: "n", Message: "m",
			SentAt: base.Add(time.Duration(i) * time.Second), Seq: uint64(10 * i)})
	}
	if err := e.store.InsertMany(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if got, want := e.rooms("/rooms"), "red:90:3 blue:80:3 green:70:3 "; got != want {
		t.Fatalf("GET /rooms = %q, want %q", got, want)
	}
	_, body := e.do("GET", "/rooms?limit=1", "")
	var first []roomEntry
	if err := json.Unmarshal(body, &first); err != nil || len(first) != 1 || first[0].LastSentAt != "2026-11-26T12:00:09.123Z" || *first[0].Online != 0 {
		t.Fatalf("GET /rooms?limit=1 = %s (%v)", body, err)
	}
	if got, want := e.rooms("/rooms?limit=2&before=90"), "blue:80:3 green:70:3 "; got != want {
		t.Fatalf("page = %q, want %q", got, want)
	}
	if got := e.rooms("/rooms?before=70"); got != "" {
		t.Fatalf("page before 70 = %q, want none", got)
	}
	for _, q := range []string{"limit=0", "limit=201", "limit=x", "before=-1", "before=x"} {
		resp, body := e.do("GET", "/rooms?"+q, "")
		wantError(t, resp, body, http.StatusBadRequest)
	}
}

// With authentication, GET /rooms lists only the rooms the token may read.
func TestRoomListAuth(t *testing.T) {
	e := newEnv(t, func(c *app.Config) { c.HS256Secret = testSecret })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := chat.NormalizeTime(time.Now())
	var msgs []chat.Message
	for i, room := range []string{"team-a", "random", "team-b", "general"} {
		msgs = append(msgs, chat.Message{ID: room, Room: room, Name: "n", Message: "m", SentAt: now, Seq: uint64(i + 1)})
	}
	if err := e.store.InsertMany(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	key := []byte(testSecret)
	bearer := func(claims map[string]any) []string {
		return []string{"Authorization", "Bearer " + token(t, key, claims)}
	}
	if got, want := e.rooms("/rooms?limit=2", bearer(map[string]any{"sub": "ann", "rooms": "team-*"})...), "team-b:3:1 team-a:1:1 "; got != want {
		t.Fatalf("team-* token: %q, want %q", got, want)
	}
	if got, want := e.rooms("/rooms", bearer(map[string]any{"sub": "bob"})...), "general:4:1 team-b:3:1 random:2:1 team-a:1:1 "; got != want {
		t.Fatalf("token without rooms claim: %q, want %q", got, want)
	}
	if got := e.rooms("/rooms", bearer(map[string]any{"sub": "eve", "rooms": []string{}})...); got != "" {
		t.Fatalf("token with no rooms: %q", got)
	}
	resp, body := e.do("GET", "/rooms", "")
	wantError(t, resp, body, http.StatusUnauthorized)
}
