package change

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// env is a Changer on embedded NATS and FerretDB.
type env struct {
	t      *testing.T
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	store  *history.Store
	c      *Changer
}

func newEnv(t *testing.T, o Options) *env {
	t.Helper()
	n := chattest.StartNATS(t)
	nc, js := n.Connect(t)
	s := n.EnsureStreams(t, js)
	store := history.New(chattest.StartMongo(t).Connect(t))
	c, err := New(t.Context(), nc, store, o)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, nc: nc, js: js, stream: s, store: store, c: c}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// post publishes a message to room (as the api does) and, if persist, stores it in
// history (as the persister does).
func (e *env) post(room, id string, persist bool) chat.Message {
	e.t.Helper()
	m, err := chat.NewMessage(chat.Post{Room: room, Name: "ann", Message: "hello", ID: id}, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	ack, err := e.js.PublishMsg(ctx(e.t), m.NATSMsg("sha256:ann"))
	if err != nil {
		e.t.Fatal(err)
	}
	m.Seq, m.Author = ack.Sequence, "sha256:ann"
	if persist {
		e.persist(m)
	}
	return m
}

func (e *env) persist(m chat.Message) {
	e.t.Helper()
	if err := e.store.InsertMany(ctx(e.t), []chat.Message{m}); err != nil {
		e.t.Fatal(err)
	}
}

// publishChange publishes change ch as another service would (no expectation).
func (e *env) publishChange(ch chat.Message) uint64 {
	e.t.Helper()
	ack, err := e.js.PublishMsg(ctx(e.t), ch.ChangeMsg(""))
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

func react(emoji, person string) Decide {
	return func(cur *Current) (chat.Message, error) {
		if cur.State.Reactions.Has(emoji, person) {
			return chat.Message{}, nil
		}
		return chat.Message{Event: chat.EventReactions, Reactions: cur.State.Reactions.With(emoji, person)}, nil
	}
}

func edit(text string) Decide {
	return func(*Current) (chat.Message, error) {
		return chat.Message{Event: chat.EventEdited, Message: text, EditedAt: chat.NormalizeTime(time.Now())}, nil
	}
}

// TestExpectLastSubjectSequenceZero: the embedded nats-server takes an expected last
// subject sequence of 0 as "the subject has no message yet", which the first change of a
// message relies on.
func TestExpectLastSubjectSequenceZero(t *testing.T) {
	e := newEnv(t, Options{})
	subject := chat.ChangeSubject("general", "m1")
	pub := func(expect uint64) (*jetstream.PubAck, error) {
		return e.js.PublishMsg(ctx(t), &nats.Msg{Subject: subject, Data: []byte(`{"type":"deleted"}`)},
			jetstream.WithExpectLastSequencePerSubject(expect))
	}
	// A message on another subject does not count.
	if _, err := e.js.Publish(ctx(t), chat.Subject("general"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	ack, err := pub(0)
	if err != nil {
		t.Fatalf("expect 0 on an empty subject: %v", err)
	}
	if _, err := pub(0); !wrongLastSequence(err) {
		t.Fatalf("expect 0 on a subject with a message: %v, want wrong last sequence", err)
	}
	if _, err := pub(ack.Sequence - 1); !wrongLastSequence(err) {
		t.Fatalf("expect a stale seq: %v, want wrong last sequence", err)
	}
	if _, err := pub(ack.Sequence); err != nil {
		t.Fatalf("expect the last seq: %v", err)
	}
}

// TestConcurrentReactions: many writers reacting to one message at once all succeed and
// the last change holds every reaction: the expected-sequence publish lost none.
func TestConcurrentReactions(t *testing.T) {
	e := newEnv(t, Options{Attempts: 200})
	m := e.post("general", "", true)
	const writers, each = 12, 5
	var wg sync.WaitGroup
	var mu sync.Mutex
	var final Result
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r, err := e.c.Change(ctx(t), "general", m.ID, "", react([]string{"👍", "🎉"}[i%2], fmt.Sprintf("p%d-%d", w, i)))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if r.Seq > final.Seq {
					final = r
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	want := writers * each
	if got := final.State.Reactions.Total(); got != want {
		t.Fatalf("the last change holds %d reactions, want %d", got, want)
	}
	// Read back from the stream alone (history has none of it).
	var st chat.State
	last, err := e.c.fold(ctx(t), chat.ChangeSubject("general", m.ID), m.ID, &st, 0)
	if err != nil || last != final.Seq || st.Reactions.Total() != want ||
		st.Reactions.Count("👍") != writers*3 || st.Reactions.Count("🎉") != writers*2 {
		t.Fatalf("stream state %v (last %d, %v), want %d reactions at seq %d", st.Reactions, last, err, want, final.Seq)
	}
	// A reaction already there publishes nothing.
	r, err := e.c.Change(ctx(t), "general", m.ID, "", react("👍", "p0-0"))
	if err != nil || r.Seq != 0 || r.State.ReactionsSeq != final.Seq {
		t.Fatalf("repeated reaction: seq %d state seq %d err %v", r.Seq, r.State.ReactionsSeq, err)
	}
}

// TestFoldsWhatHistoryLacks: changes published by others after the persister's ack floor
// count, invalid ones do not; those at or below it are history's (not read again).
func TestFoldsWhatHistoryLacks(t *testing.T) {
	e := newEnv(t, Options{})
	m := e.post("lobby", "msg.with.dots", true)
	// Another service edits and reacts; an invalid change is on the subject too.
	e.publishChange(chat.Message{Event: chat.EventEdited, ID: m.ID, Room: "lobby", Message: "first edit", EditedAt: chat.NormalizeTime(time.Now())})
	reacted := e.publishChange(chat.Message{Event: chat.EventReactions, ID: m.ID, Room: "lobby", Reactions: chat.Reactions{"👍": {"bob"}}})
	if _, err := e.js.Publish(ctx(t), chat.ChangeSubject("lobby", m.ID), []byte(`{"type":"edited"}`)); err != nil {
		t.Fatal(err)
	}
	r, err := e.c.Change(ctx(t), "lobby", m.ID, "", react("🎉", "ann"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Message.Message != "first edit" || r.Message.EditedAt.IsZero() || r.State.Reactions.Total() != 2 || r.Seq <= reacted {
		t.Fatalf("after folding: %+v", r)
	}

	// A persister consumer whose ack floor covers the first edit: the changer trusts
	// history for it. (History here never got it, so it must not show: this proves the
	// floor bounds the fold.)
	m2 := e.post("lobby", "", true)
	editSeq := e.publishChange(chat.Message{Event: chat.EventEdited, ID: m2.ID, Room: "lobby", Message: "persisted edit", EditedAt: chat.NormalizeTime(time.Now())})
	cons, err := e.js.CreateOrUpdateConsumer(ctx(t), chat.StreamName, jetstream.ConsumerConfig{Durable: chat.PersisterConsumer, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(int(editSeq))
	if err != nil {
		t.Fatal(err)
	}
	for msg := range batch.Messages() {
		if err := msg.DoubleAck(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	laterSeq := e.publishChange(chat.Message{Event: chat.EventReactions, ID: m2.ID, Room: "lobby", Reactions: chat.Reactions{"😮": {"eve"}}})
	e.c.floorMu.Lock()
	e.c.floorAt = time.Time{} // the floor read by the first change (0, no consumer) is reused for floorMaxAge
	e.c.floorMu.Unlock()
	r, err = e.c.Change(ctx(t), "lobby", m2.ID, "", react("👍", "ann"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Message.Message != "hello" || !r.Message.EditedAt.IsZero() {
		t.Fatalf("an event at or below the ack floor was read from the stream: %+v", r.Message)
	}
	if r.State.Reactions.Count("😮") != 1 || r.State.Reactions.Count("👍") != 1 || r.Seq <= laterSeq {
		t.Fatalf("the event after the ack floor was not folded: %+v", r.State)
	}
}

// TestDeletionIsFinal: after a deletion (by anyone, any seq order) the state is a
// tombstone and later changes are ignored by the fold.
func TestDeletionIsFinal(t *testing.T) {
	e := newEnv(t, Options{})
	m := e.post("general", "", true)
	e.publishChange(chat.Message{Event: chat.EventDeleted, ID: m.ID, Room: "general"})
	e.publishChange(chat.Message{Event: chat.EventEdited, ID: m.ID, Room: "general", Message: "zombie", EditedAt: time.Now()})
	r, err := e.c.Change(ctx(t), "general", m.ID, "", func(cur *Current) (chat.Message, error) {
		if !cur.State.Deleted || !cur.Message.Deleted || cur.Message.Message != "" || cur.Message.Name != "" {
			t.Errorf("state %+v message %+v, want a tombstone", cur.State, cur.Message)
		}
		return chat.Message{}, nil
	})
	if err != nil || r.Seq != 0 {
		t.Fatalf("%+v %v", r, err)
	}
}

// TestContention: a writer that keeps losing gives up with ErrContention after Attempts;
// with one more attempt it folds the winner's change and succeeds.
func TestContention(t *testing.T) {
	for _, attempts := range []int{1, 2} {
		e := newEnv(t, Options{Attempts: attempts})
		m := e.post("general", "", true)
		calls := 0
		r, err := e.c.Change(ctx(t), "general", m.ID, "", func(cur *Current) (chat.Message, error) {
			calls++
			if calls == 1 { // someone else comes first
				e.publishChange(chat.Message{Event: chat.EventReactions, ID: m.ID, Room: "general", Reactions: chat.Reactions{"👍": {"bob"}}})
			}
			return react("🎉", "ann")(cur)
		})
		switch attempts {
		case 1:
			if !errors.Is(err, ErrContention) {
				t.Fatalf("1 attempt: %v, want ErrContention", err)
			}
		case 2:
			if err != nil || r.State.Reactions.Total() != 2 || calls != 2 {
				t.Fatalf("2 attempts: %+v %v (decided %d times)", r.State, err, calls)
			}
		}
	}
}

func TestTooLarge(t *testing.T) {
	e := newEnv(t, Options{})
	m := e.post("general", "", true)
	people := make([]string, 1000)
	for i := range people {
		people[i] = strings.Repeat("x", 250) + fmt.Sprint(i)
	}
	_, err := e.c.Change(ctx(t), "general", m.ID, "", func(*Current) (chat.Message, error) {
		return chat.Message{Event: chat.EventReactions, Reactions: chat.Reactions{"👍": people}}, nil
	})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("%v, want ErrTooLarge", err)
	}
}

// TestUnavailable: NATS down is ErrUnavailable, MongoDB down ErrHistoryUnavailable.
func TestUnavailable(t *testing.T) {
	n := chattest.StartNATS(t)
	nc, js := n.Connect(t)
	n.EnsureStreams(t, js)
	mongo := chattest.StartMongo(t)
	store := history.New(mongo.Connect(t))
	c, err := New(t.Context(), nc, store, Options{HistoryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	mongo.Stop()
	if _, err := c.Change(ctx(t), "general", "x", "", edit("x")); !errors.Is(err, ErrHistoryUnavailable) {
		t.Fatalf("MongoDB down: %v", err)
	}
	n.Stop()
	chattest.Eventually(t, 10*time.Second, func() bool { return !nc.IsConnected() }, "still connected")
	if _, err := c.Change(ctx(t), "general", "x", "", edit("x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("NATS down: %v", err)
	}
}

// persister creates the persister's durable consumer (as the persister does).
func (e *env) persister() jetstream.Consumer {
	e.t.Helper()
	cons, err := e.js.CreateOrUpdateConsumer(ctx(e.t), chat.StreamName, jetstream.ConsumerConfig{
		Durable: chat.PersisterConsumer, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		e.t.Fatal(err)
	}
	return cons
}

// ackAll acks everything cons has pending (as the persister does once it stored it).
func (e *env) ackAll(cons jetstream.Consumer) {
	e.t.Helper()
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			e.t.Fatal(err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			if err := msg.DoubleAck(ctx(e.t)); err != nil {
				e.t.Fatal(err)
			}
		}
		if n == 0 {
			return
		}
	}
}

// TestMissingMessagesWaitForThePersister: a message history lacks is looked for until the
// persister has stored all the stream held when it was asked for: found then (stored
// meanwhile), or ErrNotFound; ErrHistoryBehind if the persister does not get there
// within Wait. Without a persister consumer, ErrNotFound at once.
func TestMissingMessagesWaitForThePersister(t *testing.T) {
	e := newEnv(t, Options{Wait: time.Second})
	if _, err := e.c.Change(ctx(t), "general", "nope", "", edit("x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no persister: %v, want ErrNotFound", err)
	}
	cons := e.persister()

	// Acknowledged, stored 300ms later: found.
	m := e.post("general", "", false)
	go func() {
		time.Sleep(300 * time.Millisecond) // the persister's lag
		e.persist(m)
		e.ackAll(cons)
	}()
	start := time.Now()
	r, err := e.c.Change(ctx(t), "general", m.ID, "", edit("late"))
	if err != nil || r.Message.Message != "late" || r.Seq == 0 {
		t.Fatalf("message stored late: %+v %v", r, err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("answered after %v, before the message was stored", d)
	}
	e.ackAll(cons) // the edit

	// The persister is caught up: unknown ids (of any shape, also in another room) are
	// not found, at once.
	for _, tc := range []struct{ room, id string }{{"general", "not-a-ulid"}, {"general", chat.NewID(time.Now())}, {"other", m.ID}} {
		start = time.Now()
		if _, err := e.c.Change(ctx(t), tc.room, tc.id, "", edit("x")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s in %s: %v, want ErrNotFound", tc.id, tc.room, err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("%s: not found only after %v", tc.id, d)
		}
	}

	// The persister is behind and stays so: the message may be one it has not stored.
	m2 := e.post("general", "", false)
	for _, id := range []string{m2.ID, "not-a-ulid"} {
		start = time.Now()
		if _, err := e.c.Change(ctx(t), "general", id, "", edit("x")); !errors.Is(err, ErrHistoryBehind) {
			t.Fatalf("%s while the persister is behind: %v, want ErrHistoryBehind", id, err)
		}
		if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
			t.Fatalf("%s: behind after %v, want about Wait (1s)", id, d)
		}
	}
}
