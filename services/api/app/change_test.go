package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go/jetstream"
)

// Issue 11's routes with authentication off: who may edit and delete is whoever holds
// the message's edit key (from the post's 201); reactions are by name.

// changed is a message-shaped change answer: the message as it now is and change_seq.
type changed struct {
	ID        string         `json:"id"`
	Room      string         `json:"room"`
	Name      string         `json:"name"`
	Message   string         `json:"message"`
	SentAt    string         `json:"sent_at"`
	EditedAt  string         `json:"edited_at"`
	Deleted   bool           `json:"deleted"`
	Reactions map[string]int `json:"reactions"`
	Seq       uint64         `json:"seq"`
	ChangeSeq uint64         `json:"change_seq"`
}

func decodeChanged(t *testing.T, b []byte) changed {
	t.Helper()
	var c changed
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	if c.ID == "" || c.Seq == 0 || c.ChangeSeq <= c.Seq {
		t.Fatalf("change answer without id, seq or a change_seq after seq: %s", b)
	}
	return c
}

// persist stores the stream message at seq in history, as the persister does (the api's
// tests run none, so that they decide when a message reaches MongoDB).
func (e *env) persist(seq uint64) {
	e.t.Helper()
	m, err := chat.FromStored(chat.StoredFromRaw(e.stored(seq)), e.streamCreated())
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.store.InsertMany(ctx, []chat.Message{m}); err != nil {
		e.t.Fatal(err)
	}
}

// post posts to room and stores the message in history; it returns the 201's message.
func (e *env) post(room, name, text string, hdr ...string) wireMessage {
	e.t.Helper()
	b, _ := json.Marshal(map[string]string{"name": name, "message": text})
	resp, body := e.postJSON("/rooms/"+room+"/messages", string(b), hdr...)
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("post: %d %s", resp.StatusCode, body)
	}
	m := decodeMessage(e.t, body)
	e.persist(m.Seq)
	return m
}

func msgPath(m wireMessage) string { return "/rooms/" + m.Room + "/messages/" + m.ID }

// lastChange is the newest change event of message m in the stream.
func (e *env) lastChange(m wireMessage) *jetstream.RawStreamMsg {
	e.t.Helper()
	raw, err := e.stream.GetLastMsgForSubject(context.Background(), chat.ChangeSubject(m.Room, m.ID))
	if err != nil {
		e.t.Fatalf("last change of %s: %v", m.ID, err)
	}
	return raw
}

