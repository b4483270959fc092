package hub

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/services/pusher/internal/transport"
)

// recPresence records what the hub tells its Presence.
type recPresence struct {
	mu    sync.Mutex
	calls []string
}

func (p *recPresence) add(s string) { p.mu.Lock(); p.calls = append(p.calls, s); p.mu.Unlock() }
func (p *recPresence) Join(room string, _ *Client, m Member) {
	p.add("join:" + room + ":" + m.Name)
}
func (p *recPresence) Leave(room string, _ *Client, m Member) {
	p.add("leave:" + room + ":" + m.Name)
}
func (p *recPresence) Typing(room string, _ *Client, m Member) {
	p.add("typing:" + room + ":" + m.Name)
}

// Every registered subscription joins presence once and leaves it once (unsubscribe or
// the client's end); typing is forwarded only for a subscribed, named subscription, at
// most once per TypingEvery.
func TestPresenceHooks(t *testing.T) {
	p := &recPresence{}
	h := New(Config{Window: 8, QueueSize: 64, ReplayBatch: 8, PingInterval: time.Hour, MaxSubs: 4, Presence: p},
		0, time.Now(), nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	tr := newRecTransport()
	c, _ := h.Join(tr)
	if err := h.SubscribeAs(c, "a", nil, Member{Name: "Ann", Watch: true}); err != nil {
		t.Fatal(err)
	}
	if err := h.Subscribe(c, "b", nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := h.Typing(c, "x", now); !errors.Is(err, errNotSubscribed) {
		t.Fatalf("typing unsubscribed: %v", err)
	}
	for _, at := range []time.Duration{0, time.Second, TypingEvery} { // the second is too soon
		if err := h.Typing(c, "a", now.Add(at)); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Typing(c, "b", now); err != nil { // anonymous: not forwarded
		t.Fatal(err)
	}
	if err := h.Unsubscribe(c, "a"); err != nil {
		t.Fatal(err)
	}
	h.Leave(c)
	want := []string{"join:a:Ann", "join:b:", "typing:a:Ann", "typing:a:Ann", "leave:a:Ann", "leave:b:"}
	if !slices.Equal(p.calls, want) {
		t.Fatalf("presence calls %v, want %v", p.calls, want)
	}
}

// blockedTransport accepts no direct write and holds the writer in WriteMany until let go.
type blockedTransport struct {
	release chan struct{}
	writing chan struct{}
	once    sync.Once
}

func (t *blockedTransport) TryWrite([]byte, time.Time) int { return 0 }
func (t *blockedTransport) Pending() bool                  { return false }
func (t *blockedTransport) WriteMany([][]byte, bool) error {
	t.once.Do(func() { close(t.writing) })
	<-t.release
	return nil
}
func (t *blockedTransport) Close(int, string, <-chan struct{}) {}

// Offer never queues behind other frames: a client whose writer is busy or whose queue
// holds frames does not get them.
func TestOfferDropsForAClientThatIsBehind(t *testing.T) {
	h := New(Config{Window: 8, QueueSize: 64, ReplayBatch: 8, PingInterval: time.Hour, MaxSubs: 4, FlushInterval: -1},
		0, time.Now(), nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	tr := &blockedTransport{release: make(chan struct{}), writing: make(chan struct{})}
	c, _ := h.Join(tr)
	typing := [][]byte{transport.TextFrame([]byte(`{"type":"typing","room":"a","name":"Ann"}`))}
	msg := transport.TextFrame([]byte(`{"type":"message"}`))
	if !c.Enqueue(msg) {
		t.Fatal("enqueue")
	}
	<-tr.writing // the writer holds the first batch
	if c.Offer(typing, time.Now()) {
		t.Fatal("offered to a client whose writer is busy")
	}
	c.Enqueue(msg)
	if c.Offer(typing, time.Now()) || c.queued() != 1 {
		t.Fatalf("offered to a client with %d queued", c.queued())
	}
	close(tr.release)
	c.Close(CloseServiceRestart, "")
	h.Leave(c)
}
