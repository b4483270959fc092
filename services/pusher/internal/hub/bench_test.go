package hub

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/services/pusher/internal/transport"
	"github.com/gorilla/websocket"
)

// discardConn is a hijacked connection whose writes vanish and whose reads block until it
// is closed: the hub's own cost of a delivery without the kernel's.
type discardConn struct {
	closed chan struct{}
	once   sync.Once
	bytes  atomic.Int64
	writes atomic.Int64
	sink   *sink
}

// sink counts what all the connections of a benchmark wrote and wakes the benchmark when
// a target is reached, so that waiting costs no polling.
type sink struct {
	total  atomic.Int64
	target atomic.Int64
	reach  chan struct{}
}

func newSink() *sink {
	s := &sink{reach: make(chan struct{}, 1)}
	s.target.Store(1 << 62)
	return s
}

// wait blocks until total >= want.
func (s *sink) wait(want int64) {
	s.target.Store(want)
	for s.total.Load() < want {
		<-s.reach
	}
	s.target.Store(1 << 62)
}

func newDiscardConn(s *sink) *discardConn { return &discardConn{closed: make(chan struct{}), sink: s} }

func (c *discardConn) Read([]byte) (int, error) { <-c.closed; return 0, io.EOF }
func (c *discardConn) Write(p []byte) (int, error) {
	c.bytes.Add(int64(len(p)))
	c.writes.Add(1)
	if c.sink != nil && c.sink.total.Add(int64(len(p))) >= c.sink.target.Load() {
		select {
		case c.sink.reach <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}
func (c *discardConn) Close() error                     { c.once.Do(func() { close(c.closed) }); return nil }
func (c *discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *discardConn) SetDeadline(time.Time) error      { return nil }
func (c *discardConn) SetReadDeadline(time.Time) error  { return nil }
func (c *discardConn) SetWriteDeadline(time.Time) error { return nil }

// discardRW is a ResponseWriter that hijacks to a discardConn.
type discardRW struct {
	http.ResponseWriter
	conn *discardConn
}

func (w *discardRW) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.conn, bufio.NewReadWriter(bufio.NewReader(w.conn), bufio.NewWriter(w.conn)), nil
}

func benchHub(b *testing.B) *Hub {
	return New(Config{Window: 1024, QueueSize: 1 << 20, ReplayBatch: 256, PingInterval: time.Hour,
		MaxSubs: 64, FlushInterval: -1},
		0, time.Now(), nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// serveTest is a minimal session for the hub's own tests (the session package is above
// the hub): upgrade, join, subscribe to ?room=, read until the connection ends, leave.
func serveTest(h *Hub, w http.ResponseWriter, r *http.Request) {
	t, err := transport.Upgrade(w, r, 10*time.Second)
	if err != nil {
		return
	}
	c, ok := h.Join(t)
	if !ok {
		t.Close(0, "", nil)
		return
	}
	if room := r.URL.Query().Get("room"); room != "" {
		_ = h.Subscribe(c, room, nil)
	}
	go func() {
		for {
			if _, _, err := t.ReadMessage(); err != nil {
				break
			}
		}
		h.Leave(c)
	}()
}

// attachDiscard subscribes n discarding clients to room and returns their connections
// (each holding its handshake bytes only) and a function that disconnects them.
func attachDiscard(b *testing.B, h *Hub, room string, n int) ([]*discardConn, *sink, func()) {
	conns := make([]*discardConn, n)
	snk := newSink()
	var wg sync.WaitGroup
	for i := range conns {
		conns[i] = newDiscardConn(snk)
		req := httptest.NewRequest(http.MethodGet, "/ws?room="+room, nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveTest(h, &discardRW{ResponseWriter: httptest.NewRecorder(), conn: conns[i]}, req)
		}()
	}
	r, _ := h.room(room, time.Now(), false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		k := len(r.subs)
		r.mu.Unlock()
		if k == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d subscribed", k, n)
		}
		time.Sleep(time.Millisecond)
	}
	// Wait for the subscribed frames to be written, then count from zero.
	for _, c := range conns {
		for c.writes.Load() < 2 { // handshake + subscribed frame
			time.Sleep(100 * time.Microsecond)
		}
	}
	for _, c := range conns {
		c.bytes.Store(0)
		c.writes.Store(0)
	}
	snk.total.Store(0)
	return conns, snk, func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}
}

func benchMessages(room string, n int, text string) []chat.Message {
	msgs := make([]chat.Message, n)
	for i := range msgs {
		// Fixed-width seqs keep every frame the same size.
		msgs[i] = chat.Message{ID: fmt.Sprintf("bench-%09d", i), Room: room, Name: "bench", Message: text,
			SentAt: time.Now(), Seq: uint64(1_000_000_000 + i)}
	}
	return msgs
}

func frameLen(m *chat.Message) int64 {
	n := len(m.AppendJSON(nil, "message"))
	switch {
	case n < 126:
		return int64(n + 2)
	case n < 1<<16:
		return int64(n + 4)
	}
	return int64(n + 10)
}

// BenchmarkFanout publishes to one room with 1,000 subscribers whose connections discard
// what they are sent: encode once, enqueue per subscriber, each writer's framing and
// batched write. One op is one message (1,000 deliveries); ns/delivery is the hub's cost
// of one delivery without the kernel. paced waits for each message to reach every
// subscriber before the next (the big-room case: one frame per write); burst publishes
// them all and lets the writers batch (the busy-room case).
func BenchmarkFanout(b *testing.B) {
	for _, mode := range []string{"paced", "burst"} {
		b.Run(mode, func(b *testing.B) {
			const subs = 1000
			h := benchHub(b)
			conns, snk, stop := attachDiscard(b, h, "big", subs)
			defer stop()
			msgs := benchMessages("big", b.N, strings.Repeat("x", 64))
			flen := frameLen(&msgs[0])
			b.ReportAllocs()
			b.ResetTimer()
			for i := range msgs {
				h.Fanout(&msgs[i])
				if mode == "paced" {
					snk.wait(int64(i+1) * flen * subs)
				}
			}
			snk.wait(int64(b.N) * flen * subs)
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subs), "ns/delivery")
			var writes int64
			for _, c := range conns {
				writes += c.writes.Load()
			}
			b.ReportMetric(float64(b.N*subs)/float64(writes), "frames/write")
		})
	}
}

