package history_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
)

// client is what a subscriber of one room shows: it applies messages and change frames
// in the order it receives them, knowing nothing of part seqs.
type client map[string]*chat.Message

func (c client) apply(e chat.Message) {
	m, ok := c[e.ID]
	switch e.Event {
	case "":
		c[e.ID] = &e
	case chat.EventEdited:
		if ok && !m.Deleted {
			m.Message, m.EditedAt = e.Message, e.EditedAt
		}
	case chat.EventDeleted:
		if ok {
			m.Name, m.Message, m.EditedAt, m.Reactions, m.Deleted = "", "", time.Time{}, nil, true
		}
	case chat.EventReactions:
		if ok && !m.Deleted {
			m.Reactions = e.Reactions
		}
	}
}

func (c client) messages() []chat.Message {
	var out []chat.Message
	for _, m := range c {
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b chat.Message) int { return int(a.Seq) - int(b.Seq) })
	return out
}

// timeline is a room's events in stream order (seqs 1..n), messages (one in msgEvery)
// and changes to earlier messages of the room, with events of another room in between.
func timeline(rng *rand.Rand, room string, n, msgEvery int) []chat.Message {
	at := chat.NormalizeTime(time.Now())
	var out []chat.Message
	var ids = map[string][]*chat.Message{}
	for seq := uint64(1); seq <= uint64(n); seq++ {
		room := room
		if rng.IntN(5) == 0 {
			room += "-other"
		}
		if len(ids[room]) == 0 || rng.IntN(msgEvery) == 0 {
			m := chat.Message{ID: fmt.Sprintf("%s%d", room, seq), Room: room, Name: "n", Message: fmt.Sprint("text ", seq),
				SentAt: at, Seq: seq, Author: "a"}
			out = append(out, m)
			ids[room] = append(ids[room], &m)
			continue
		}
		target := ids[room][rng.IntN(len(ids[room]))]
		out = append(out, randomChange(rng, target, seq, at))
	}
	return out
}

// TestRangeResumesToHistory: from any cursor, a subscriber that had the room as it was
// at the cursor, applies what Range sends (paged by a small limit) up to some seq and the
// stream's events from there, shows exactly what history shows.
func TestRangeResumesToHistory(t *testing.T) {
	store := history.New(chattest.StartMongo(t).Connect(t))
	ctx := context.Background()
	if err := store.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 13))
	var changeItems int
	// Mostly messages, then mostly changes (to fewer, older messages).
	for round, msgEvery := range []int{3, 8} {
		room := fmt.Sprint("r", round)
		changeItems += checkResumes(t, store, rng, room, timeline(rng, room, 50, msgEvery))
		if t.Failed() {
			t.Fatalf("seed %d", seed)
		}
	}
	if changeItems == 0 {
		t.Fatal("Range never sent a change: the test proves nothing")
	}
	t.Logf("%d change items", changeItems)
}

