package persist

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publishAll publishes msgs asynchronously (so that they arrive in batches) and returns
// their stream seqs.
func (e *env) publishAll(t *testing.T, msgs []*nats.Msg) []uint64 {
	t.Helper()
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		f, err := e.js.PublishMsgAsync(m)
		if err != nil {
			t.Fatal(err)
		}
		futures[i] = f
	}
	seqs := make([]uint64, len(msgs))
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			seqs[i] = ack.Sequence
		case err := <-f.Err():
			t.Fatalf("publish: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("publish ack timeout")
		}
	}
	return seqs
}

// changed is a message with the changes published to it.
type changed struct {
	msg     chat.Message
	changes []chat.Message
}

// want is the message as history must show it, and its state.
func (c *changed) want() (chat.Message, chat.State) {
	var st chat.State
	for i := range c.changes {
		st.Apply(&c.changes[i])
	}
	return c.msg.WithState(&st), st
}

// TestChangesStoredByTwoReplicas publishes messages and their edits, reactions and
// deletions (some changes before their message) to the stream while two persister
// replicas run: each message ends in history as chat.State.Apply says, with its author.
func TestChangesStoredByTwoReplicas(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.BatchSize = 7 // many batches, so a message and its changes are often apart
	a, b := e.start(t, cfg, nil), e.start(t, cfg, nil)

	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	at := chat.NormalizeTime(time.Now())
	var all []*changed
	for i := range 30 {
		room := []string{"general", "r2"}[i%2]
		m, err := chat.NewMessage(chat.Post{Room: room, Name: fmt.Sprint("name ", i), Message: fmt.Sprint("text ", i)}, at)
		if err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 {
			m.ID = fmt.Sprintf("svc.%d", i) // a '.' in the id: its change subject says '~'
		}
		m.Author = fmt.Sprint("sub-", i%4)
		all = append(all, &changed{msg: m})
	}
	// Events in a random order: each message once, and 0-6 changes to it (published
	// before or after it).
	type event struct {
		c      *changed
		change *chat.Message // nil: the message itself
	}
	var evs []event
	for _, c := range all {
		evs = append(evs, event{c: c})
		for range rng.IntN(7) {
			ch := chat.Message{ID: c.msg.ID, Room: c.msg.Room}
			switch k := rng.IntN(10); {
			case k < 4:
				ch.Event, ch.Message, ch.EditedAt = chat.EventEdited, fmt.Sprint("edited ", rng.IntN(1000)), at.Add(time.Duration(rng.IntN(1000))*time.Millisecond)
			case k < 9:
				ch.Event, ch.Reactions = chat.EventReactions, chat.Reactions{}
				for _, emoji := range []string{"👍", "❤️", "a.b"} {
					for _, p := range []string{"ann", "bob"} {
						if rng.IntN(2) == 0 {
							ch.Reactions = ch.Reactions.With(emoji, p)
						}
					}
				}
			default:
				ch.Event = chat.EventDeleted
			}
			evs = append(evs, event{c: c, change: &ch})
		}
	}
	rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	msgs := make([]*nats.Msg, len(evs))
	for i, ev := range evs {
		if ev.change == nil {
			msgs[i] = ev.c.msg.NATSMsg(ev.c.msg.Author)
		} else {
			msgs[i] = ev.change.ChangeMsg("sub-editor")
		}
	}
	seqs := e.publishAll(t, msgs)
	nChanges := 0
	for i, ev := range evs {
		if ev.change == nil {
			ev.c.msg.Seq = seqs[i]
		} else {
			ev.change.Seq = seqs[i]
			ev.c.changes = append(ev.c.changes, *ev.change)
			nChanges++
		}
	}

	chattest.Eventually(t, 30*time.Second, func() bool {
		return e.settled(t) && counter(a.p.met.stored)+counter(b.p.met.stored) >= len(all) &&
			counter(a.p.met.changes)+counter(b.p.met.changes) >= nChanges
	}, "all %d messages and %d changes stored", len(all), nChanges)
	ctx := context.Background()
	for _, c := range all {
		want, wantState := c.want()
		got, st, err := e.store.Get(ctx, c.msg.Room, c.msg.ID)
		if err != nil {
			t.Fatalf("Get %s: %v", c.msg.ID, err)
		}
		if !got.Equal(want) || st.Deleted != wantState.Deleted || st.ContentSeq != wantState.ContentSeq ||
			st.ReactionsSeq != wantState.ReactionsSeq {
			t.Errorf("%s:\n got  %s %+v\n want %s %+v", c.msg.ID, got.AppendJSON(nil, ""), st, want.AppendJSON(nil, ""), wantState)
		}
		if got.Author != c.msg.Author {
			t.Errorf("%s: author %q, want %q", c.msg.ID, got.Author, c.msg.Author)
		}
	}
	if n := e.count(t); n != len(all) {
		t.Errorf("%d documents, want %d (one per message)", n, len(all))
	}
	if n := counter(a.p.met.deadLettered) + counter(b.p.met.deadLettered); n != 0 {
		t.Errorf("%d dead letters", n)
	}
	t.Logf("%d messages, %d changes; replica A stored %d+%d, B %d+%d", len(all), nChanges,
		counter(a.p.met.stored), counter(a.p.met.changes), counter(b.p.met.stored), counter(b.p.met.changes))
}

