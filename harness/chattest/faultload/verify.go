package faultload

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
)

// Counts are a load run's exact counts.
type Counts struct {
	Acked, Stored, Delivered, Lost, Duplicated int
}

// Result is what Finish checked.
type Result struct {
	Counts
	Acks    []Ack          // every acknowledged message, sentinels included
	PerRoom map[string]int // acknowledged messages by room
	// Changes: with a Changer (Load.StartChanges), its counts.
	Changes *ChangeCounts
}

// ReadRoom pages through a room's history in MongoDB with Store.After.
func ReadRoom(ctx context.Context, store *history.Store, room string) ([]chat.Message, error) {
	var out []chat.Message
	var after uint64
	for range 10000 {
		page, err := store.After(ctx, room, after, 200)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < 200 {
			return out, nil
		}
		after = page[len(page)-1].Seq
	}
	return nil, errors.New("too many pages")
}

// Finish stops the load, posts a sentinel per room (anything duplicated to a
// subscriber would arrive before it), waits for MongoDB and the subscribers to have
// everything, closes the subscribers and checks the exact counts: every acknowledged
// message is stored once with its id, room and text, nothing else is stored, and every
// subscriber saw exactly its room's stored messages, in seq order, once.
func Finish(t testing.TB, store *history.Store, load *Load, rooms []string, subs []*Subscriber) Result {
	t.Helper()
	if load.changer != nil {
		load.changer.Halt()
	}
	load.Halt()
	sentinel := map[string]uint64{}
	for _, room := range rooms {
		a, ok := load.Post(room, load.opts.KeyPrefix+room+"-end")
		if !ok {
			t.FailNow()
		}
		sentinel[room] = a.Seq
	}
	res := Result{Acks: load.Snapshot(), PerRoom: map[string]int{}}
	for _, a := range res.Acks {
		res.PerRoom[a.Room]++
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// MongoDB: wait until each room holds at least its acknowledged messages.
	chattest.EventuallyEvery(t, 30*time.Second, 250*time.Millisecond, func() bool {
		for _, room := range rooms {
			n, err := store.Count(ctx, room)
			if err != nil || int(n) < res.PerRoom[room] {
				return false
			}
		}
		return true
	}, "MongoDB does not hold every acknowledged message")
	stored := map[string][]chat.Message{}
	for _, room := range rooms {
		msgs, err := ReadRoom(ctx, store, room)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := store.Count(ctx, room); err != nil || int(n) != len(msgs) {
			t.Errorf("room %s: Count %d (%v) but paging read %d", room, n, err, len(msgs))
		}
		stored[room] = msgs
	}
	// Subscribers: wait until each saw its room's sentinel.
	for _, s := range subs {
		want := sentinel[s.Room]
		chattest.Eventually(t, 20*time.Second, func() bool { return s.LastSeq() >= want },
			"%s saw up to seq %d, want %d", s.Name, s.LastSeq(), want)
	}
	for _, s := range subs {
		s.Close()
	}
	if load.changer != nil {
		cc := checkChanges(t, store, load.changer, rooms, subs)
		res.Changes = &cc
	}

	res.Acked = len(res.Acks)
	// Every acknowledged message stored once, with its id, room and text; nothing else.
	bySeq := map[uint64]chat.Message{}
	texts := map[string]int{}
	for _, room := range rooms {
		for _, m := range stored[room] {
			res.Stored++
			if _, dup := bySeq[m.Seq]; dup {
				res.Duplicated++
				t.Errorf("seq %d stored twice", m.Seq)
			}
			bySeq[m.Seq] = m
			if !changed(&m) {
				texts[m.Message]++
			}
		}
	}
	for text, n := range texts {
		if n > 1 {
			res.Duplicated += n - 1
			t.Errorf("message %q stored %d times", text, n)
		}
	}
	ackedSeq := map[uint64]bool{}
	for _, a := range res.Acks {
		ackedSeq[a.Seq] = true
		m, ok := bySeq[a.Seq]
		switch {
		case !ok:
			res.Lost++
			t.Errorf("acknowledged %s (seq %d, room %s) is not in MongoDB", a.Text, a.Seq, a.Room)
		case (a.ID != "" && m.ID != a.ID) || m.Room != a.Room || (m.Message != a.Text && !changed(&m)):
			t.Errorf("seq %d: stored %+v, acknowledged %+v", a.Seq, m, a)
		}
	}
	for seq, m := range bySeq {
		if !ackedSeq[seq] {
			res.Duplicated++
			t.Errorf("stored but never acknowledged: seq %d %q", seq, m.Message)
		}
	}
	// Every subscriber saw exactly its room's stored messages, in seq order, once.
	for _, s := range subs {
		s.mu.Lock()
		res.Delivered += len(s.seqs) + s.dups
		res.Duplicated += s.dups
		if s.dups > 0 || s.disorder > 0 || s.wrongRoom > 0 {
			t.Errorf("%s: %d duplicates %v, %d out of order, %d of another room", s.Name, s.dups, s.dupInfo, s.disorder, s.wrongRoom)
		}
		want := stored[s.Room]
		for _, m := range want {
			if id, ok := s.ids[m.Seq]; !ok {
				res.Lost++
				t.Errorf("%s: never received seq %d (%s)", s.Name, m.Seq, m.Message)
			} else if id != m.ID {
				t.Errorf("%s: seq %d pushed with id %q, stored with %q", s.Name, m.Seq, id, m.ID)
			}
		}
		if len(s.seqs) != len(want) {
			t.Errorf("%s: received %d messages, room %s has %d", s.Name, len(s.seqs), s.Room, len(want))
		}
		s.mu.Unlock()
	}
	return res
}

// changed reports whether m was edited or deleted (its text is no longer the posted one).
func changed(m *chat.Message) bool { return m.Deleted || !m.EditedAt.IsZero() }