// checkResumes writes a room's timeline and checks resumes from many cursors, returning
// how many change items Range sent.
func checkResumes(t *testing.T, store *history.Store, rng *rand.Rand, room string, evs []chat.Message) (changeItems int) {
	t.Helper()
	ctx := context.Background()
	n := uint64(len(evs))
	writeShuffled(t, store, rng, evs, nil)
	hist, err := store.After(ctx, room, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for from := uint64(0); from <= n; from += 2 + uint64(rng.IntN(3)) {
		to := from + 1 + uint64(rng.IntN(int(n-from)+1)) // the stream's first seq: (from, n+1]
		for _, limit := range []int{1, 4} {
			c := client{}
			for _, e := range evs {
				if e.Room == room && e.Seq <= from {
					c.apply(e)
				}
			}
			after := from
			for page := 0; ; page++ {
				items, err := store.Range(ctx, room, after, to, limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(items) > limit || page > int(n) {
					t.Fatalf("Range(%d, %d, %d) returned %d items", after, to, limit, len(items))
				}
				for _, it := range items {
					if it.Seq <= after || it.Seq >= to || it.Room != room {
						t.Fatalf("Range(%d, %d, %d): item %s seq %d out of order or range", after, to, limit, it.Event, it.Seq)
					}
					after = it.Seq
					if it.Event != "" {
						changeItems++
					}
					c.apply(it)
				}
				if len(items) < limit {
					break
				}
			}
			for _, e := range evs {
				if e.Room == room && e.Seq >= to {
					c.apply(e)
				}
			}
			got := c.messages()
			ok := len(got) == len(hist)
			for i := 0; ok && i < len(got); i++ {
				ok = got[i].Equal(hist[i])
			}
			if !ok {
				t.Errorf("from %d to %d, limit %d: the subscriber shows", from, to, limit)
				for _, m := range got {
					t.Errorf("  %s", show(m))
				}
				t.Errorf("history shows")
				for _, m := range hist {
					t.Errorf("  %s", show(m))
				}
				return changeItems
			}
		}
	}
	return changeItems
}

// TestRangeItems: Range's items, their kinds and what they carry, and its limit: a page
// of limit items covers everything up to its last seq.
func TestRangeItems(t *testing.T) {
	store := history.New(chattest.StartMongo(t).Connect(t))
	ctx := context.Background()
	at := chat.NormalizeTime(time.Now())
	msg := func(id string, seq uint64) chat.Message {
		return chat.Message{ID: id, Room: "r", Name: "n", Message: id, SentAt: at, Seq: seq}
	}
	like := chat.Reactions{}.With("👍", "ann")
	change := func(id string, seq uint64, ev chat.Event) chat.Message {
		c := chat.Message{ID: id, Room: "r", Seq: seq, Event: ev}
		switch ev {
		case chat.EventEdited:
			c.Message, c.EditedAt = fmt.Sprint("edit ", seq), at.Add(time.Duration(seq)*time.Second)
		case chat.EventReactions:
			c.Reactions = like
		}
		return c
	}
	if err := store.InsertMany(ctx, []chat.Message{msg("a", 1), msg("b", 2), msg("c", 3), msg("d", 14), msg("e", 16)}); err != nil {
		t.Fatal(err)
	}
	changes := []chat.Message{
		change("a", 4, chat.EventEdited), change("a", 11, chat.EventEdited), // a: edited, last at 11
		change("b", 5, chat.EventReactions), change("b", 12, chat.EventReactions), // b: reactions at 12
		change("c", 6, chat.EventReactions), change("c", 13, chat.EventDeleted), // c: deleted at 13, its reactions gone
		change("d", 15, chat.EventEdited), // d is newer than the cursor: sent in its state
		change("b", 17, chat.EventEdited),
	}
	if err := store.ApplyChanges(ctx, changes); err != nil {
		t.Fatal(err)
	}
	d := msg("d", 14)
	d.Message, d.EditedAt = "edit 15", at.Add(15*time.Second)
	want := []chat.Message{
		change("a", 11, chat.EventEdited),
		{ID: "b", Room: "r", Seq: 12, Event: chat.EventReactions, Reactions: like},
		{ID: "c", Room: "r", Seq: 13, Event: chat.EventDeleted},
		d,
		msg("e", 16),
		change("b", 17, chat.EventEdited),
	}
	all, err := store.Range(ctx, "r", 3, 100, 100)
	if err != nil {
		t.Fatal(err)
	}
	same := func(got, want []chat.Message) bool {
		return slices.EqualFunc(got, want, func(a, b chat.Message) bool { a.Author = b.Author; return a.Equal(b) })
	}
	if !same(all, want) {
		for _, m := range all {
			t.Errorf("got %s", show(m))
		}
		t.Fatal("Range(3, 100) is not as expected")
	}
	// Paged by 2 (each kind's query alone would fill a page).
	var paged []chat.Message
	for after := uint64(3); ; {
		page, err := store.Range(ctx, "r", after, 100, 2)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, page...)
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].Seq
	}
	// The page [13 14] ends at d, so the next one, from 14, has d's edit at 15 too (d is
	// at or before its cursor): redundant after d in its state, and harmless.
	wantPaged := slices.Insert(slices.Clone(want), 4, change("d", 15, chat.EventEdited))
	if !same(paged, wantPaged) {
		t.Fatalf("paged by 2: %v, want %v", seqsOf(paged), seqsOf(wantPaged))
	}
	// to is exclusive; changes of messages after from are in the messages' state.
	part, err := store.Range(ctx, "r", 11, 16, 100)
	if err != nil || fmt.Sprint(seqsOf(part)) != "[12 13 14]" {
		t.Fatalf("Range(11, 16) = %v, %v; want [12 13 14]", seqsOf(part), err)
	}
	if part, err := store.Range(ctx, "r", 0, 100, 100); err != nil || fmt.Sprint(seqsOf(part)) != "[1 2 3 14 16]" {
		t.Fatalf("Range(0, 100) = %v, %v; want only the messages", seqsOf(part), err)
	}

	// Runs of one kind longer than a page: edits of s1-s5 at 6-10, reactions of s1-s5 at
	// 11-15, a message at 16.
	var ss, sc []chat.Message
	for i := uint64(1); i <= 5; i++ {
		ss = append(ss, chat.Message{ID: fmt.Sprint("s", i), Room: "s", Name: "n", Message: "m", SentAt: at, Seq: i})
		sc = append(sc, chat.Message{ID: fmt.Sprint("s", i), Room: "s", Seq: 5 + i, Event: chat.EventEdited, Message: "e", EditedAt: at},
			chat.Message{ID: fmt.Sprint("s", i), Room: "s", Seq: 10 + i, Event: chat.EventReactions, Reactions: like})
	}
	ss = append(ss, chat.Message{ID: "s16", Room: "s", Name: "n", Message: "m", SentAt: at, Seq: 16})
	if err := store.InsertMany(ctx, ss); err != nil {
		t.Fatal(err)
	}
	if err := store.ApplyChanges(ctx, sc); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 2, 3, 4, 7} {
		var seqs []uint64
		for after := uint64(5); ; {
			page, err := store.Range(ctx, "s", after, 100, limit)
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, seqsOf(page)...)
			if len(page) < limit {
				break
			}
			after = page[len(page)-1].Seq
		}
		if fmt.Sprint(seqs) != "[6 7 8 9 10 11 12 13 14 15 16]" {
			t.Fatalf("room s from 5 paged by %d: %v", limit, seqs)
		}
	}
}
