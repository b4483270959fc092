package history_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// scenario is one message and changes to it, and what chat.State.Apply makes of them.
// A message may be stored twice in the stream (copies): the one with the lowest seq is
// the message.
type scenario struct {
	msg     chat.Message
	copies  []chat.Message // msg's other copies, higher seqs
	changes []chat.Message
	want    chat.State
}

var (
	emojis = []string{"👍", "❤️", "a.b", "$x"} // '.' and '$' are valid emoji on the bus
	people = []string{"ann", "bob", "cy"}
)

// randomReactions is a full reactions set as a change carries it (maybe empty).
func randomReactions(rng *rand.Rand) chat.Reactions {
	r := chat.Reactions{}
	for _, e := range emojis {
		for _, p := range people {
			if rng.IntN(3) == 0 {
				r = r.With(e, p)
			}
		}
	}
	return r
}

// randomChange is a change to m with seq, of a random kind (deletions rarer).
func randomChange(rng *rand.Rand, m *chat.Message, seq uint64, at time.Time) chat.Message {
	c := chat.Message{ID: m.ID, Room: m.Room, Seq: seq, SentAt: at}
	switch k := rng.IntN(10); {
	case k < 4:
		c.Event, c.Message, c.EditedAt = chat.EventEdited, fmt.Sprintf("edit %d of %s", seq, m.ID), at.Add(time.Duration(seq)*time.Millisecond)
	case k < 8:
		c.Event, c.Reactions = chat.EventReactions, randomReactions(rng)
	default:
		c.Event = chat.EventDeleted
	}
	return c
}

// newScenarios makes n messages in room with 1-8 changes each (seqs shuffled across all
// of them, so a change's seq may even be below its message's).
func newScenarios(rng *rand.Rand, room string, n int) []scenario {
	at := chat.NormalizeTime(time.Now())
	total := 0
	counts := make([]int, n)
	copies := make([]int, n)
	for i := range counts {
		counts[i] = 1 + rng.IntN(8)
		copies[i] = max(0, rng.IntN(6)-3) // a quarter have another copy or two
		total += 1 + copies[i] + counts[i]
	}
	seqs := rng.Perm(total)
	next := func() uint64 { s := seqs[0]; seqs = seqs[1:]; return uint64(s + 1) }
	out := make([]scenario, n)
	for i := range out {
		sc := &out[i]
		sc.msg = chat.Message{ID: fmt.Sprintf("%s-m%d", room, i), Room: room, Name: "name", Message: "original",
			SentAt: at, Seq: next(), Author: "author-" + fmt.Sprint(i%3)}
		for range copies[i] {
			c := sc.msg
			c.Seq = next()
			c.Name, c.Message, c.Author, c.SentAt = fmt.Sprint("copy ", c.Seq), fmt.Sprint("copy ", c.Seq), "", at.Add(time.Second)
			if c.Seq < sc.msg.Seq {
				sc.msg, c = c, sc.msg
			}
			sc.copies = append(sc.copies, c)
		}
		for range counts[i] {
			sc.changes = append(sc.changes, randomChange(rng, &sc.msg, next(), at))
		}
		for j := range sc.changes {
			sc.want.Apply(&sc.changes[j])
		}
	}
	return out
}

// events are every scenario's message and changes.
func events(scs []scenario) []chat.Message {
	var out []chat.Message
	for _, sc := range scs {
		out = append(out, sc.msg)
		out = append(out, sc.copies...)
		out = append(out, sc.changes...)
	}
	return out
}

// writeShuffled writes evs in a random order, in random batches (each batch's messages
// with InsertMany and its changes with ApplyChanges, in a random order of the two), now
// and then repeating an event within its batch. after, if not nil, runs after each batch
// with the batch's events.
func writeShuffled(t *testing.T, store *history.Store, rng *rand.Rand, evs []chat.Message, after func([]chat.Message)) {
	t.Helper()
	ctx := context.Background()
	evs = slices.Clone(evs)
	rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	for len(evs) > 0 {
		n := min(len(evs), 1+rng.IntN(12))
		var msgs, changes []chat.Message
		for _, e := range evs[:n] {
			copies := 1
			if rng.IntN(8) == 0 {
				copies = 2
			}
			for range copies {
				if e.Event == "" {
					msgs = append(msgs, e)
				} else {
					changes = append(changes, e)
				}
			}
		}
		batch := evs[:n]
		evs = evs[n:]
		steps := []func() error{
			func() error { return store.InsertMany(ctx, msgs) },
			func() error { return store.ApplyChanges(ctx, changes) },
		}
		if rng.IntN(2) == 0 {
			steps[0], steps[1] = steps[1], steps[0]
		}
		for _, step := range steps {
			if err := step(); err != nil {
				t.Fatal(err)
			}
		}
		if after != nil {
			after(batch)
		}
	}
}