func TestEditAndDeleteWithEditKey(t *testing.T) {
	e := newEnv(t, nil)
	m := e.post("lobby", "Ann", "helo")
	if len(m.EditKey) != 43 {
		t.Fatalf("201 edit_key %q, want 43 characters of base64url", m.EditKey)
	}
	if m.EditKey != e.editKey("lobby", m.ID) {
		t.Fatal("edit_key is not HMAC(secret, room \\x00 id)")
	}
	key := []string{"Edit-Key", m.EditKey}

	t.Run("edit", func(t *testing.T) {
		before := e.count()
		resp, body := e.do("PATCH", msgPath(m), `{"message":" hello\r\nworld "}`, append(key, "Content-Type", "application/json")...)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PATCH: %d %s", resp.StatusCode, body)
		}
		c := decodeChanged(t, body)
		if c.Message != "hello\nworld" || c.Name != "Ann" || c.Seq != m.Seq || c.SentAt != m.SentAt || c.Deleted {
			t.Fatalf("edited %+v", c)
		}
		if _, err := time.Parse(chat.TimeLayout, c.EditedAt); err != nil {
			t.Fatalf("edited_at %q: %v", c.EditedAt, err)
		}
		if e.count() != before+1 {
			t.Fatal("not one change event")
		}
		raw := e.lastChange(m)
		if raw.Sequence != c.ChangeSeq || !strings.Contains(string(raw.Data), `"type":"edited"`) ||
			strings.Contains(string(raw.Data), m.EditKey) || raw.Header.Get(headerAuthor) != "" {
			t.Fatalf("change event at %d: %s %v (answer change_seq %d)", raw.Sequence, raw.Data, raw.Header, c.ChangeSeq)
		}
		// A form body works too; editing twice is two events (the newest wins).
		resp, body = e.do("PATCH", msgPath(m), "message=again", append(key, "Content-Type", "application/x-www-form-urlencoded")...)
		if resp.StatusCode != http.StatusOK || decodeChanged(t, body).Message != "again" {
			t.Fatalf("form PATCH: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("refused", func(t *testing.T) {
		other := e.post("lobby", "Bob", "mine")
		long := strings.Repeat("é", 4097)
		for _, c := range []struct {
			name, method, path, body string
			hdr                      []string
			status                   int
		}{
			{"no key", "PATCH", msgPath(m), `{"message":"x"}`, nil, 403},
			{"wrong key", "PATCH", msgPath(m), `{"message":"x"}`, []string{"Edit-Key", strings.Repeat("A", 43)}, 403},
			{"another message's key", "PATCH", msgPath(m), `{"message":"x"}`, []string{"Edit-Key", other.EditKey}, 403},
			{"key as bearer", "PATCH", msgPath(m), `{"message":"x"}`, []string{"Authorization", "Bearer " + m.EditKey}, 403},
			{"two keys", "PATCH", msgPath(m), `{"message":"x"}`, []string{"Edit-Key", m.EditKey, "Edit-Key", m.EditKey}, 400},
			{"delete without key", "DELETE", msgPath(m), ``, nil, 403},
			{"delete wrong key", "DELETE", msgPath(m), ``, []string{"Edit-Key", other.EditKey}, 403},
			{"blank text", "PATCH", msgPath(m), `{"message":"  "}`, key, 400},
			{"no text", "PATCH", msgPath(m), `{}`, key, 400},
			{"text too long", "PATCH", msgPath(m), `{"message":"` + long + `"}`, key, 400},
			{"text not a string", "PATCH", msgPath(m), `{"message":1}`, key, 400},
			{"bad json", "PATCH", msgPath(m), `{`, key, 400},
			{"control char", "PATCH", msgPath(m), `{"message":"a\u0001"}`, key, 400},
			{"unknown old id", "PATCH", "/rooms/lobby/messages/" + chat.NewID(time.Now().Add(-time.Hour)), `{"message":"x"}`, key, 404},
			{"unknown id", "DELETE", "/rooms/lobby/messages/nope", ``, key, 404},
			{"other room", "PATCH", "/rooms/general/messages/" + m.ID, `{"message":"x"}`, key, 404},
			{"bad id", "PATCH", "/rooms/lobby/messages/bad!id", `{"message":"x"}`, key, 400},
			{"bad room", "DELETE", "/rooms/bad.room/messages/" + m.ID, ``, key, 400},
		} {
			before := e.count()
			hdr := append([]string{"Content-Type", "application/json"}, c.hdr...)
			resp, body := e.do(c.method, c.path, c.body, hdr...)
			wantError(t, resp, body, c.status)
			if e.count() != before {
				t.Errorf("%s: published", c.name)
			}
		}
		// 415 and 413 as for posts.
		resp, body := e.do("PATCH", msgPath(m), `{"message":"x"}`, append(key, "Content-Type", "text/plain")...)
		wantError(t, resp, body, http.StatusUnsupportedMediaType)
		resp, body = e.do("PATCH", msgPath(m), `{"message":"x"}`, key...)
		wantError(t, resp, body, http.StatusUnsupportedMediaType)
		big := `{"message":"x"}` + strings.Repeat(" ", 65537)
		resp, body = e.do("PATCH", msgPath(m), big, append(key, "Content-Type", "application/json")...)
		wantError(t, resp, body, http.StatusRequestEntityTooLarge)
	})

	t.Run("delete", func(t *testing.T) {
		before := e.count()
		resp, body := e.do("DELETE", msgPath(m), "", key...)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
		}
		c := decodeChanged(t, body)
		want := `{"id":"` + m.ID + `","room":"lobby","name":"","message":"","sent_at":"` + m.SentAt +
			`","deleted":true,"seq":` + itoa(m.Seq) + `,"change_seq":` + itoa(c.ChangeSeq) + `}`
		if string(body) != want {
			t.Fatalf("tombstone\n%s\nwant\n%s", body, want)
		}
		if e.count() != before+1 || !strings.Contains(string(e.lastChange(m).Data), `"type":"deleted"`) {
			t.Fatal("not one deleted event")
		}
		// Idempotent: the same answer, nothing published.
		resp, body2 := e.do("DELETE", msgPath(m), "", key...)
		if resp.StatusCode != http.StatusOK || string(body2) != string(body) || e.count() != before+1 {
			t.Fatalf("second DELETE: %d %s (stream +%d)", resp.StatusCode, body2, e.count()-before)
		}
		// Changes to a deleted message: 409; the wrong key still 403 first.
		for _, c := range []struct {
			method, path, body string
			hdr                []string
			status             int
		}{
			{"PATCH", msgPath(m), `{"message":"zombie"}`, key, 409},
			{"PATCH", msgPath(m), `{"message":"zombie"}`, nil, 403},
			{"POST", msgPath(m) + "/reactions", `{"emoji":"👍","name":"Ann"}`, nil, 409},
			{"DELETE", msgPath(m) + "/reactions/👍?name=Ann", ``, nil, 409},
		} {
			resp, body := e.do(c.method, c.path, c.body, append([]string{"Content-Type", "application/json"}, c.hdr...)...)
			wantError(t, resp, body, c.status)
		}
		if e.count() != before+1 {
			t.Fatal("a refused change was published")
		}
	})

	t.Run("idempotent retry answers the same key", func(t *testing.T) {
		resp1, body1 := e.postJSON("/messages", `{"name":"a","message":"b"}`, "Idempotency-Key", "retry-key-1")
		resp2, body2 := e.postJSON("/messages", `{"name":"a","message":"b"}`, "Idempotency-Key", "retry-key-1")
		if resp1.StatusCode != 201 || resp2.StatusCode != 201 || string(body1) != string(body2) {
			t.Fatalf("retry: %d %s / %d %s", resp1.StatusCode, body1, resp2.StatusCode, body2)
		}
		if k := decodeMessage(t, body1).EditKey; k != e.editKey("general", "retry-key-1") {
			t.Fatalf("POST /messages edit_key %q", k)
		}
	})

	t.Run("edit key is never in the stream", func(t *testing.T) {
		n := e.count()
		for seq := uint64(1); seq <= n; seq++ {
			raw := e.stored(seq)
			for k, v := range raw.Header {
				if strings.Contains(strings.Join(v, ","), m.EditKey) || strings.EqualFold(k, "Edit-Key") {
					t.Fatalf("seq %d header %s: %v", seq, k, v)
				}
			}
			if strings.Contains(string(raw.Data), m.EditKey) || strings.Contains(string(raw.Data), "edit_key") {
				t.Fatalf("seq %d: %s", seq, raw.Data)
			}
		}
	})
}

