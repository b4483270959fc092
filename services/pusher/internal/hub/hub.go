// Package hub is the pusher's in-process fan-out: rooms with their subscribers and a
// window of recent frames (room.go), clients with bounded queues and a writer that runs
// only while there is something to write (client.go; their lifecycle in lifecycle.go),
// and resumes that replay what a client missed (from the window, else from an older
// source) before switching it to live delivery with no gap and no duplicate (replay.go).
// The rooms and their windows share one byte budget; rooms without subscribers leave
// memory when idle or when the budget needs it, and come back with a floor that keeps
// resumes exact (budget.go). A change to a message (chat.Message with Event set: edited,
// deleted, reactions) is to the hub what a message is: an event of its room with its own
// seq, encoded once into its frame, kept in the window and replayed alike.
//
// The hub knows nothing of HTTP, websocket libraries or authentication: the session
// package (one connection's protocol) joins clients, subscribes them and ends them; each
// client writes through a Transport (the transport package's socket).
//
// Lock order: Hub.mu → room.mu → Client.mu → the transport's write lock; the ping wheel's
// lock before Client.mu (ping.go). Hub.mu takes a
// room's lock only with TryLock (an eviction pass, budget.go), so it never waits on a room. The fan-out (Fanout) holds a room's
// lock, takes each subscriber's client lock once, and only TryLocks the transport's write
// lock (a non-blocking write, or the queue): it never waits on a socket.
package hub

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/prometheus/client_golang/prometheus"
)

// Config tunes the hub.
type Config struct {
	Window       int           // recent frames kept per room for resumes
	QueueSize    int           // frames a client may have queued before it is evicted
	ReplayBatch  int           // messages fetched per step of a replay from the backlog
	PingInterval time.Duration // websocket ping period
	MaxSubs      int           // subscriptions per socket
	CloseSpread  time.Duration // shutdown closes clients spread over this window
	// FlushInterval paces busy clients: a client gets up to writeBudget (4) writes per
	// interval at once; beyond that it is busy and gets one write per interval, the
	// frames queued meanwhile going out together, until its rate falls (client.go). A
	// client receiving up to 800 frames/s (at 5 ms) sees no delay. 0:
	// DefaultFlushInterval; negative: off.
	FlushInterval time.Duration
	// WindowBytes is the budget the rooms and their windows share (0: DefaultWindowBytes);
	// RoomIdle is how long a room without subscribers stays after its last publish or
	// subscribe (0: DefaultRoomIdle; negative: until the budget needs it). See budget.go.
	WindowBytes int64
	RoomIdle    time.Duration
	// Presence is told of subscriptions and typing notices (presence.go); nil: none.
	Presence Presence
}

// behindAfter: a message published longer ago than this is fanned out through the queues
// only (see Fanout). With a clock skew between the api and the pusher larger than this,
// messages always take the queues: slower for sparse traffic, never wrong.
const behindAfter = 10 * time.Millisecond

// DefaultFlushInterval bounds a busy client (over 800 frames/s) to 200 writes a second
// (one frame per write costs the pusher several times more CPU than a batch), adding at
// most 5 ms of latency to it. Measured on one core: 2 ms cost 2.25 CPU-s per million
// deliveries in a 200 x 1,000 msgs/s room, 5 ms 1.45.
const DefaultFlushInterval = 5 * time.Millisecond

func (c Config) flushInterval() time.Duration {
	switch {
	case c.FlushInterval == 0:
		return DefaultFlushInterval
	case c.FlushInterval < 0:
		return 0
	}
	return c.FlushInterval
}

// Backlog serves messages older than a room's window: JetStream, then MongoDB.
type Backlog interface {
	// Fetch returns up to max messages and changes of room with after < seq <= upTo,
	// oldest first, and next: the range (after, next] is fully covered by what it
	// returned, so the caller continues after next. next > after unless err != nil.
	Fetch(ctx context.Context, room string, after, upTo uint64, max int) (msgs []chat.Message, next uint64, err error)
	// LastSeq is the stream's last seq (to tell a cursor from a lagging node's head
	// apart from one beyond the stream).
	LastSeq(ctx context.Context) (uint64, error)
}

type metrics struct {
	connections   prometheus.Gauge
	subscriptions prometheus.Gauge
	deliveries    prometheus.Counter
	evictions     prometheus.Counter
	replays       *prometheus.CounterVec
	roomEvictions *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		connections:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "chat_pusher_connections", Help: "Open websocket connections."}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "chat_pusher_subscriptions", Help: "Active room subscriptions."}),
		deliveries:    prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_pusher_frames_sent_total", Help: "Websocket frames written to clients."}),
		evictions:     prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_pusher_evictions_total", Help: "Slow clients closed with 1013."}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_pusher_replays_total",
			Help: "Resumes by where they were served from (window: memory; backlog: JetStream/MongoDB)."}, []string{"source"}),
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.subscriptions, m.deliveries, m.evictions, m.replays)
	}
	return m
}

// Close codes from the contract that the hub sends.
const (
	CloseServiceRestart = 1012 // pusher shutting down: reconnect elsewhere and resume
	CloseTryAgainLater  = 1013 // slow consumer evicted: reconnect and resume
	CloseInternal       = 1011 // a resume could not be served
)

