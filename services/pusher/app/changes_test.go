package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go"
)

// stored reads back what the stream stored at seq, as every service decodes it; ok is
// false for an invalid payload (dead-lettered, never pushed).
func (e *env) stored(seq uint64) (chat.Message, bool) {
	e.t.Helper()
	ctx := context.Background()
	st, err := e.js.Stream(ctx, chat.StreamName)
	if err != nil {
		e.t.Fatal(err)
	}
	raw, err := st.GetMsg(ctx, seq)
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := chat.FromStored(chat.StoredFromRaw(raw), st.CachedInfo().Created)
	if err != nil && !chat.IsInvalid(err) {
		e.t.Fatal(err)
	}
	return m, err == nil
}

// publishMsg publishes msg and returns what the stream stored (ok false: invalid).
func (e *env) publishMsg(msg *nats.Msg) (chat.Message, bool) {
	e.t.Helper()
	ack, err := e.js.PublishMsg(context.Background(), msg)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.stored(ack.Sequence)
}

// change publishes change c (Event set) as the api would and returns it as stored.
func (e *env) change(c chat.Message) chat.Message {
	e.t.Helper()
	m, ok := e.publishMsg(c.ChangeMsg("someone"))
	if !ok {
		e.t.Fatalf("change %+v stored as invalid", c)
	}
	return m
}

// rawChange publishes payload to the change subject of room's message id.
func (e *env) rawChange(room, id, payload string) (chat.Message, bool) {
	e.t.Helper()
	msg := nats.NewMsg(chat.ChangeSubject(room, id))
	msg.Data = []byte(payload)
	return e.publishMsg(msg)
}

func edit(m chat.Message, text string) chat.Message {
	return chat.Message{ID: m.ID, Room: m.Room, Event: chat.EventEdited, Message: text, EditedAt: time.Now()}
}

func del(m chat.Message) chat.Message {
	return chat.Message{ID: m.ID, Room: m.Room, Event: chat.EventDeleted}
}

func react(m chat.Message, r chat.Reactions) chat.Message {
	return chat.Message{ID: m.ID, Room: m.Room, Event: chat.EventReactions, Reactions: r}
}

// rawNext reads the next frame's bytes.
func (c *client) rawNext() []byte {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return data
}

// subscribed reads the subscribed frame.
func (c *client) subscribed() {
	c.t.Helper()
	if data := c.rawNext(); !bytes.HasPrefix(data, []byte(`{"type":"subscribed"`)) {
		c.t.Fatalf("got %s, want the subscribed frame", data)
	}
}

// expectFrames reads one frame per event and checks it is byte for byte the event's
// frame (a message's or a change's), in order.
func (c *client) expectFrames(what string, want []chat.Message) {
	c.t.Helper()
	for i := range want {
		w := string(want[i].AppendJSON(nil, "message"))
		if got := string(c.rawNext()); got != w {
			c.t.Fatalf("%s: frame %d\n got %s\nwant %s", what, i, got, w)
		}
	}
}

func after(events []chat.Message, since uint64) []chat.Message {
	var out []chat.Message
	for _, m := range events {
		if m.Seq > since {
			out = append(out, m)
		}
	}
	return out
}