// TestReactionsByName: reactions with authentication off are by the given name, one per
// (message, emoji, name), from the allowlist; the answer has the counts.
func TestReactionsByName(t *testing.T) {
	e := newEnv(t, nil)
	m := e.post("general", "Ann", "react to me")
	path := msgPath(m) + "/reactions"
	react := func(body string, hdr ...string) (*http.Response, []byte) {
		return e.postJSON(path, body, hdr...)
	}
	var lastSeq uint64
	want := func(resp *http.Response, body []byte, counts string, published bool) {
		t.Helper()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		var got struct {
			ChangeSeq uint64 `json:"change_seq"`
		}
		_ = json.Unmarshal(body, &got)
		if published == (got.ChangeSeq == lastSeq) || got.ChangeSeq <= m.Seq {
			t.Fatalf("change_seq %d after %d, published %v: %s", got.ChangeSeq, lastSeq, published, body)
		}
		lastSeq = got.ChangeSeq
		w := `{"id":"` + m.ID + `","room":"general","change_seq":` + itoa(got.ChangeSeq) + `,"reactions":` + counts + `}`
		if string(body) != w {
			t.Fatalf("body\n%s\nwant\n%s", body, w)
		}
	}
	before := e.count()
	resp, body := react(`{"emoji":"👍","name":" Ann "}`)
	want(resp, body, `{"👍":1}`, true)
	resp, body = react(`{"emoji":"👍","name":"Ann"}`) // the same person again: nothing changes
	want(resp, body, `{"👍":1}`, false)
	resp, body = react(`{"emoji":"👍","name":"Bob"}`)
	want(resp, body, `{"👍":2}`, true)
	resp, body = e.do("POST", path, url.Values{"emoji": {"❤️"}, "name": {"Ann"}}.Encode(), "Content-Type", "application/x-www-form-urlencoded")
	want(resp, body, `{"❤️":1,"👍":2}`, true)
	resp, body = e.do("DELETE", path+"/"+url.PathEscape("👍")+"?name=Ann", "")
	want(resp, body, `{"❤️":1,"👍":1}`, true)
	resp, body = e.do("DELETE", path+"/👍?name=Ann", "") // not there any more: nothing changes
	want(resp, body, `{"❤️":1,"👍":1}`, false)
	resp, body = e.do("DELETE", path+"/👍?name=Bob", "")
	want(resp, body, `{"❤️":1}`, true)
	if e.count() != before+5 {
		t.Fatalf("%d events published, want 5", e.count()-before)
	}
	// The event carries who reacted; the answer only counts.
	if data := string(e.lastChange(m).Data); !strings.Contains(data, `"reactions":{"❤️":["Ann"]}`) {
		t.Fatalf("last event %s", data)
	}

	before = e.count()
	for _, c := range []struct {
		name, method, path, body string
		status                   int
	}{
		{"emoji not allowed", "POST", path, `{"emoji":"🍕","name":"Ann"}`, 400},
		{"heart without its variation selector", "POST", path, `{"emoji":"❤","name":"Ann"}`, 400},
		{"no emoji", "POST", path, `{"name":"Ann"}`, 400},
		{"no name", "POST", path, `{"emoji":"👍"}`, 400},
		{"blank name", "POST", path, `{"emoji":"👍","name":"  "}`, 400},
		{"name too long", "POST", path, `{"emoji":"👍","name":"` + strings.Repeat("n", 65) + `"}`, 400},
		{"emoji not a string", "POST", path, `{"emoji":1,"name":"Ann"}`, 400},
		{"delete without name", "DELETE", path + "/👍", ``, 400},
		{"delete with two names", "DELETE", path + "/👍?name=a&name=b", ``, 400},
		{"delete emoji not allowed", "DELETE", path + "/🍕?name=Ann", ``, 400},
		{"unknown message", "POST", "/rooms/general/messages/nope/reactions", `{"emoji":"👍","name":"Ann"}`, 404},
		{"unknown message delete", "DELETE", "/rooms/general/messages/nope/reactions/👍?name=Ann", ``, 404},
	} {
		resp, body := e.do(c.method, c.path, c.body, "Content-Type", "application/json")
		wantError(t, resp, body, c.status)
		if c.status == 400 && c.name == "emoji not allowed" && !strings.Contains(string(body), "👍") {
			t.Errorf("%s: the error does not list the allowed emoji: %s", c.name, body)
		}
	}
	resp, body = e.do("POST", path, `{"emoji":"👍","name":"Ann"}`, "Content-Type", "text/plain")
	wantError(t, resp, body, http.StatusUnsupportedMediaType)
	resp, body = react(`{"emoji":"👍","name":"Ann"}` + strings.Repeat(" ", 65537))
	wantError(t, resp, body, http.StatusRequestEntityTooLarge)
	if e.count() != before {
		t.Fatal("a refused reaction was published")
	}
}