// Hub routes messages from the node's feed to the subscribers of their room.
type Hub struct {
	cfg     Config
	backlog Backlog
	log     *slog.Logger
	metrics metrics
	start   uint64        // the feed delivers every message with seq > start
	head    atomic.Uint64 // highest seq the feed has handled
	epoch   atomic.Value  // string: chat.EpochID of the stream

	budget  int64        // cfg.windowBytes()
	used    atomic.Int64 // what the rooms cost (sum of room.bytes)
	retryAt atomic.Int64 // no eviction pass before used reaches it (budget.go)

	mu        sync.Mutex
	rooms     map[string]*room
	front     *room  // most recently used room
	back      *room  // least recently used room
	floorMark uint64 // floor of a new room: start, or the highest seq an evicted room held
	peakRooms int    // most rooms the map held since it was last rebuilt
	clients   map[*Client]struct{}
	closing   bool

	pings *pingWheel // every client's next ping (ping.go)
}

// New returns a hub whose feed delivers every message after seq start of the stream
// created at epoch.
func New(cfg Config, start uint64, epoch time.Time, backlog Backlog, reg prometheus.Registerer, log *slog.Logger) *Hub {
	h := &Hub{cfg: cfg, backlog: backlog, log: log, metrics: newMetrics(reg), start: start,
		budget: cfg.windowBytes(), floorMark: start, rooms: make(map[string]*room), clients: make(map[*Client]struct{}),
		pings: newPingWheel(cfg.PingInterval)}
	h.registerBudgetMetrics(reg)
	h.head.Store(start)
	h.epoch.Store(chat.EpochID(epoch))
	return h
}

// NewEpoch records that the stream was recreated and closes every client with 1012: they
// reconnect, resume with since (seqs continue across the recreation) and see the new
// epoch in their subscribed frames. Messages the lost stream had not persisted are gone;
// the epoch change is how clients learn that a gap may exist.
func (h *Hub) NewEpoch(epoch time.Time) {
	h.epoch.Store(chat.EpochID(epoch))
	clients := h.clientList()
	for _, c := range clients {
		c.Close(CloseServiceRestart, "stream recreated, resume with since")
	}
}

// Head is the highest stream seq the hub has handled.
func (h *Hub) Head() uint64 { return h.head.Load() }

// Fanout fans m out to its room. The feed calls it in stream order.
func (h *Hub) Fanout(m *chat.Message) {
	f := &frame{seq: m.Seq, raw: messageFrame(m)} // encoded once for every client
	now := time.Now()
	// Writing straight to quiet clients is the cheapest delivery for sparse traffic, but it
	// is one syscall per frame from this one goroutine. When the node is behind (the
	// message was sent a while ago), queue instead: the writers then batch what piles up.
	direct := now.Sub(m.SentAt) < behindAfter
	inline := 0
	r, _ := h.lockRoom(m.Room, now, false) // never refused to a publish
	h.used.Add(r.add(f, h.cfg.Window))
	r.lastFanout = now
	rd, both := r.takeRide(f)
	for _, s := range r.subs {
		if s.live && f.seq > s.lastSent {
			s.lastSent = f.seq
			var written bool
			if rd.has(s.c) {
				written = s.c.deliverWith(f, both, rd, now, direct)
				delete(rd.to, s.c)
			} else {
				written = s.c.deliver(f, now, direct)
			}
			if written {
				inline++
			}
		}
	}
	if rd != nil && rd.keep {
		rd.sendEach(now) // those whose subscription did not get f (replaying) get them queued
	}
	r.mu.Unlock()
	if inline > 0 {
		h.metrics.deliveries.Add(float64(inline))
	}
	h.head.Store(m.Seq)
	h.maybeEvict()
}

// Advance records that the feed handled seq without a message to deliver (an invalid
// payload, which the persister dead-letters).
func (h *Hub) Advance(seq uint64) { h.head.Store(seq) }

// Closing reports whether the hub is shutting down (it refuses new clients).
func (h *Hub) Closing() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closing
}

// Join makes a client writing through t; false when the hub is shutting down (the
// caller then closes t). The caller reads the client's commands and calls Leave when it
// stops reading.
func (h *Hub) Join(t Transport) (*Client, bool) {
	c := newClient(h, t)
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		h.pings.unschedule(c)
		return nil, false
	}
	h.clients[c] = struct{}{}
	h.mu.Unlock()
	h.metrics.connections.Inc()
	return c, true
}

// Leave ends a client whose reader stopped: the writer closes the connection (sending
// the close frame asked for, if any), its subscriptions end, and Leave returns once the
// connection is closed.
func (h *Hub) Leave(c *Client) {
	c.readerEnded()
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
	h.metrics.connections.Dec()
	for _, s := range c.takeSubs() {
		h.unsubscribe(s)
	}
	<-c.Done()
}

// clientList is a snapshot of the registered clients, to act on without Hub.mu.
func (h *Hub) clientList() []*Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	clients := make([]*Client, 0, len(h.clients))
	for c := range h.clients {
		clients = append(clients, c)
	}
	return clients
}

// QueueDepths sums the client queues and finds the longest.
func (h *Hub) QueueDepths() (sum, longest int) {
	clients := h.clientList()
	for _, c := range clients {
		n := c.queued()
		sum += n
		longest = max(longest, n)
	}
	return sum, longest
}

// Connections is the number of registered clients.
func (h *Hub) Connections() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

// Shutdown refuses new clients and closes the existing ones with 1012, spread over
// cfg.CloseSpread so they do not all reconnect elsewhere at the same instant. It returns
// when every connection is closed or ctx ends.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing = true
	h.mu.Unlock()
	clients := h.clientList()
	var step time.Duration
	if len(clients) > 1 && h.cfg.CloseSpread > 0 {
		step = h.cfg.CloseSpread / time.Duration(len(clients))
	}
	for i, c := range clients {
		if step > 0 && i > 0 {
			select {
			case <-time.After(step):
			case <-ctx.Done():
				step = 0
			}
		}
		c.Close(CloseServiceRestart, "server shutting down")
	}
	for _, c := range clients {
		select {
		case <-c.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
