package faultload

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
)

// ChangeAck is a change (issue 11) the api acknowledged.
type ChangeAck struct {
	Room, ID string
	Event    chat.Event
	Seq      uint64 // the change's seq (change_seq)
}

// Changer edits, deletes and reacts to acknowledged messages through the api while the
// load runs: the change traffic of the fault tests. Each change is retried like a post
// (Retry statuses, network errors) until answered; 404 (the message is not in MongoDB
// yet, e.g. the persister is stopped) and 409 (deleted meanwhile) are counted, not
// failures.
type Changer struct {
	l    *Load
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	acks     []ChangeAck
	outcomes map[int]int // final status of each change
	retried  map[int]int // failed attempts by status (0: network error), retried
}

// reactionEmoji and reactors are what the changer reacts with.
var (
	reactionEmoji = []string{"👍", "🎉"}
	reactors      = []string{"ann", "bob", "cy"}
)

// StartChanges runs one changer per room, each making a change once per every to a
// random acknowledged message of its room (seeded: the same test makes the same kinds
// of change).
func (l *Load) StartChanges(rooms []string, every time.Duration) *Changer {
	c := &Changer{l: l, stop: make(chan struct{}), outcomes: map[int]int{}, retried: map[int]int{}}
	l.changer = c
	for i, room := range rooms {
		c.wg.Add(1)
		go c.run(room, every, rand.New(rand.NewPCG(uint64(i), 11)))
	}
	return c
}

// Halt stops the changers after their current change is answered.
func (c *Changer) Halt() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.wg.Wait()
}

// Acks are the acknowledged changes so far.
func (c *Changer) Acks() []ChangeAck {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.acks)
}

// Outcomes are the final statuses of the changes made and the failed attempts that were
// retried, e.g. "200=812 404=3 409=40 retried:503=12".
func (c *Changer) Outcomes() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for _, s := range []int{200, 404, 409} {
		if n := c.outcomes[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d=%d", s, n))
		}
	}
	for _, s := range slices.Sorted(maps.Keys(c.retried)) {
		parts = append(parts, fmt.Sprintf("retried:%d=%d", s, c.retried[s]))
	}
	return strings.Join(parts, " ")
}

func (c *Changer) run(room string, every time.Duration, rng *rand.Rand) {
	defer c.wg.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		var target Ack
		acks := c.l.Snapshot()
		for range min(10, len(acks)) { // none yet: nothing to change // the room's messages, the recent ones more often
			a := acks[len(acks)-1-min(len(acks)-1, int(rng.ExpFloat64()*20))]
			if a.Room == room && a.EditKey != "" {
				target = a
				break
			}
		}
		if target.ID == "" {
			continue
		}
		base := "/rooms/" + room + "/messages/" + url.PathEscape(target.ID)
		emoji, who := reactionEmoji[rng.IntN(len(reactionEmoji))], reactors[rng.IntN(len(reactors))]
		var method, path, body string
		var event chat.Event
		switch k := rng.IntN(20); {
		case k < 9:
			method, path, event = http.MethodPost, base+"/reactions", chat.EventReactions
			body = `{"emoji":"` + emoji + `","name":"` + who + `"}`
		case k < 13:
			method, path, event = http.MethodDelete, base+"/reactions/"+url.PathEscape(emoji)+"?name="+who, chat.EventReactions
		case k < 19:
			method, path, event = http.MethodPatch, base, chat.EventEdited
			body = fmt.Sprintf(`{"message":"%s edit %d"}`, target.Text, n)
		default:
			method, path, event = http.MethodDelete, base, chat.EventDeleted
		}
		status, seq, ok := c.do(method, path, body, target.EditKey)
		if !ok {
			return
		}
		c.mu.Lock()
		c.outcomes[status]++
		if status == http.StatusOK && seq > 0 {
			c.acks = append(c.acks, ChangeAck{Room: room, ID: target.ID, Event: event, Seq: seq})
		}
		c.mu.Unlock()
	}
}

