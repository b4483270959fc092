package hub

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
)

// The room's subscriber slice stays consistent through removals in any position, double
// removals and removals of subscriptions that were never registered.
func TestRoomSubsAddRemove(t *testing.T) {
	r := newRoom("r", 0, 8)
	subs := make([]*sub, 6)
	for i := range subs {
		subs[i] = &sub{room: r, idx: -1}
		r.addSub(subs[i])
	}
	check := func(want ...int) {
		t.Helper()
		if len(r.subs) != len(want) {
			t.Fatalf("%d subs, want %d", len(r.subs), len(want))
		}
		in := map[*sub]bool{}
		for i, s := range r.subs {
			if s.idx != i {
				t.Fatalf("sub at %d has idx %d", i, s.idx)
			}
			in[s] = true
		}
		for _, w := range want {
			if !in[subs[w]] {
				t.Fatalf("sub %d missing", w)
			}
		}
	}
	r.removeSub(subs[2]) // middle
	check(0, 1, 3, 4, 5)
	r.removeSub(subs[0]) // first
	check(1, 3, 4, 5)
	r.removeSub(subs[0]) // again
	check(1, 3, 4, 5)
	last := r.subs[len(r.subs)-1]
	r.removeSub(last) // last
	r.removeSub(&sub{room: r, idx: -1})
	r.removeSub(&sub{room: r, idx: 1}) // a stranger claiming an index
	if len(r.subs) != 3 || last.idx != -1 {
		t.Fatalf("after removing the last: %d subs, its idx %d", len(r.subs), last.idx)
	}
}

// Every kind of frame (a message, one in its state as the MongoDB tier returns it, each
// change) with a ULID id and a room of up to 32 bytes is encoded into the buffer its
// estimate sized: no regrowth, so the window pays the estimated size, not a doubling;
// and the estimate is not much more than the frame.
func TestFrameSizeEstimate(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	id, room := chat.NewID(at), strings.Repeat("r", 32)
	many := chat.Reactions{}
	for i := range chat.MaxReactionSet {
		many[strings.Repeat("😀", 1+i%8)+string(rune('a'+i%26))+string(rune('a'+i/26))] = make([]string, 999)
	}
	base := chat.Message{ID: id, Room: room, Name: "Ann", Message: "hello", SentAt: at, Seq: math.MaxUint64}
	edited := base
	edited.Message, edited.EditedAt = strings.Repeat("é", 100), at
	for name, m := range map[string]chat.Message{
		"message":           base,
		"empty":             {ID: id, Room: room, SentAt: at, Seq: 1},
		"edited state":      edited,
		"tombstone":         {ID: id, Room: room, SentAt: at, Seq: math.MaxUint64, Deleted: true},
		"reactions state":   func() chat.Message { m := edited; m.Reactions = many; return m }(),
		"edited change":     {ID: id, Room: room, Seq: math.MaxUint64, Event: chat.EventEdited, Message: "x", EditedAt: at},
		"deleted change":    {ID: id, Room: room, Seq: math.MaxUint64, Event: chat.EventDeleted},
		"reactions change":  {ID: id, Room: room, Seq: math.MaxUint64, Event: chat.EventReactions, Reactions: many},
		"no reactions left": {ID: id, Room: room, Seq: math.MaxUint64, Event: chat.EventReactions, Reactions: chat.Reactions{}},
	} {
		payload := m.AppendJSON(nil, "message")
		if est := frameSize(&m); len(payload) > est || est > len(payload)+64 {
			t.Errorf("%s: frame of %d bytes, estimated %d", name, len(payload), est)
		}
		raw := messageFrame(&m)
		if string(raw[len(raw)-len(payload):]) != string(payload) {
			t.Errorf("%s: frame %q does not end with its payload %q", name, raw, payload)
		}
	}
}