// Changes reach live subscribers as their frames, in the room's order with its messages;
// invalid ones are never pushed and hold nothing up; and every resume (from the window,
// from a window smaller than the range, from a node whose CHAT_WINDOW_BYTES trims the
// windows, from JetStream on a node started after the events, in batches of every size)
// gets exactly the frames after its cursor, including changes to messages older than
// the cursor.
func TestChangesLiveAndResumed(t *testing.T) {
	e := newEnv(t, chat.DefaultStreamOptions())
	big := e.startPusher(defaultConfig())
	small := defaultConfig()
	small.Window, small.ReplayBatch = 2, 1
	tiny := e.startPusher(small)
	starved := defaultConfig()
	starved.WindowBytes = 2 << 10 // trims the windows of subscribed rooms to a frame or two
	poor := e.startPusher(starved)
	var lives []*client
	for _, n := range []*node{big, tiny, poor} {
		c := dial(t, n.url+"?room=r")
		c.subscribed()
		lives = append(lives, c)
	}
	other := dial(t, big.url+"?room=other")
	other.subscribed()

	var events []chat.Message // room r's, in seq order, as the stream stored them
	keep := func(ms ...chat.Message) {
		for _, m := range ms {
			if m.Room == "r" {
				events = append(events, m)
			}
		}
	}
	m := e.publish("r", 3)
	keep(m...)
	keep(e.change(edit(m[0], "first, edited")))
	keep(e.change(react(m[1], chat.Reactions{"👍": {"ann", "bob"}, "🎉": {"cy"}})))
	keep(e.change(edit(m[0], "first, edited <again> & \"quoted\"")))
	otherMsg := e.publish("other", 1)[0]
	otherDel := e.change(del(otherMsg))
	keep(e.change(del(m[0])))
	keep(e.change(edit(m[0], "after the deletion: ignored by clients, pushed all the same")))
	// Invalid changes: dead-lettered by the persister, never pushed.
	for _, bad := range []string{
		`not json`, `{"type":"bogus"}`, `{"type":"edited"}`, `{"type":"edited","message":"  "}`,
		`{"type":"deleted","id":"someone-else"}`, `{"type":"deleted","room":"other"}`,
		`{"type":"reactions","reactions":{"👍":["ann","ann"]}}`, `{"type":"reactions"}`,
	} {
		if c, ok := e.rawChange("r", m[1].ID, bad); ok {
			t.Fatalf("%s stored as a valid change %+v", bad, c)
		}
	}
	bad := nats.NewMsg(chat.Subject("r") + "." + m[1].ID + ".extra") // not a change subject
	bad.Data = []byte(`{"type":"deleted"}`)
	if _, ok := e.publishMsg(bad); ok {
		t.Fatal("a subject with an extra token decoded")
	}
	// A message whose id only MongoDB can tell (held for a store check) and its changes
	// right behind it: they wait for it and come after it.
	ext, ok := e.publishMsg(func() *nats.Msg {
		msg := nats.NewMsg(chat.Subject("r"))
		msg.Data = []byte(`{"id":"ext.1","name":"svc","message":"from another service"}`)
		return msg
	}())
	if !ok {
		t.Fatal("ext.1 invalid")
	}
	keep(ext)
	keep(e.change(react(ext, chat.Reactions{"❤️": {"ann"}})))
	if c, ok := e.rawChange("r", ext.ID, `{"type":"edited","message":"raw edit","edited_at":"2026-12-01T10:00:00.123456Z"}`); ok {
		keep(c)
	} else {
		t.Fatal("a raw edit was invalid")
	}
	keep(e.change(react(ext, chat.Reactions{})))
	keep(e.change(react(m[1], chat.Reactions{"👍": {"bob"}})))
	keep(e.publish("r", 1)...)
	keep(e.change(del(m[2])))
	keep(e.change(edit(m[1], "second, edited")))

	for i, c := range lives {
		c.expectFrames(fmt.Sprintf("live on pusher %d", i), events)
	}
	other.expectFrames("live in the other room", []chat.Message{otherMsg, otherDel})

	// A node started after everything: its window is empty, resumes read JetStream, in
	// batches of 1 to 4 and 64.
	var late []*node
	for _, batch := range []int{1, 2, 3, 4, 64} {
		cfg := defaultConfig()
		cfg.ReplayBatch = batch
		late = append(late, e.startPusher(cfg))
	}
	cursors := []uint64{0, m[0].Seq, m[0].Seq + 1} // before all; between m0 and its edit; after that edit
	for _, ev := range events {
		cursors = append(cursors, ev.Seq-1, ev.Seq)
	}
	cursors = append(cursors, otherDel.Seq, events[len(events)-1].Seq+100) // another room's seq; beyond the stream
	for _, n := range append([]*node{big, tiny, poor}, late...) {
		for _, since := range cursors {
			c := dial(t, fmt.Sprintf("%s?room=r&since=%d", n.url, since))
			c.subscribed()
			c.expectFrames(fmt.Sprintf("%s since %d", n.url, since), after(events, since))
			c.conn.Close()
		}
	}
	for _, n := range []*node{tiny, poor} {
		if b := n.scrape(t, `chat_pusher_replays_total{source="backlog"}`); b < 10 {
			t.Fatalf("%v resumes from the backlog on a node with a small window", b)
		}
	}
	// And what comes next is live on every one of them, once.
	tail := []chat.Message{e.change(edit(m[1], "live again"))}
	for i, c := range lives {
		c.expectFrames(fmt.Sprintf("live on pusher %d", i), tail)
	}
}