// checkScenarios checks that every scenario's message is stored as chat.State.Apply says,
// and that a deleted one's document holds no name, text, edit or reactions any more.
func checkScenarios(t *testing.T, store *history.Store, coll *mongo.Collection, scs []scenario) {
	t.Helper()
	ctx := context.Background()
	for _, sc := range scs {
		if sc.want.Deleted {
			var raw bson.M
			if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: sc.msg.ID}}).Decode(&raw); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"edited_at", "reactions", "reactions_seq"} {
				if v, ok := raw[f]; ok {
					t.Errorf("tombstone %s still has %s: %v", sc.msg.ID, f, v)
				}
			}
			if raw["name"] != "" || raw["message"] != "" || raw["deleted"] != true {
				t.Errorf("tombstone %s is stored as %v", sc.msg.ID, raw)
			}
		}
		got, st, err := store.Get(ctx, sc.msg.Room, sc.msg.ID)
		if err != nil {
			t.Fatalf("Get %s: %v", sc.msg.ID, err)
		}
		if want := sc.msg.WithState(&sc.want); !got.Equal(want) {
			t.Errorf("%s after %s:\n got  %s\n want %s", sc.msg.ID, describe(sc.changes), show(got), show(want))
		}
		if !stateEqual(st, sc.want) {
			t.Errorf("%s after %s: state\n got  %+v\n want %+v", sc.msg.ID, describe(sc.changes), st, sc.want)
		}
	}
}

func stateEqual(a, b chat.State) bool {
	ma, mb := chat.Message{Reactions: a.Reactions}, chat.Message{Reactions: b.Reactions}
	return a.Message == b.Message && a.EditedAt.Equal(b.EditedAt) && a.Deleted == b.Deleted &&
		a.ContentSeq == b.ContentSeq && a.ReactionsSeq == b.ReactionsSeq && ma.Equal(mb)
}

func show(m chat.Message) string {
	return fmt.Sprintf("%s author=%q", m.AppendJSON(nil, ""), m.Author)
}

func describe(cs []chat.Message) string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s@%d", c.Event, c.Seq))
	}
	return fmt.Sprint(out)
}

// TestChangesConvergeInAnyOrder: a message and its edits, reactions and deletions,
// written in any order, in any batches, repeated, and all of it once more in another
// order, end as chat.State.Apply says; until its message is stored, a message's changes
// are invisible.
func TestChangesConvergeInAnyOrder(t *testing.T) { bothPaths(t, testChangesConvergeInAnyOrder) }

func testChangesConvergeInAnyOrder(t *testing.T, newStore func(*mongo.Client) *history.Store) {
	mc := chattest.StartMongo(t).Connect(t)
	store, coll := newStore(mc), mc.Database(history.Database).Collection(history.Collection)
	ctx := context.Background()
	if err := store.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 11))
	for round := range 2 {
		room := fmt.Sprintf("r%d", round)
		scs := newScenarios(rng, room, 12)
		evs := events(scs)
		// Exactly the messages inserted so far are visible, whatever changes came first.
		inserted := map[string]bool{}
		writeShuffled(t, store, rng, evs, func(batch []chat.Message) {
			for _, e := range batch {
				if e.Event == "" {
					inserted[e.ID] = true
				}
			}
			if n, err := store.Count(ctx, room); err != nil || int(n) != len(inserted) {
				t.Fatalf("%d messages visible (%v), %d inserted", n, err, len(inserted))
			}
			for _, e := range batch {
				if _, _, err := store.Get(ctx, room, e.ID); inserted[e.ID] != (err == nil) {
					t.Fatalf("Get %s (inserted %v): %v", e.ID, inserted[e.ID], err)
				} else if err != nil && !errors.Is(err, history.ErrNotFound) {
					t.Fatalf("Get %s: %v, want ErrNotFound", e.ID, err)
				}
			}
		})
		checkScenarios(t, store, coll, scs)
		// Everything again, in another order: nothing changes.
		writeShuffled(t, store, rng, evs, nil)
		checkScenarios(t, store, coll, scs)
		if t.Failed() {
			t.Fatalf("round %d failed (seed %d)", round, seed)
		}
	}
}

// TestConcurrentWritersConverge: two writers (two clients, as two persister replicas)
// write the same messages and changes at once, each in its own order and batches.
func TestConcurrentWritersConverge(t *testing.T) { bothPaths(t, testConcurrentWritersConverge) }

func testConcurrentWritersConverge(t *testing.T, newStore func(*mongo.Client) *history.Store) {
	db := chattest.StartMongo(t)
	mc := db.Connect(t)
	a, b := newStore(mc), newStore(db.Connect(t))
	coll := mc.Database(history.Database).Collection(history.Collection)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 12))
	for round := range 2 {
		scs := newScenarios(rng, fmt.Sprintf("c%d", round), 12)
		evs := events(scs)
		var wg sync.WaitGroup
		for i, store := range []*history.Store{a, b} {
			r := rand.New(rand.NewPCG(uint64(seed), uint64(100*round+i)))
			wg.Go(func() { writeShuffled(t, store, r, evs, nil) })
		}
		wg.Wait()
		checkScenarios(t, a, coll, scs)
		if t.Failed() {
			t.Fatalf("round %d failed (seed %d)", round, seed)
		}
	}
}

// bothPaths runs test with stores that write the FerretDB way (what history.New picks
// here) and with stores that write the MongoDB way (guarded updates), so that the path
// production takes is tested too.
func bothPaths(t *testing.T, test func(t *testing.T, newStore func(*mongo.Client) *history.Store)) {
	t.Run("by_id", func(t *testing.T) { test(t, history.New) })
	t.Run("guarded", func(t *testing.T) {
		test(t, func(c *mongo.Client) *history.Store { return history.New(c).WithGuardedUpdates() })
	})
}