// TestConcurrentReactionsKeepEveryOne: many clients reacting to one message at once all
// get 200 and the final counts are exact (the expected-sequence publish lost none).
func TestConcurrentReactionsKeepEveryOne(t *testing.T) {
	e := newEnv(t, nil)
	m := e.post("general", "Ann", "popular")
	path := msgPath(m) + "/reactions"
	const clients, each = 16, 4
	emoji := []string{"👍", "🎉", "😂", "😮"}
	errs := make(chan string, clients*each)
	done := make(chan struct{})
	for c := range clients {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				b, _ := json.Marshal(map[string]string{"emoji": emoji[i], "name": "client " + itoa(uint64(c))})
				resp, body := doOn(t, e.srv.URL, "POST", path, strings.NewReader(string(b)), "Content-Type", "application/json")
				if resp.StatusCode != http.StatusOK {
					errs <- string(body)
				}
			}
		}()
	}
	for range clients {
		<-done
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Removing and re-adding nothing: one more (no-op) reaction reads the final state.
	resp, body := e.postJSON(path, `{"emoji":"👍","name":"client 0"}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"reactions":{"🎉":16,"👍":16,"😂":16,"😮":16}`) {
		t.Fatalf("final: %d %s", resp.StatusCode, body)
	}
	if got, want := e.count(), uint64(1+clients*each); got != want {
		t.Fatalf("stream has %d messages, want %d (the post and one event per reaction)", got, want)
	}
}