// BenchmarkQueueDrain is one client's queue drained by its writer into batched writes:
// enqueue 64 frames, wait until they are written. One op is one frame.
func BenchmarkQueueDrain(b *testing.B) {
	h := benchHub(b)
	conns, snk, stop := attachDiscard(b, h, "drain", 1)
	defer stop()
	var c *Client
	h.mu.Lock()
	for k := range h.clients {
		c = k
	}
	h.mu.Unlock()
	msgs := benchMessages("drain", 1, strings.Repeat("x", 64))
	raw := messageFrame(&msgs[0])
	flen := frameLen(&msgs[0])
	batch := make([][]byte, 64)
	for i := range batch {
		batch[i] = raw
	}
	b.ReportAllocs()
	b.ResetTimer()
	sent := 0
	for sent < b.N {
		k := min(len(batch), b.N-sent)
		c.Enqueue(batch[:k]...)
		sent += k
		snk.wait(int64(sent) * flen)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/float64(conns[0].writes.Load()), "frames/write")
}

// BenchmarkFanoutLoopback is BenchmarkFanout's paced case over real loopback websockets
// (200 subscribers, read by gorilla clients in this process): what one delivery costs
// with the kernel, client reads included. Here quiet clients get direct non-blocking
// writes from Fanout (the discarding connections above cannot: they always queue).
func BenchmarkFanoutLoopback(b *testing.B) {
	const subs = 200
	h := benchHub(b)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serveTest(h, w, r) }))
	defer srv.Close()
	var got atomic.Int64
	var wg sync.WaitGroup
	clients := make([]*websocket.Conn, subs)
	for i := range clients {
		conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws?room=loop", nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := conn.ReadMessage(); err != nil { // subscribed
			b.Fatal(err)
		}
		clients[i] = conn
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, _, err := conn.NextReader(); err != nil {
					return
				}
				got.Add(1)
			}
		}()
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
		wg.Wait()
	}()
	msgs := benchMessages("loop", b.N, strings.Repeat("x", 64))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range msgs {
		msgs[i].SentAt = time.Now() // not behind: quiet clients get direct writes
		h.Fanout(&msgs[i])
		for got.Load() < int64(i+1)*subs {
			time.Sleep(20 * time.Microsecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subs), "ns/delivery")
}

// BenchmarkFanoutRooms publishes 200-byte messages round-robin into 10,000 rooms without
// subscribers: the per-message cost of the room lookup, the window and its accounting.
// One op is one message.
func BenchmarkFanoutRooms(b *testing.B) {
	h := benchHub(b)
	const rooms = 10000
	names := make([]string, rooms)
	for i := range names {
		names[i] = fmt.Sprintf("room-%05d", i)
	}
	msgs := benchMessages("x", b.N, strings.Repeat("x", 200))
	for i := range msgs {
		msgs[i].Room = names[i%rooms]
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range msgs {
		h.Fanout(&msgs[i])
	}
}
