package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/prometheus/client_golang/prometheus"
)

// recTransport is a client socket that records the messages written to it (a pure unit:
// the hub's bookkeeping without sockets).
type recTransport struct {
	mu   sync.Mutex
	got  []string // type:room:seq of each frame
	ends chan struct{}
	once sync.Once
}

func newRecTransport() *recTransport { return &recTransport{ends: make(chan struct{})} }

func (t *recTransport) record(raw []byte) {
	var f struct {
		Type string `json:"type"`
		Room string `json:"room"`
		Seq  uint64 `json:"seq"`
	}
	if err := json.Unmarshal(raw[bytes.IndexByte(raw, '{'):], &f); err != nil {
		panic(err)
	}
	t.mu.Lock()
	t.got = append(t.got, fmt.Sprintf("%s:%s:%d", f.Type, f.Room, f.Seq))
	t.mu.Unlock()
}

func (t *recTransport) TryWrite(frame []byte, _ time.Time) int { t.record(frame); return len(frame) }
func (t *recTransport) Pending() bool                          { return false }
func (t *recTransport) WriteMany(frames [][]byte, _ bool) error {
	for _, f := range frames {
		t.record(f)
	}
	return nil
}
func (t *recTransport) Close(int, string, <-chan struct{}) { t.once.Do(func() { close(t.ends) }) }

