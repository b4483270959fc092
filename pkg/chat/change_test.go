package chat

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestChangeSubjectRoundTrip(t *testing.T) {
	for _, id := range []string{"01JD0000000000000000000000", "js.abc.12", "a:b-c_d", ".x.", "a..b"} {
		subj := ChangeSubject("room-1", id)
		if strings.Count(subj, ".") != 3 {
			t.Fatalf("%q: subject %q is not 4 tokens", id, subj)
		}
		room, got, err := ParseSubject(subj)
		if err != nil || room != "room-1" || got != id {
			t.Fatalf("%q: ParseSubject(%q) = %q %q %v", id, subj, room, got, err)
		}
	}
	if room, id, err := ParseSubject("chat.messages.general"); err != nil || room != "general" || id != "" {
		t.Fatalf("message subject: %q %q %v", room, id, err)
	}
	for _, bad := range []string{"chat.messages.a.b.c", "chat.messages.a.", "chat.messages.a.b c", "chat.messages.bad room.x", "other.a.b"} {
		if _, _, err := ParseSubject(bad); err == nil {
			t.Fatalf("ParseSubject(%q) accepted", bad)
		}
	}
}

func storedChange(t *testing.T, c Message, seq uint64) Message {
	t.Helper()
	nm := c.ChangeMsg("sha256:x")
	back, err := FromStored(Stored{Subject: nm.Subject, Author: nm.Header.Get(HeaderAuthor), Data: nm.Data, Seq: seq, Time: time.Unix(100, 0)}, time.Unix(1, 0))
	if err != nil {
		t.Fatalf("FromStored(%s %s): %v", nm.Subject, nm.Data, err)
	}
	return back
}

func TestChangePayloadRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 4, 1, 2, 3, 4_000_000, time.UTC)
	cases := []Message{
		{ID: "m.1", Room: "r", Event: EventEdited, Message: "new <text> & \"q\"\nline", EditedAt: at},
		{ID: "m.1", Room: "r", Event: EventDeleted},
		{ID: "m.1", Room: "r", Event: EventReactions, Reactions: Reactions{"👍": {"ann", "bob"}, "🎉": {"sha256:abc"}}},
		{ID: "m.1", Room: "r", Event: EventReactions, Reactions: Reactions{}},
	}
	for _, c := range cases {
		back := storedChange(t, c, 7)
		want := c
		want.Seq, want.Author, want.SentAt = 7, "sha256:x", time.Unix(100, 0).UTC()
		if !back.Equal(want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", back, want)
		}
	}
}

func TestChangeFrames(t *testing.T) {
	at := time.Date(2026, 12, 4, 1, 2, 3, 0, time.UTC)
	for _, tc := range []struct {
		m    Message
		want string
	}{
		{Message{ID: "m", Room: "r", Seq: 9, Event: EventEdited, Message: "<b>", EditedAt: at, Author: "secret"},
			`{"type":"edited","room":"r","id":"m","seq":9,"message":"<b>","edited_at":"2026-12-04T01:02:03.000Z"}`},
		{Message{ID: "m", Room: "r", Seq: 9, Event: EventDeleted},
			`{"type":"deleted","room":"r","id":"m","seq":9}`},
		{Message{ID: "m", Room: "r", Seq: 9, Event: EventReactions, Reactions: Reactions{"😂": {"a"}, "👍": {"a", "b"}, "🎉": {}}},
			`{"type":"reactions","room":"r","id":"m","seq":9,"reactions":{"👍":2,"😂":1}}`},
		{Message{ID: "m", Room: "r", Name: "n", Message: "t", SentAt: at, Seq: 3, EditedAt: at, Reactions: Reactions{"👍": {"x"}}, Author: "secret"},
			`{"type":"message","id":"m","room":"r","name":"n","message":"t","sent_at":"2026-12-04T01:02:03.000Z","edited_at":"2026-12-04T01:02:03.000Z","reactions":{"👍":1},"seq":3}`},
		{Message{ID: "m", Room: "r", SentAt: at, Seq: 3, Deleted: true},
			`{"type":"message","id":"m","room":"r","name":"","message":"","sent_at":"2026-12-04T01:02:03.000Z","deleted":true,"seq":3}`},
	} {
		if got := string(tc.m.AppendJSON(nil, "message")); got != tc.want {
			t.Fatalf("frame\n got %s\nwant %s", got, tc.want)
		}
	}
}

func TestInvalidChanges(t *testing.T) {
	subj := ChangeSubject("r", "m1")
	for _, data := range []string{
		`{}`, `{"type":"bogus"}`, `{"type":"edited"}`, `{"type":"edited","message":"  "}`,
		`{"type":"edited","id":"other","message":"x"}`, `{"type":"deleted","room":"other"}`,
		`{"type":"reactions"}`, `{"type":"reactions","reactions":{"":["a"]}}`,
		`{"type":"reactions","reactions":{"👍":["a","a"]}}`, `{"type":"reactions","reactions":{"👍":[""]}}`,
		`{"type":"reactions","reactions":{"a b":["x"]}}`, `not json`, `[1]`,
	} {
		_, err := FromStored(Stored{Subject: subj, Data: []byte(data), Seq: 1, Time: time.Unix(1, 0)}, time.Unix(1, 0))
		var ie *InvalidError
		if !errors.As(err, &ie) {
			t.Fatalf("%s: got %v, want an InvalidError", data, err)
		}
	}
}

// TestStateApplyAnyOrder: applying a message's changes in any order, and any of them
// twice, ends in the state that applying them in seq order gives.
func TestStateApplyAnyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 500; round++ {
		var changes []Message
		for seq := uint64(10); seq < 10+uint64(1+rng.IntN(12)); seq++ {
			var c Message
			switch k := rng.IntN(10); {
			case k < 4:
				c = Message{Event: EventEdited, Message: "v" + string(rune('a'+seq%26)), EditedAt: time.Unix(int64(seq), 0)}
			case k < 9:
				c = Message{Event: EventReactions, Reactions: Reactions{"👍": make([]string, rng.IntN(3))}}
			default:
				c = Message{Event: EventDeleted}
			}
			c.Seq = seq
			changes = append(changes, c)
		}
		var want State
		for i := range changes {
			want.Apply(&changes[i])
		}
		for perm := 0; perm < 5; perm++ {
			var got State
			for _, i := range rng.Perm(len(changes)) {
				got.Apply(&changes[i])
				if rng.IntN(3) == 0 {
					got.Apply(&changes[i])
				}
			}
			a := Message{ID: "m"}.WithState(&got)
			b := Message{ID: "m"}.WithState(&want)
			if !a.Equal(b) || got.ContentSeq != want.ContentSeq || got.ReactionsSeq != want.ReactionsSeq {
				t.Fatalf("round %d: order-dependent state:\n got %+v\nwant %+v", round, got, want)
			}
		}
	}
}

func TestReactionsWithWithout(t *testing.T) {
	var r Reactions
	r2 := r.With("👍", "a").With("👍", "a").With("👍", "b").With("🎉", "a")
	if r2.Count("👍") != 2 || r2.Total() != 3 || !r2.Has("🎉", "a") || r != nil {
		t.Fatalf("With: %v (orig %v)", r2, r)
	}
	r3 := r2.Without("👍", "a").Without("🎉", "a").Without("🎉", "zzz")
	if r3.Count("👍") != 1 || r3.Has("👍", "a") || len(r3) != 1 || r2.Count("👍") != 2 {
		t.Fatalf("Without: %v (orig %v)", r3, r2)
	}
}