// TestChangeWaitsForAJustPostedMessage: a change to a message posted a moment ago that
// is not in history yet waits for the persister instead of answering 404.
func TestChangeWaitsForAJustPostedMessage(t *testing.T) {
	e := newEnv(t, nil)
	// The persister's consumer: the api waits until it has stored what the stream holds.
	_, js := e.nats.Connect(t)
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	cons, err := js.CreateOrUpdateConsumer(cctx, chat.StreamName, jetstream.ConsumerConfig{
		Durable: chat.PersisterConsumer, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	resp, body := e.postJSON("/rooms/general/messages", `{"name":"Ann","message":"fresh"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("post: %d %s", resp.StatusCode, body)
	}
	m := decodeMessage(t, body)
	stored := make(chan struct{})
	go func() {
		defer close(stored)
		time.Sleep(400 * time.Millisecond)
		e.persist(m.Seq)
		// ...and acks it, as the persister does once it is stored.
		batch, err := cons.FetchNoWait(10)
		if err != nil {
			t.Error(err)
			return
		}
		for msg := range batch.Messages() {
			if err := msg.DoubleAck(cctx); err != nil {
				t.Error(err)
			}
		}
	}()
	start := time.Now()
	resp, body = e.do("PATCH", msgPath(m), `{"message":"fresher"}`, "Content-Type", "application/json", "Edit-Key", m.EditKey)
	<-stored
	if resp.StatusCode != http.StatusOK || decodeChanged(t, body).Message != "fresher" {
		t.Fatalf("PATCH: %d %s", resp.StatusCode, body)
	}
	if d := time.Since(start); d < 350*time.Millisecond {
		t.Fatalf("answered after %v, before the message was in history", d)
	}
}

// TestSeedRouteLeavesDeletedOut: GET /messages leaves tombstones out, the rooms route
// keeps them.
func TestSeedRouteLeavesDeletedOut(t *testing.T) {
	e := newEnv(t, nil)
	a := e.post("general", "Ann", "stays")
	b := e.post("general", "Bob", "goes")
	// history11's persister applies the deletion; here it is written as it stores it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	coll := e.mongo.Connect(t).Database("chat").Collection("messages")
	if _, err := coll.UpdateByID(ctx, b.ID, map[string]any{"$set": map[string]any{"deleted": true, "name": "", "message": "", "content_seq": int64(b.Seq + 1)}}); err != nil {
		t.Fatal(err)
	}
	_, body := e.do("GET", "/messages", "")
	if ms := decodeMessages(t, body); len(ms) != 1 || ms[0].ID != a.ID {
		t.Fatalf("GET /messages: %s", body)
	}
	_, body = e.do("GET", "/rooms/general/messages", "")
	if ms := decodeMessages(t, body); len(ms) != 2 {
		t.Fatalf("GET /rooms/general/messages: %s", body)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// TestReactionSetLimit: another service may have filled a message's reactions with 64
// distinct emoji (what the bus accepts); a 65th answers 409 instead of publishing an
// event the persister would dead-letter, while an emoji already there still works.
func TestReactionSetLimit(t *testing.T) {
	e := newEnv(t, nil)
	m := e.post("general", "Ann", "full")
	full := chat.Reactions{"👍": {"Zed"}}
	for i := range 63 {
		full["e"+itoa(uint64(i))] = []string{"Zed"}
	}
	ch := chat.Message{Event: chat.EventReactions, ID: m.ID, Room: "general", Reactions: full}
	_, js := e.nats.Connect(t)
	if _, err := js.PublishMsg(context.Background(), ch.ChangeMsg("")); err != nil {
		t.Fatal(err)
	}
	before := e.count()
	resp, body := e.postJSON(msgPath(m)+"/reactions", `{"emoji":"🎉","name":"Ann"}`)
	wantError(t, resp, body, http.StatusConflict)
	resp, body = e.postJSON(msgPath(m)+"/reactions", `{"emoji":"👍","name":"Ann"}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"👍":2`) {
		t.Fatalf("an emoji already there: %d %s", resp.StatusCode, body)
	}
	if e.count() != before+1 {
		t.Fatal("not exactly one event published")
	}
}