// wait waits until the transport got want (in this order), then checks nothing else came.
func (t *recTransport) wait(tb testing.TB, want ...string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		t.mu.Lock()
		got := slices.Clone(t.got)
		t.mu.Unlock()
		if len(got) >= len(want) {
			if !slices.Equal(got, want) {
				tb.Fatalf("got %v, want %v", got, want)
			}
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("got %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// memBacklog serves a room's messages from memory (stands in for JetStream/MongoDB).
type memBacklog struct {
	mu   sync.Mutex
	msgs []chat.Message
}

func (b *memBacklog) add(m chat.Message) { b.mu.Lock(); b.msgs = append(b.msgs, m); b.mu.Unlock() }

func (b *memBacklog) Fetch(_ context.Context, room string, after, upTo uint64, max int) ([]chat.Message, uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []chat.Message
	for _, m := range b.msgs {
		if m.Room == room && m.Seq > after && m.Seq <= upTo && len(out) < max {
			out = append(out, m)
		}
	}
	next := upTo
	if len(out) == max {
		next = out[len(out)-1].Seq
	}
	return out, next, nil
}

func (b *memBacklog) LastSeq(context.Context) (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.msgs) == 0 {
		return 0, nil
	}
	return b.msgs[len(b.msgs)-1].Seq, nil
}

func budgetHub(tb testing.TB, windowBytes int64, backlog Backlog, reg prometheus.Registerer) *Hub {
	tb.Helper()
	return New(Config{Window: 1024, QueueSize: 4096, ReplayBatch: 2, PingInterval: time.Hour, MaxSubs: 64,
		FlushInterval: -1, WindowBytes: windowBytes, RoomIdle: -1},
		0, time.Unix(1, 0), backlog, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func join(tb testing.TB, h *Hub) (*Client, *recTransport) {
	tb.Helper()
	t := newRecTransport()
	c, ok := h.Join(t)
	if !ok {
		tb.Fatal("join refused")
	}
	tb.Cleanup(func() { h.Leave(c) })
	return c, t
}

func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Far more rooms than the budget holds: the live heap stays under budget + a constant,
// and what is counted against the budget stays within it. Before the budget every room
// kept its window forever (the 20,000 x 4,000 characters below held ~90 MiB).
//
// CHAT_BUDGET_FULL=1 runs it at the README's size: 200,000 rooms through the default
// 64 MiB budget.
func TestRoomBudgetBoundsHeap(t *testing.T) {
	budget, rooms := int64(1<<20), 20000
	if os.Getenv("CHAT_BUDGET_FULL") != "" {
		budget, rooms = DefaultWindowBytes, 200000
	}
	reg := prometheus.NewRegistry()
	h := budgetHub(t, budget, nil, reg)
	text := strings.Repeat("x", 4000)
	base := liveHeap()
	for i := 0; i < rooms; i++ {
		m := &chat.Message{ID: fmt.Sprintf("id-%d", i), Room: fmt.Sprintf("room-%d", i), Name: "n", Message: text,
			SentAt: time.Now(), Seq: uint64(i + 1)}
		h.Fanout(m)
		if i%1000 == 0 { // a few rooms get many messages
			for j := 0; j < 50; j++ {
				m.Seq++
				h.Fanout(m)
			}
		}
	}
	heap := liveHeap()
	t.Logf("live heap %d KiB over the baseline, %d rooms, %d window bytes", (int64(heap)-int64(base))>>10, h.Rooms(), h.WindowBytes())
	if grown := int64(heap) - int64(base); grown > budget+2<<20 {
		t.Fatalf("live heap grew by %d bytes, budget %d", grown, budget)
	}
	if wb := h.WindowBytes(); wb > budget {
		t.Fatalf("window bytes %d > budget %d", wb, budget)
	}
	if n := testutilValue(t, reg, "chat_pusher_room_evictions_total"); n < float64(rooms)*0.9 {
		t.Fatalf("%v rooms evicted, want most of %d", n, rooms)
	}
	runtime.KeepAlive(h)
}

func testutilValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// A room evicted and created again starts with a floor at or above every seq the evicted
// one held, and a message the duplicate filter held back (a seq below that floor, handed
// over after the room was created again) is neither lost nor pushed twice: resumes from
// before the floor take the backlog up to it, then the window.
func TestEvictedRoomResumesExactly(t *testing.T) {
	for _, tc := range []struct {
		since uint64
		want  []string
	}{
		{0, []string{"message:x:1", "message:x:3", "message:x:5"}},
		{1, []string{"message:x:3", "message:x:5"}},
		{3, []string{"message:x:5"}},
		{4, []string{"message:x:5"}},
		{5, nil},
	} {
		t.Run(fmt.Sprint("since=", tc.since), func(t *testing.T) {
			bl := &memBacklog{}
			h := budgetHub(t, 1<<20, bl, nil)
			pub := func(room string, seq uint64) {
				m := chat.Message{ID: fmt.Sprint("id-", seq), Room: room, Name: "n", Message: "m", SentAt: time.Now(), Seq: seq}
				bl.add(m) // in the stream before the feed hands it over
				h.Fanout(&m)
			}
			pub("x", 1)
			pub("y", 2)
			// x's seq 3 is held by the duplicate filter while y's 4 goes ahead.
			held := chat.Message{ID: "id-3", Room: "x", Name: "n", Message: "m", SentAt: time.Now(), Seq: 3}
			bl.add(held)
			pub("y", 4)
			h.evictIdle(time.Now().Add(time.Hour)) // both rooms leave memory
			if n := h.Rooms(); n != 0 {
				t.Fatalf("%d rooms after the eviction", n)
			}
			h.Fanout(&held) // released: creates x again, below its floor
			pub("x", 5)

			c, tr := join(t, h)
			since := tc.since
			if err := h.Subscribe(c, "x", &since); err != nil {
				t.Fatal(err)
			}
			want := append([]string{"subscribed:x:5"}, tc.want...)
			tr.wait(t, want...)
			pub("x", 6)
			tr.wait(t, append(want, "message:x:6")...)
		})
	}
}

// Rooms with subscribers alone over the budget: their windows are trimmed oldest first
// (live delivery is untouched; a resume below the risen floor comes from the backlog,
// exactly), and once their fixed cost alone fills the budget, subscribes that would create
// a room are refused.
func TestSubscribedRoomsTrimmedThenRefused(t *testing.T) {
	const budget = 64 << 10
	bl := &memBacklog{}
	h := budgetHub(t, budget, bl, nil)
	text := strings.Repeat("y", 4000)
	const rooms, per = 20, 30
	trs := make([]*recTransport, rooms)
	for i := range trs {
		var c *Client
		c, trs[i] = join(t, h)
		if err := h.Subscribe(c, fmt.Sprint("s-", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	want := make([][]string, rooms)
	for i := range want {
		want[i] = []string{fmt.Sprintf("subscribed:s-%d:0", i)}
	}
	seq := uint64(0)
	for k := 0; k < per; k++ {
		for i := 0; i < rooms; i++ {
			seq++
			m := chat.Message{ID: fmt.Sprint("id-", seq), Room: fmt.Sprint("s-", i), Name: "n", Message: text, SentAt: time.Now(), Seq: seq}
			bl.add(m)
			h.Fanout(&m)
			want[i] = append(want[i], fmt.Sprintf("message:s-%d:%d", i, seq))
		}
	}
	for i, tr := range trs {
		tr.wait(t, want[i]...)
	}
	if wb := h.WindowBytes(); wb > budget+budget/16 {
		t.Fatalf("window bytes %d, budget %d", wb, budget)
	}
	if n := h.Rooms(); n != rooms {
		t.Fatalf("%d rooms, want %d (rooms with subscribers stay)", n, rooms)
	}
	// Resume room s-3 from its first message: most of it was trimmed from the window.
	c, tr := join(t, h)
	since := uint64(4)
	if err := h.Subscribe(c, "s-3", &since); err != nil {
		t.Fatal(err)
	}
	tr.wait(t, append([]string{fmt.Sprintf("subscribed:s-3:%d", seq)}, want[3][2:]...)...)

	// Many empty rooms: refused once the budget is full of them.
	var refused int
	for k := 0; k < 4; k++ {
		c, _ := join(t, h)
		for i := 0; i < 64; i++ {
			err := h.Subscribe(c, fmt.Sprintf("e-%d-%d", k, i), nil)
			switch {
			case errors.Is(err, errTooManyRooms):
				refused++
			case err != nil:
				t.Fatal(err)
			}
		}
	}
	if refused == 0 {
		t.Fatal("no subscribe refused")
	}
	if wb := h.WindowBytes(); wb > budget+budget/16+1024 {
		t.Fatalf("window bytes %d, budget %d", wb, budget)
	}
	t.Logf("%d of 256 subscribes to new rooms refused, %d rooms, %d window bytes", refused, h.Rooms(), h.WindowBytes())
}

// Evictions racing subscribes and publishes: a subscribe that looked a room up just before
// it was evicted must not register on the dead room (it would never get a message again).
// Every subscriber gets the message published after its subscribed frame.
func TestEvictionRacesSubscribe(t *testing.T) {
	h := budgetHub(t, 1<<20, nil, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				h.evictIdle(time.Now().Add(time.Hour))
			}
		}
	}()
	var seq sync.Mutex
	next := uint64(0)
	publish := func(room string) uint64 {
		seq.Lock()
		defer seq.Unlock()
		next++
		h.Fanout(&chat.Message{ID: fmt.Sprint("id-", next), Room: room, Name: "n", Message: "m", SentAt: time.Now(), Seq: next})
		return next
	}
	var fails sync.WaitGroup
	for g := 0; g < 4; g++ {
		fails.Add(1)
		go func() {
			defer fails.Done()
			for i := 0; i < 200; i++ {
				room := fmt.Sprintf("r-%d-%d", g, i%3)
				tr := newRecTransport()
				c, _ := h.Join(tr)
				if err := h.Subscribe(c, room, nil); err != nil {
					t.Error(err)
				}
				s := publish(room)
				deadline := time.Now().Add(10 * time.Second)
				for {
					tr.mu.Lock()
					ok := slices.Contains(tr.got, fmt.Sprintf("message:%s:%d", room, s))
					tr.mu.Unlock()
					if ok {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("%s: message %d never delivered", room, s)
						break
					}
					time.Sleep(time.Millisecond)
				}
				h.Leave(c)
			}
		}()
	}
	fails.Wait()
	close(stop)
	wg.Wait()
}

// Run evicts rooms without subscribers once they have been idle for RoomIdle; a room
// with a subscriber stays, and so does its window.
func TestIdleRoomsLeave(t *testing.T) {
	h := New(Config{Window: 16, QueueSize: 64, ReplayBatch: 4, PingInterval: time.Hour, MaxSubs: 4,
		FlushInterval: -1, RoomIdle: 50 * time.Millisecond}, 0, time.Unix(1, 0), nil, nil,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	defer func() { cancel(); <-done }()

	c, tr := join(t, h)
	if err := h.Subscribe(c, "kept", nil); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		room := "kept"
		if i > 1 {
			room = fmt.Sprint("idle-", i)
		}
		h.Fanout(&chat.Message{ID: fmt.Sprint(i), Room: room, Name: "n", Message: "m", SentAt: time.Now(), Seq: uint64(i)})
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.Rooms() > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d rooms still in memory", h.Rooms())
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.mu.Lock()
	r := h.rooms["kept"]
	h.mu.Unlock()
	if r == nil {
		t.Fatal("the subscribed room was evicted")
	}
	tr.wait(t, "subscribed:kept:0", "message:kept:1")
	// A resume in the subscribed room is still served from its window.
	c2, tr2 := join(t, h)
	since := uint64(0)
	if err := h.Subscribe(c2, "kept", &since); err != nil {
		t.Fatal(err)
	}
	tr2.wait(t, "subscribed:kept:10", "message:kept:1")
}
