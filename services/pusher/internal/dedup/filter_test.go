package dedup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/oklog/ulid/v2"
)

// recorder is the hub as the filter sees it.
type recorder struct {
	mu   sync.Mutex
	got  []string // room:seq of each Fanout
	head uint64   // the last Advance (or Fanout)
}

func (r *recorder) Fanout(m *chat.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, fmt.Sprintf("%s:%d", m.Room, m.Seq))
	r.head = m.Seq
}
func (r *recorder) Advance(seq uint64) { r.mu.Lock(); r.head = seq; r.mu.Unlock() }
func (r *recorder) NewEpoch(time.Time) {}
func (r *recorder) state() ([]string, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got), r.head
}

// store is MongoDB as the filter sees it: stored seqs, an optional gate that holds
// answers back, an optional error.
type store struct {
	mu    sync.Mutex
	seqs  map[string]uint64
	gate  chan struct{}
	err   error
	asked [][]string
}

func (s *store) Seqs(ctx context.Context, ids []string) (map[string]uint64, error) {
	s.mu.Lock()
	s.asked = append(s.asked, slices.Clone(ids))
	gate, err := s.gate, s.err
	s.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, id := range ids {
		if seq, ok := s.seqs[id]; ok {
			out[id] = seq
		}
	}
	return out, nil
}