// wire is a frame as a client decodes it.
type wire struct {
	Type      string         `json:"type"`
	Room      string         `json:"room"`
	ID        string         `json:"id"`
	Seq       uint64         `json:"seq"`
	Name      string         `json:"name"`
	Message   string         `json:"message"`
	SentAt    string         `json:"sent_at"`
	EditedAt  string         `json:"edited_at"`
	Deleted   bool           `json:"deleted"`
	Reactions map[string]int `json:"reactions"`
}

// shown is a message as a client shows it.
type shown struct {
	Name, Message, SentAt, EditedAt string
	Deleted                         bool
	Reactions                       map[string]int
	Seq                             uint64
}

// view is what a client shows of a room: message id → message.
type view map[string]shown

// apply applies one frame to v as the contract tells a client to: a message frame adds the
// message (in the state it carries); edited sets its text and edited_at, reactions its
// counts, deleted makes it a tombstone (no name, text, edited_at or reactions), after
// which its changes are ignored. Changes to a message the client does not have are
// ignored.
func (v view) apply(f wire) error {
	if f.Type == "message" {
		if _, ok := v[f.ID]; ok {
			return fmt.Errorf("message %s twice (seq %d)", f.ID, f.Seq)
		}
		v[f.ID] = shown{Name: f.Name, Message: f.Message, SentAt: f.SentAt, EditedAt: f.EditedAt, Deleted: f.Deleted,
			Reactions: f.Reactions, Seq: f.Seq}
		return nil
	}
	s, ok := v[f.ID]
	if !ok || s.Deleted {
		return nil
	}
	switch f.Type {
	case "edited":
		s.Message, s.EditedAt = f.Message, f.EditedAt
	case "deleted":
		s = shown{SentAt: s.SentAt, Seq: s.Seq, Deleted: true}
	case "reactions":
		s.Reactions = f.Reactions
	default:
		return fmt.Errorf("unknown frame type %q", f.Type)
	}
	if len(s.Reactions) == 0 {
		s.Reactions = nil
	}
	v[f.ID] = s
	return nil
}

func decode(t *testing.T, data []byte) wire {
	t.Helper()
	var f wire
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("frame %s: %v", data, err)
	}
	return f
}

