package app_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// rawPublish publishes payload to room as another service would; msgID sets Nats-Msg-Id.
// It returns the stored message as every service reads it.
func (e *env) rawPublish(room, msgID, payload string) (chat.Message, *jetstream.PubAck) {
	e.t.Helper()
	ctx := context.Background()
	msg := nats.NewMsg(chat.Subject(room))
	msg.Data = []byte(payload)
	if msgID != "" {
		msg.Header.Set(chat.HeaderMsgID, msgID)
	}
	ack, err := e.js.PublishMsg(ctx, msg)
	if err != nil {
		e.t.Fatal(err)
	}
	st, err := e.js.Stream(ctx, chat.StreamName)
	if err != nil {
		e.t.Fatal(err)
	}
	raw, err := st.GetMsg(ctx, ack.Sequence)
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := chat.FromStored(chat.StoredFromRaw(raw), st.CachedInfo().Created)
	if err != nil {
		e.t.Fatal(err)
	}
	return m, ack
}

// collect reads message frames until one with seq last arrives, then checks nothing more
// is queued behind it for a moment.
func (c *client) collect(last uint64) []chat.Message {
	c.t.Helper()
	var got []chat.Message
	for {
		f := c.next()
		if f.Type != "message" {
			continue
		}
		got = append(got, chat.Message{ID: f.ID, Room: f.Room, Message: f.Msg, Seq: f.Seq})
		if f.Seq >= last {
			return got
		}
	}
}

func brief(ms []chat.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%d:%s:%s", m.Seq, m.ID, m.Message))
	}
	return out
}

// TestNothingPushedTwice: the same payload id stored twice in the stream (without
// Nats-Msg-Id; with it after the duplicate window; the second copy with other text) is
// pushed once, the copy with the lowest seq, which is what history holds: to live
// subscribers and to resumes from each tier (window, JetStream, MongoDB), on two pushers.
func TestNothingPushedTwice(t *testing.T) {
	opts := chat.DefaultStreamOptions()
	e := newEnv(t, opts)
	ctx := context.Background()
	var stored []chat.Message // everything in the stream, as the persister would store it
	keep := func(m chat.Message, _ *jetstream.PubAck) chat.Message { stored = append(stored, m); return m }

	// ext-0 was stored before the pushers started: only MongoDB can tell them.
	ext0 := keep(e.rawPublish("r", "", `{"id":"ext-0","name":"svc","message":"zero"}`))
	if err := e.store.InsertMany(ctx, []chat.Message{ext0}); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.Window = 64
	a := e.startPusher(cfg)
	// b's index warms up on the last 2ms only: it does not know ext-0, and asks MongoDB.
	cfgB := cfg
	cfgB.DedupSkew = time.Millisecond
	b := e.startPusher(cfgB)
	// The pushers' EnsureStreams set the default duplicate window; make it short now.
	short := opts
	short.Duplicates = 200 * time.Millisecond
	if _, err := chat.EnsureStreams(ctx, e.js, short); err != nil {
		t.Fatal(err)
	}
	var lives []*client
	for _, n := range []*node{a, b} {
		c := dial(t, n.url+"?room=r")
		if f := c.next(); f.Type != "subscribed" {
			t.Fatalf("got %+v", f)
		}
		lives = append(lives, c)
	}

	first := e.publish("r", 1)[0]
	stored = append(stored, first)
	keep(e.rawPublish("r", "", `{"id":"ext-0","name":"svc","message":"zero again"}`))
	keep(e.rawPublish("r", "", `{"id":"ext-1","name":"svc","message":"one"}`))
	keep(e.rawPublish("r", "", `{"id":"ext-1","name":"svc","message":"one, other text"}`))
	keep(e.rawPublish("r", "ext-2", `{"name":"svc","message":"two"}`))
	// Republished with the same Nats-Msg-Id after the duplicate window: stored again.
	chattest.Eventually(t, 10*time.Second, func() bool {
		m, ack := e.rawPublish("r", "ext-2", `{"name":"svc","message":"two again"}`)
		if !ack.Duplicate {
			stored = append(stored, m)
		}
		return !ack.Duplicate
	}, "ext-2 was never stored twice")
	ulid := chat.NewID(time.Now())
	keep(e.rawPublish("r", "", `{"id":"`+ulid+`","name":"svc","message":"ulid"}`))
	keep(e.rawPublish("r", "", `{"id":"`+ulid+`","name":"svc","message":"ulid again"}`))
	keep(e.rawPublish("other", "", `{"id":"ext-1","name":"svc","message":"one in another room"}`))
	end := e.publish("r", 1)[0]
	stored = append(stored, end)

	// The persister's job, in the worst order: later copies first. History keeps the
	// lowest seq of each id.
	rev := slices.Clone(stored)
	slices.Reverse(rev)
	for _, m := range rev {
		if err := e.store.InsertMany(ctx, []chat.Message{m}); err != nil {
			t.Fatal(err)
		}
	}
	history, err := e.store.After(ctx, "r", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := brief(history)
	wantTexts := []string{"zero", first.Message, "one", "two", "ulid", end.Message}
	for i, m := range history {
		if i >= len(wantTexts) || m.Message != wantTexts[i] {
			t.Fatalf("history %v, want the first copy of each id: %v", want, wantTexts)
		}
	}
	live := want[1:] // ext-0 was before the subscribes

	check := func(what string, c *client, want []string) {
		t.Helper()
		got := brief(c.collect(end.Seq))
		if !slices.Equal(got, want) {
			t.Errorf("%s got\n  %v\nwant (history)\n  %v", what, got, want)
		}
	}
	for i, c := range lives {
		check(fmt.Sprintf("live on pusher %d", i), c, live)
	}
	for i, n := range []*node{a, b} {
		// Window: everything after the node started is in its window.
		c := dial(t, fmt.Sprintf("%s?room=r&since=%d", n.url, ext0.Seq))
		check(fmt.Sprintf("window resume on pusher %d", i), c, live)
	}
	// Pushers started now have nothing in their windows (nor, with b's skew, in their id
	// indexes): a resume from 0 reads JetStream one message per batch, so each copy is
	// checked against MongoDB, and, once the stream is purged, MongoDB.
	cfgLate := cfgB
	cfgLate.ReplayBatch = 1
	late := []*node{e.startPusher(cfgLate), e.startPusher(cfgLate)}
	for i, n := range late {
		check(fmt.Sprintf("JetStream resume on late pusher %d", i), dial(t, n.url+"?room=r&since=0"), want)
	}
	st, err := e.js.Stream(ctx, chat.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	for i, n := range append(late, a, b) {
		check(fmt.Sprintf("MongoDB resume on pusher %d", i), dial(t, n.url+"?room=r&since=0"), want)
	}
}