// do sends one change until it is answered with a final status (fails the test on an
// unexpected one) and returns the status and the change's seq.
func (c *Changer) do(method, path, body, editKey string) (int, uint64, bool) {
	l := c.l
	start := time.Now()
	for attempt := 0; ; attempt++ {
		if time.Since(start) > 45*time.Second {
			l.t.Errorf("%s %s: not answered within 45s", method, path)
			return 0, 0, false
		}
		if attempt > 0 {
			time.Sleep(25 * time.Millisecond)
		}
		base := l.opts.URL()
		if base == "" {
			l.t.Errorf("%s %s: no node up", method, path)
			return 0, 0, false
		}
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Edit-Key", editKey)
		resp, err := l.client.Do(req)
		var data []byte
		if err == nil {
			data, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		status := 0
		if err == nil {
			status = resp.StatusCode
		}
		switch {
		case status == 0 || slices.Contains(l.opts.Retry, status):
			// Counted apart from the posts' failures: the fault tests tell which
			// faults may answer posts 503.
			c.mu.Lock()
			c.retried[status]++
			c.mu.Unlock()
			continue
		case status == http.StatusNotFound || status == http.StatusConflict:
			return status, 0, true
		case status != http.StatusOK:
			l.t.Errorf("%s %s: answered %d %s", method, path, status, data)
			return 0, 0, false
		}
		var r struct {
			ChangeSeq uint64 `json:"change_seq"`
		}
		// change_seq 0: nothing had to change (a reaction that was not there) and the
		// part was never changed.
		if err := json.Unmarshal(data, &r); err != nil {
			l.t.Errorf("%s %s: 200 with body %s (%v)", method, path, data, err)
			return 0, 0, false
		}
		return status, r.ChangeSeq, true
	}
}

// clientMessage is a message as a subscriber reconstructs it from its frames, by the
// contract's rules: each part (content, reactions) takes its newest change, a deletion
// is final.
type clientMessage struct {
	name, text, editedAt string
	deleted              bool
	reactions            map[string]int
	contentSeq           uint64
	reactionsSeq         uint64
}

// frame is any frame a subscriber reads.
type frame struct {
	Type, Room, ID, Name, Message string
	EditedAt                      string `json:"edited_at"`
	Deleted                       bool
	Reactions                     map[string]int
	Seq                           uint64
}

// apply applies a message or change frame to msgs (the subscriber's view).
func apply(msgs map[string]*clientMessage, f *frame) {
	if f.Type == "message" {
		msgs[f.ID] = &clientMessage{name: f.Name, text: f.Message, editedAt: f.EditedAt, deleted: f.Deleted, reactions: f.Reactions}
		return
	}
	m := msgs[f.ID]
	if m == nil || m.deleted {
		return
	}
	switch chat.Event(f.Type) {
	case chat.EventEdited:
		if f.Seq > m.contentSeq {
			m.text, m.editedAt, m.contentSeq = f.Message, f.EditedAt, f.Seq
		}
	case chat.EventDeleted:
		*m = clientMessage{deleted: true, contentSeq: f.Seq}
	case chat.EventReactions:
		if f.Seq > m.reactionsSeq {
			m.reactions, m.reactionsSeq = f.Reactions, f.Seq
		}
	}
}

// differs describes how the subscriber's view of stored message m differs from it ("").
func (c *clientMessage) differs(m *chat.Message) string {
	want := clientMessage{name: m.Name, text: m.Message, deleted: m.Deleted}
	if !m.EditedAt.IsZero() {
		want.editedAt = chat.FormatTime(m.EditedAt)
	}
	got := c
	counts := map[string]int{}
	for e, people := range m.Reactions {
		if len(people) > 0 {
			counts[e] = len(people)
		}
	}
	have := map[string]int{}
	for e, n := range got.reactions {
		if n > 0 {
			have[e] = n
		}
	}
	if got.name != want.name || got.text != want.text || got.editedAt != want.editedAt || got.deleted != want.deleted ||
		fmt.Sprint(have) != fmt.Sprint(counts) {
		return fmt.Sprintf("saw %+v %v, history has %+v %v", got, have, want, counts)
	}
	return ""
}

// ChangeCounts are the exact counts of a run with a Changer.
type ChangeCounts struct {
	Acked        int // changes answered 200
	Frames       int // change frames delivered, over all subscribers
	Undelivered  int // acknowledged changes a subscriber got no frame of (superseded ones may be served as state from MongoDB)
	StateDiffers int // (subscriber, message) pairs whose reconstructed state is not history's
	Outcomes     string
}

// checkChanges waits (bounded) until MongoDB's state of every message equals what each
// subscriber reconstructed from its frames, and counts the change traffic.
func checkChanges(t testing.TB, store *history.Store, c *Changer, rooms []string, subs []*Subscriber) ChangeCounts {
	t.Helper()
	cc := ChangeCounts{Outcomes: c.Outcomes()}
	acks := c.Acks()
	cc.Acked = len(acks)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var diffs []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		diffs = diffs[:0]
		for _, room := range rooms {
			msgs, err := ReadRoom(ctx, store, room)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range subs {
				if s.Room != room {
					continue
				}
				s.mu.Lock()
				for i := range msgs {
					m := &msgs[i]
					v := s.view[m.ID]
					switch {
					case v == nil:
						diffs = append(diffs, fmt.Sprintf("%s: never saw %s", s.Name, m.ID))
					default:
						if d := v.differs(m); d != "" {
							diffs = append(diffs, fmt.Sprintf("%s: %s (seq %d): %s", s.Name, m.ID, m.Seq, d))
						}
					}
				}
				s.mu.Unlock()
			}
		}
		if len(diffs) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cc.StateDiffers = len(diffs)
	for i, d := range diffs {
		if i == 20 {
			t.Errorf("... and %d more state differences", len(diffs)-20)
			break
		}
		t.Errorf("state differs from history: %s", d)
	}
	for _, s := range subs {
		s.mu.Lock()
		cc.Frames += len(s.changeSeqs)
		for _, a := range acks {
			if a.Room == s.Room && !s.changeSeqs[a.Seq] {
				cc.Undelivered++
			}
		}
		s.mu.Unlock()
	}
	return cc
}