func (s *store) calls() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.asked) }

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// newTest returns a filter whose clock reads *now and whose index covers from t0.
func newTest(t *testing.T, st Store, budget int, now *time.Time) (*Filter, *recorder) {
	t.Helper()
	rec := &recorder{}
	f := New(Config{IndexBytes: budget, Skew: time.Second, Cooldown: time.Minute}, rec, st, nil,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.now = func() time.Time { return *now }
	f.created, f.idx.horizon = t0, t0
	if st != nil {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = f.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	return f, rec
}

func ulidAt(t time.Time, n byte) string {
	return ulid.MustNew(ulid.Timestamp(t), bytesReader(n)).String()
}

type bytesReader byte

func (b bytesReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

func msg(room, id string, seq uint64) *chat.Message {
	return &chat.Message{ID: id, Room: room, Name: "n", Message: "x", Seq: seq}
}

func waitFor(t *testing.T, rec *recorder, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := rec.state()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %v, want %d deliveries", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Later copies are dropped by the index, whatever their room; derived ids pass, unless
// an earlier message spelled that id out.
func TestIndexDropsLaterCopies(t *testing.T) {
	now := t0.Add(time.Minute)
	f, rec := newTest(t, nil, 1<<20, &now)
	u := ulidAt(now, 1)
	for _, m := range []*chat.Message{
		msg("r", "ext-1", 1), msg("r", "ext-1", 2), msg("s", "ext-1", 3),
		msg("r", u, 4), msg("r", u, 5),
		msg("r", "js.abc.6", 6), // derived
		msg("r", "js.abc.8", 7), // spelled out: an explicit id...
		msg("r", "js.abc.8", 8), // ...that the message derived at 8 repeats
	} {
		f.Fanout(m)
	}
	got, head := rec.state()
	if want := []string{"r:1", "r:4", "r:6", "r:7"}; !slices.Equal(got, want) || head != 8 {
		t.Fatalf("delivered %v head %d, want %v head 8", got, head, want)
	}
}

// An id the index cannot decide waits for the store while later messages of its room
// wait behind it; other rooms flow on. A stored lower copy drops it.
func TestStoreCheckHoldsOnlyItsRoom(t *testing.T) {
	now := t0.Add(time.Minute)
	st := &store{seqs: map[string]uint64{"ext-old": 1}, gate: make(chan struct{})}
	f, rec := newTest(t, st, 1<<20, &now)
	f.Fanout(msg("a", "ext-old", 10)) // stored at 1: a later copy
	f.Fanout(msg("a", ulidAt(now, 1), 11))
	f.Fanout(msg("a", "ext-new", 12)) // not stored: the first copy
	f.Fanout(msg("b", ulidAt(now, 2), 13))
	if got, head := rec.state(); !slices.Equal(got, []string{"b:13"}) || head != 13 {
		t.Fatalf("while the store is asked: %v head %d, want only b:13", got, head)
	}
	close(st.gate)
	got := waitFor(t, rec, 3)
	if want := []string{"b:13", "a:11", "a:12"}; !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	if _, head := rec.state(); head != 13 {
		t.Fatalf("head %d after the release, want 13", head)
	}
}

// A ULID is decided by the index alone only inside its coverage: made after the
// horizon + skew and not ahead of the clock by more than the skew.
func TestULIDOutsideCoverageAsksStore(t *testing.T) {
	now := t0.Add(time.Minute)
	old, ahead := ulidAt(t0.Add(500*time.Millisecond), 1), ulidAt(now.Add(2*time.Second), 2)
	st := &store{seqs: map[string]uint64{old: 1, ahead: 2}}
	f, rec := newTest(t, st, 1<<20, &now)
	f.Fanout(msg("r", ulidAt(now, 3), 10)) // inside: no store
	if got, _ := rec.state(); len(got) != 1 || st.calls() != 0 {
		t.Fatalf("a ULID inside the coverage: delivered %v, %d store calls", got, st.calls())
	}
	f.Fanout(msg("r", old, 11))   // made before horizon+skew: its first copy may be forgotten
	f.Fanout(msg("r", ahead, 12)) // made in the future: its time proves nothing
	f.Fanout(msg("r", "end", 13))
	got := waitFor(t, rec, 2)
	if want := []string{"r:10", "r:13"}; !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v (11 and 12 are stored at lower seqs)", got, want)
	}
}

// When the index evicts, its horizon moves to the newest evicted id: a ULID made before
// it asks the store.
func TestEvictionMovesHorizon(t *testing.T) {
	now := t0.Add(time.Minute)
	st := &store{seqs: map[string]uint64{}}
	f, rec := newTest(t, st, 3*(26+entryOverhead), &now)
	var ids []string
	for i := range 5 {
		now = now.Add(10 * time.Second)
		ids = append(ids, ulidAt(now, byte(i)))
		f.Fanout(msg("r", ids[i], uint64(i+1)))
	}
	f.mu.Lock()
	horizon, n := f.idx.horizon, f.idx.n
	f.mu.Unlock()
	if n != 3 || !horizon.Equal(t0.Add(time.Minute+20*time.Second)) {
		t.Fatalf("index holds %d, horizon %v", n, horizon)
	}
	if st.calls() != 0 {
		t.Fatal("the store was asked while the index covered everything")
	}
	// The second id again: evicted, made before the horizon: the store decides.
	st.mu.Lock()
	st.seqs[ids[1]] = 2
	st.mu.Unlock()
	f.Fanout(msg("r", ids[1], 6))
	f.Fanout(msg("r", "end", 7))
	got := waitFor(t, rec, 6)
	// One call, or two when the check of 6 went out before 7 (not a ULID: asked too)
	// arrived: either way the store decided.
	if got[5] != "r:7" || st.calls() < 1 || st.calls() > 2 {
		t.Fatalf("delivered %v with %d store calls, want the copy at 6 dropped by the store", got, st.calls())
	}
}

// A store that fails does not stall the room: its messages are delivered, and the store
// is not asked again during the cooldown.
func TestStoreErrorDeliversAndCoolsDown(t *testing.T) {
	now := t0.Add(time.Minute)
	st := &store{err: errors.New("down")}
	f, rec := newTest(t, st, 1<<20, &now)
	f.Fanout(msg("r", "ext-1", 1))
	waitFor(t, rec, 1)
	f.Fanout(msg("r", "ext-2", 2))
	waitFor(t, rec, 2)
	if st.calls() != 1 {
		t.Fatalf("store asked %d times during the cooldown", st.calls())
	}
	now = now.Add(2 * time.Minute)
	f.Fanout(msg("r", "ext-3", 3))
	waitFor(t, rec, 3)
	if st.calls() != 2 {
		t.Fatalf("store asked %d times after the cooldown, want 2", st.calls())
	}
}

// A JetStream replay batch keeps one copy per id: the lowest seq, also across the
// index, the batch and the store.
func TestReplayKeepsLowestCopies(t *testing.T) {
	now := t0.Add(time.Minute)
	st := &store{seqs: map[string]uint64{"stored": 1, "here": 5}}
	f, _ := newTest(t, st, 1<<20, &now)
	f.Fanout(msg("r", "live", 3))
	batch := []chat.Message{*msg("r", "stored", 4), *msg("r", "here", 5), *msg("r", "live", 6),
		*msg("r", "here", 7), *msg("r", "js.e.8", 8), *msg("r", "new", 9)}
	var got []uint64
	for _, m := range f.Replay(context.Background(), batch) {
		got = append(got, m.Seq)
	}
	if fmt.Sprint(got) != "[5 8 9]" {
		t.Fatalf("replay kept %v, want [5 8 9]", got)
	}
}

// A ULID made with a clock a minute ahead: its first copy asks the store (its time proves
// nothing yet). Its second copy comes a minute later, when that time is inside the
// coverage and the index has forgotten the first copy: it must not be trusted to be new.
func TestEarlyULIDIsRemembered(t *testing.T) {
	now := t0.Add(time.Minute)
	st := &store{seqs: map[string]uint64{}}
	f, rec := newTest(t, st, 3*(26+entryOverhead), &now)
	early := ulidAt(now.Add(time.Minute), 9)
	f.Fanout(msg("r", early, 1))
	waitFor(t, rec, 1)
	for i := range 5 { // the index forgets the first copy
		now = now.Add(time.Second)
		f.Fanout(msg("r", ulidAt(now, byte(i)), uint64(2+i)))
	}
	now = now.Add(time.Minute)
	st.mu.Lock()
	st.seqs[early] = 1
	st.mu.Unlock()
	f.Fanout(msg("r", early, 10))
	f.Fanout(msg("r", ulidAt(now, 7), 11))
	got := waitFor(t, rec, 7)
	if len(got) != 7 || got[6] != "r:11" {
		t.Fatalf("delivered %v: the second copy of the early ULID (seq 10) was pushed", got)
	}
}

// A flood of ids made far ahead fills the early set; the ids made latest are forgotten
// and ULIDs made within the span of their times ask the store until the horizon passes
// all of them.
func TestEarlyOverflowDistrusts(t *testing.T) {
	e := early{max: 2}
	covered := t0
	at := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	e.put("a", 1, at(1), covered)
	e.put("b", 2, at(3), covered)
	e.put("c", 3, at(2), covered) // full: forgets b, the latest
	e.put("d", 4, at(5), covered) // full: forgets d itself
	if _, ok := e.get("b"); ok || len(e.ids) != 2 {
		t.Fatalf("early holds %v", e.ids)
	}
	for h, want := range map[int]bool{1: true, 3: false, 4: false, 5: false, 6: true} {
		if got := e.trusts(at(h), covered); got != want {
			t.Errorf("a ULID made at +%dh trusted = %v, want %v", h, got, want)
		}
	}
	if e.trusts(at(5), at(4)) {
		t.Fatal("the horizon passed b's time but not d's: d's must still ask the store")
	}
	if !e.trusts(at(7), at(5).Add(time.Second)) || !e.lo.IsZero() {
		t.Fatal("once the horizon passed every forgotten time, the distrust ends")
	}
}

func change(room, id string, seq uint64, ev chat.Event) *chat.Message {
	return &chat.Message{ID: id, Room: room, Seq: seq, Event: ev}
}

// Changes carry their message's id at their own seq: they pass whatever the index holds
// for that id, are not indexed themselves (a message after a change to its id is not
// taken for a later copy) and never ask the store.
func TestChangesPassAndAreNotIndexed(t *testing.T) {
	now := t0.Add(time.Minute)
	st := &store{seqs: map[string]uint64{}}
	f, rec := newTest(t, st, 1<<20, &now)
	u := ulidAt(now, 1)
	f.Fanout(msg("r", u, 1))
	f.Fanout(change("r", u, 2, chat.EventEdited))
	f.Fanout(change("r", u, 3, chat.EventReactions))
	f.Fanout(msg("r", u, 4)) // a later copy of the message: dropped
	f.Fanout(change("r", u, 5, chat.EventDeleted))
	f.Fanout(change("r", "ext-unknown", 6, chat.EventEdited)) // an id only MongoDB could tell
	f.Fanout(change("r", "js.abc.7", 7, chat.EventReactions))
	got, head := rec.state()
	if want := []string{"r:1", "r:2", "r:3", "r:5", "r:6", "r:7"}; !slices.Equal(got, want) || head != 7 {
		t.Fatalf("delivered %v head %d, want %v", got, head, want)
	}
	if st.calls() != 0 {
		t.Fatalf("%d store calls: changes must not ask the store", st.calls())
	}
	// The id of the change at 7 spelled out by a message (not derived for seq 8): had the
	// change been indexed, this would be dropped as a later copy; the store says it is new.
	f.Fanout(msg("r", "js.abc.7", 8))
	got = waitFor(t, rec, 7)
	if got[6] != "r:8" {
		t.Fatalf("delivered %v: the message after a change to its id was taken for a copy", got)
	}
	f.mu.Lock()
	_, indexed := f.idx.get("ext-unknown")
	seq, _ := f.idx.get(u)
	f.mu.Unlock()
	if indexed || seq != 1 {
		t.Fatalf("index: ext-unknown indexed %v, %s at %d (want 1)", indexed, u, seq)
	}
}

// A change queues behind a message of its room that waits for the store (whatever id
// it changes), so the room stays in seq order; other rooms' changes flow on.
func TestChangeWaitsBehindHeldMessage(t *testing.T) {
	now := t0.Add(time.Minute)
	st := &store{seqs: map[string]uint64{"ext-old": 1}, gate: make(chan struct{})}
	f, rec := newTest(t, st, 1<<20, &now)
	f.Fanout(msg("a", "ext-new", 10))                       // held: asks the store
	f.Fanout(change("a", "ext-new", 11, chat.EventEdited))  // its own edit
	f.Fanout(change("b", "ext-new", 12, chat.EventDeleted)) // another room's change
	f.Fanout(msg("a", "ext-old", 13))                       // a later copy (stored at 1)
	f.Fanout(change("a", "ext-old", 14, chat.EventReactions))
	if got, head := rec.state(); !slices.Equal(got, []string{"b:12"}) || head != 12 {
		t.Fatalf("while the store is asked: %v head %d, want only b:12", got, head)
	}
	close(st.gate)
	if got, want := waitFor(t, rec, 4), []string{"b:12", "a:10", "a:11", "a:14"}; !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	if _, head := rec.state(); head != 14 {
		t.Fatalf("head %d, want 14", head)
	}
}

// A JetStream replay batch keeps every change, also those whose message id is indexed,
// earlier in the batch or stored, and does not ask the store about them.
func TestReplayKeepsChanges(t *testing.T) {
	now := t0.Add(time.Minute)
	st := &store{seqs: map[string]uint64{"stored": 1}}
	f, rec := newTest(t, st, 1<<20, &now)
	f.Fanout(msg("r", "live", 3))
	waitFor(t, rec, 1) // asked the store
	batch := []chat.Message{*change("r", "stored", 4, chat.EventEdited), *change("r", "live", 5, chat.EventReactions),
		*msg("r", "new", 6), *change("r", "new", 7, chat.EventDeleted), *msg("r", "new", 8),
		*change("r", "only-changed", 9, chat.EventEdited)}
	var got []uint64
	for _, m := range f.Replay(context.Background(), batch) {
		got = append(got, m.Seq)
	}
	if fmt.Sprint(got) != "[4 5 6 7 9]" {
		t.Fatalf("replay kept %v, want [4 5 6 7 9]", got)
	}
	st.mu.Lock()
	asked := st.asked[1:]
	st.mu.Unlock()
	if len(asked) != 1 || !slices.Equal(asked[0], []string{"new"}) {
		t.Fatalf("store asked %v, want only the message new", asked)
	}
}
