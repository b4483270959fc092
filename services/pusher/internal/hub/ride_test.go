package hub

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/services/pusher/internal/transport"
)

// writesTransport records each write (a direct write or a writer's batch) as the types of
// the frames in it, in order: "message+typing" is one write of both.
type writesTransport struct {
	mu     sync.Mutex
	writes []string
}

func (t *writesTransport) add(frames ...[]byte) {
	var types []string
	for _, f := range frames {
		for len(f) > 0 { // split concatenated frames: 2-byte headers (payloads < 126 bytes)
			n := int(f[1] & 0x7f)
			var v struct{ Type string }
			_ = json.Unmarshal(f[2:2+n], &v)
			types = append(types, v.Type)
			f = f[2+n:]
		}
	}
	t.mu.Lock()
	t.writes = append(t.writes, strings.Join(types, "+"))
	t.mu.Unlock()
}

func (t *writesTransport) TryWrite(f []byte, _ time.Time) int { t.add(f); return len(f) }
func (t *writesTransport) Pending() bool                      { return false }
func (t *writesTransport) WriteMany(fs [][]byte, _ bool) error {
	t.add(fs...)
	return nil
}
func (t *writesTransport) Close(int, string, <-chan struct{}) {}

func (t *writesTransport) got() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.writes)
}

// settleSubscribed waits for the two subscribed frames, in one write or two (the writer
// may start between the two subscribes), and records them as the one write the rest of
// the test expects first.
func (t *writesTransport) settleSubscribed(tb testing.TB) {
	tb.Helper()
	chattest.Eventually(tb, 5*time.Second, func() bool {
		t.mu.Lock()
		defer t.mu.Unlock()
		if strings.Join(t.writes, "+") != "subscribed+subscribed" {
			return false
		}
		t.writes = []string{"subscribed+subscribed"}
		return true
	}, "want two subscribed frames")
}

func (t *writesTransport) waitFor(tb testing.TB, want ...string) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Equal(t.got(), want) {
		if time.Now().After(deadline) {
			tb.Fatalf("writes %q, want %q", t.got(), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// OfferRoom: while a room's messages flow, the frames go in the same write as the next
// message, after it, to the clients named only; in a quiet room, or when no message comes
// within RideWait, they go on their own; a client with frames queued does not get them.
func TestOfferRoomRidesWithTheNextMessage(t *testing.T) {
	h := New(Config{Window: 8, QueueSize: 64, ReplayBatch: 8, PingInterval: time.Hour, MaxSubs: 4, FlushInterval: -1},
		0, time.Now(), nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ta, tb := &writesTransport{}, &writesTransport{}
	a, _ := h.Join(ta)
	b, _ := h.Join(tb)
	for _, c := range []*Client{a, b} {
		for _, room := range []string{"busy", "quiet"} {
			if err := h.Subscribe(c, room, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	ta.settleSubscribed(t)
	tb.settleSubscribed(t)
	typing := [][]byte{transport.TextFrame([]byte(`{"type":"typing","room":"busy","name":"Ann"}`))}
	seq := uint64(0)
	fanout := func(room string) {
		seq++
		h.Fanout(&chat.Message{ID: "m", Room: room, Name: "n", Message: "x", SentAt: time.Now(), Seq: seq})
	}
	toA := func() map[*Client]struct{} { return map[*Client]struct{}{a: {}} } // the hub takes it over

	fanout("busy")
	h.OfferRoom("busy", typing, toA(), time.Now())
	if got := ta.got(); len(got) != 2 {
		t.Fatalf("typing went out before the next message: %q", got)
	}
	fanout("busy")
	ta.waitFor(t, "subscribed+subscribed", "message", "message+typing")
	tb.waitFor(t, "subscribed+subscribed", "message", "message")

	// No message within RideWait: on its own.
	h.OfferRoom("busy", typing, toA(), time.Now())
	ta.waitFor(t, "subscribed+subscribed", "message", "message+typing", "typing")

	// A quiet room: at once.
	h.OfferRoom("quiet", typing, toA(), time.Now())
	if got := ta.got(); len(got) != 5 || got[4] != "typing" {
		t.Fatalf("quiet room: writes %q", got)
	}

	// A client with a frame queued gets the message, not the typing notice.
	fanout("busy")
	ta.waitFor(t, "subscribed+subscribed", "message", "message+typing", "typing", "typing", "message")
	h.OfferRoom("busy", typing, toA(), time.Now())
	a.mu.Lock()
	a.queue = append(a.queue, transport.TextFrame([]byte(`{"type":"join"}`)))
	a.mu.Unlock()
	fanout("busy")
	ta.waitFor(t, "subscribed+subscribed", "message", "message+typing", "typing", "typing", "message", "join+message")
	time.Sleep(2 * RideWait) // nothing else comes: the notice was dropped, not kept
	ta.waitFor(t, "subscribed+subscribed", "message", "message+typing", "typing", "typing", "message", "join+message")
	// Join and leave frames (EnqueueRoom) are kept for a client that is behind: queued
	// after the message.
	join := [][]byte{transport.TextFrame([]byte(`{"type":"join","room":"busy"}`))}
	h.EnqueueRoom("busy", join, toA(), time.Now())
	a.mu.Lock()
	a.queue = append(a.queue, transport.TextFrame([]byte(`{"type":"leave"}`)))
	a.mu.Unlock()
	fanout("busy")
	ta.waitFor(t, "subscribed+subscribed", "message", "message+typing", "typing", "typing", "message", "join+message", "leave+message+join")
	if tb.got()[len(tb.got())-1] != "message" || bytes.Contains([]byte(strings.Join(tb.got(), ",")), []byte("typing")) {
		t.Errorf("b, not named, got %q", tb.got())
	}
	for _, c := range []*Client{a, b} {
		c.Close(CloseServiceRestart, "")
		h.Leave(c)
	}
}