// historyAt is room r as history shows it once the stream up to seq through is applied:
// each message with its state (chat.State over its changes), encoded as history encodes it.
func historyAt(t *testing.T, events []chat.Message, through uint64) view {
	t.Helper()
	v := view{}
	states := map[string]*chat.State{}
	for _, m := range events {
		if m.Seq > through {
			break
		}
		if m.Event != "" {
			if s := states[m.ID]; s != nil {
				s.Apply(&m)
			}
			continue
		}
		states[m.ID] = &chat.State{}
	}
	for _, m := range events {
		if m.Seq > through || m.Event != "" {
			continue
		}
		cur := m.WithState(states[m.ID])
		if err := v.apply(decode(t, cur.AppendJSON(nil, "message"))); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// The property: a client that applies the frames it receives after any cursor to what
// history showed at that cursor ends with exactly what history shows, on any pusher
// (live window, a window smaller than the range, JetStream from a node started after the
// events), for a random sequence of messages and changes (edits, deletions, reactions,
// changes to deleted messages, invalid changes) in two interleaved rooms.
func TestChangesConvergeFromEveryCursor(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	e := newEnv(t, chat.DefaultStreamOptions())
	cfg := defaultConfig()
	cfg.Window = 4
	cfg.ReplayBatch = 3
	early := []*node{e.startPusher(defaultConfig()), e.startPusher(cfg)}

	var events []chat.Message // room r's valid events, in seq order
	var msgs []chat.Message
	people := []string{"ann", "bob", "cy"}
	emoji := []string{"👍", "❤️", "🎉"}
	for i := range 80 {
		room := "r"
		if rng.IntN(4) == 0 {
			room = "s" // the other room's events interleave seqs
		}
		var ev chat.Message
		ok := true
		switch k := rng.IntN(10); {
		case len(msgs) < 2 || k < 3:
			m, _, err := e.pub.Post(context.Background(), chat.Post{Room: room, Name: people[rng.IntN(3)], Message: fmt.Sprint("text ", i)})
			if err != nil {
				t.Fatal(err)
			}
			ev = m
			msgs = append(msgs, m)
		case k < 5:
			ev = e.change(edit(msgs[rng.IntN(len(msgs))], fmt.Sprint("edit ", i)))
		case k < 6:
			ev = e.change(del(msgs[rng.IntN(len(msgs))]))
		case k < 9:
			r := chat.Reactions{}
			for _, em := range emoji {
				for _, p := range people {
					if rng.IntN(3) == 0 {
						r[em] = append(r[em], p)
					}
				}
			}
			ev = e.change(react(msgs[rng.IntN(len(msgs))], r))
		default:
			target := msgs[rng.IntN(len(msgs))]
			ev, ok = e.rawChange(target.Room, target.ID, `{"type":"edited","message":""}`)
			if ok {
				t.Fatal("an empty edit was valid")
			}
		}
		if ok && ev.Room == "r" {
			events = append(events, ev)
		}
	}
	end := e.publish("r", 1)[0] // the last frame every client reads up to
	events = append(events, end)
	want := historyAt(t, events, end.Seq)

	lateCfg := defaultConfig()
	lateCfg.ReplayBatch = 1 + rng.IntN(5)
	nodes := append(early, e.startPusher(lateCfg))
	for ni, n := range nodes {
		for since := uint64(0); since <= end.Seq; since++ {
			got := historyAt(t, events, since)
			c := dial(t, fmt.Sprintf("%s?room=r&since=%d", n.url, since))
			c.subscribed()
			last := since
			for last < end.Seq {
				f := decode(t, c.rawNext())
				if f.Seq <= last || f.Room != "r" {
					t.Fatalf("pusher %d since %d: frame %+v after seq %d", ni, since, f, last)
				}
				last = f.Seq
				if err := got.apply(f); err != nil {
					t.Fatalf("pusher %d since %d: %v", ni, since, err)
				}
			}
			c.conn.Close()
			if !maps.EqualFunc(got, want, func(a, b shown) bool {
				return a.Name == b.Name && a.Message == b.Message && a.SentAt == b.SentAt && a.EditedAt == b.EditedAt &&
					a.Deleted == b.Deleted && a.Seq == b.Seq && maps.Equal(a.Reactions, b.Reactions)
			}) {
				ids := slices.Sorted(maps.Keys(want))
				var diff []string
				for _, id := range ids {
					if fmt.Sprint(got[id]) != fmt.Sprint(want[id]) {
						diff = append(diff, fmt.Sprintf("%s: got %+v want %+v", id, got[id], want[id]))
					}
				}
				t.Fatalf("pusher %d since %d: the client's view differs from history (seed %d):\n%s", ni, since, seed,
					strings.Join(diff, "\n"))
			}
		}
	}
}