// TestInvalidChangesDeadLettered: invalid changes are dead-lettered like invalid
// messages, and neither stall nor hold up the events behind them.
func TestInvalidChangesDeadLettered(t *testing.T) {
	e := newEnv(t)
	in := e.start(t, testConfig(), nil)
	target := e.apiMessage(t, "general", "ann", "to be changed")
	subj := chat.ChangeSubject("general", target.ID)
	poison := []struct {
		subject, data, reason string
	}{
		{subj, `{"type":"edited","message":`, "bad JSON"},
		{subj, `{"id":"` + target.ID + `","room":"general"}`, "type: missing"},
		{subj, `{"type":"pinned"}`, "is not edited, deleted or reactions"},
		{subj, `{"type":"edited"}`, "message: missing"},
		{subj, `{"type":"edited","message":"   "}`, "message"},
		{subj, `{"type":"deleted","id":"other-id"}`, "does not match the subject's message id"},
		{subj, `{"type":"deleted","room":"r2"}`, "does not match subject room"},
		{subj, `{"type":"reactions"}`, "reactions: missing"},
		{subj, `{"type":"reactions","reactions":{"a b":["ann"]}}`, "emoji"},
		{subj, `{"type":"reactions","reactions":{"👍":["ann","ann"]}}`, "twice"},
		{subj, `["not an object"]`, "not a JSON object"},
		{"chat.messages.general.bad+id", `{"type":"deleted"}`, "not a message id"},
	}
	var msgs []*nats.Msg
	var valid []chat.Message
	for i, p := range poison {
		m := nats.NewMsg(p.subject)
		m.Data = []byte(p.data)
		msgs = append(msgs, m)
		v, err := chat.NewMessage(chat.Post{Room: "general", Name: "v", Message: fmt.Sprint("valid after poison ", i)}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		valid = append(valid, v)
		msgs = append(msgs, v.NATSMsg(""))
	}
	edit := chat.Message{ID: target.ID, Room: "general", Event: chat.EventEdited, Message: "changed after all the poison",
		EditedAt: chat.NormalizeTime(time.Now())}
	msgs = append(msgs, edit.ChangeMsg(""))
	seqs := e.publishAll(t, msgs)

	docs := e.waitStored(t, 1+len(valid), 15*time.Second)
	for i, v := range valid {
		if docs[i+1].ID != v.ID || docs[i+1].Seq != seqs[2*i+1] {
			t.Errorf("doc %d = %s seq %d, want %s seq %d", i+1, docs[i+1].ID, docs[i+1].Seq, v.ID, seqs[2*i+1])
		}
	}
	got, st, err := e.store.Get(context.Background(), "general", target.ID)
	if err != nil || got.Message != edit.Message || st.ContentSeq != seqs[len(seqs)-1] {
		t.Fatalf("target = %s %+v, %v; want the valid edit applied", got.AppendJSON(nil, ""), st, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dl, err := e.js.Stream(ctx, chat.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range poison {
		m, err := dl.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatalf("dead letter %d: %v", i, err)
		}
		if string(m.Data) != p.data || m.Header.Get(chat.HeaderOriginalSubject) != p.subject {
			t.Errorf("dead letter %d = %q on %q, want %q on %q", i, m.Data, m.Header.Get(chat.HeaderOriginalSubject), p.data, p.subject)
		}
		if r := m.Header.Get(chat.HeaderDeadLetterReason); !strings.Contains(r, p.reason) {
			t.Errorf("dead letter %d reason %q, want it to mention %q", i, r, p.reason)
		}
	}
	if _, err := dl.GetMsg(ctx, uint64(len(poison)+1)); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("more dead letters than poison messages: %v", err)
	}
	if got := counter(in.p.met.deadLettered); got != len(poison) {
		t.Errorf("deadletter_total = %d, want %d", got, len(poison))
	}
	if got := counter(in.p.met.changes); got != 1 {
		t.Errorf("changes_total = %d, want 1", got)
	}
}

// failingChanges fails every ApplyChanges (MongoDB refusing the changes' updates).
type failingChanges struct {
	Writer
}

func (failingChanges) ApplyChanges(context.Context, []chat.Message) error {
	return errors.New("changes refused")
}

// A batch's messages are acked when stored even though its changes' write fails; the
// changes are retried (not acked, not dead-lettered).
func TestFailedChangesDoNotHoldMessages(t *testing.T) {
	e := newEnv(t)
	in := e.start(t, testConfig(), failingChanges{Writer: e.store})
	m := e.apiMessage(t, "general", "ann", "hello")
	edit := chat.Message{ID: m.ID, Room: "general", Event: chat.EventEdited, Message: "edited", EditedAt: m.SentAt}
	e.publish(t, edit.ChangeMsg(""))
	e.apiMessage(t, "general", "ann", "after the edit")
	chattest.Eventually(t, 15*time.Second, func() bool { return e.count(t) == 2 && counter(in.p.met.redeliveries) > 0 },
		"messages stored and the change redelivered")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, chat.StreamName, ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	// The messages' acks follow their write: wait for them (a one-shot look raced them
	// on a loaded machine), then the change alone stays pending, redelivered.
	chattest.Eventually(t, 10*time.Second, func() bool {
		info, err := c.Info(ctx)
		return err == nil && info.NumAckPending == 1
	}, "messages awaiting an ack never came down to 1 (the change)")
	in.stop(t)
	// With a working store, a new replica applies it.
	e.start(t, testConfig(), nil)
	chattest.Eventually(t, 15*time.Second, func() bool {
		got, _, err := e.store.Get(context.Background(), "general", m.ID)
		return err == nil && got.Message == "edited" && e.settled(t)
	}, "the edit applied after all")
	if n := dlCount(t, e); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}
