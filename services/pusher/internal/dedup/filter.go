// Package dedup keeps a message that the CHAT stream holds more than once (one id
// published again without Nats-Msg-Id, or after the duplicate window) from being pushed
// more than once. The rule is history's: the copy with the lowest seq is the message
// (the persister keeps that one), every later copy is dropped, live and in replays.
//
// The node's Filter sits between its feed and its hub. It indexes the explicit ids the
// feed handled recently (id → lowest seq), bounded in bytes, and tracks the index's
// horizon. A copy whose id is indexed with a lower seq is dropped. Ids derived for
// messages published without one are unique by construction. An id that encodes its
// creation time (a ULID, as the api and chat.js generate) inside the index's coverage
// cannot have an earlier copy outside it, so the index alone answers. Any other id asks
// MongoDB, in batches, while the room's later messages wait behind it (other rooms do
// not wait).
//
// Changes to messages (chat.Message with Event set: edited, deleted, reactions) are not
// copies of anything: their ID is the changed message's, so they are never indexed, never
// checked and never dropped. They pass straight through, except that a change queues
// behind a held message of its room like any later message of the room, so each room
// reaches the hub in seq order.
package dedup

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/prometheus/client_golang/prometheus"
)

// Sink receives the filtered stream: per room in seq order. A held message is released
// after later messages of other rooms, so the filter re-advances the sink to the highest
// seq it has seen after each release.
type Sink interface {
	Fanout(m *chat.Message)
	Advance(seq uint64)
	NewEpoch(epoch time.Time)
}

// Store tells which of ids are stored and at which seq (*history.Store).
type Store interface {
	Seqs(ctx context.Context, ids []string) (map[string]uint64, error)
}

// Config tunes the filter.
type Config struct {
	// IndexBytes bounds the id index (default 16 MiB: ~130,000 ULIDs).
	IndexBytes int
	// Skew is the clock difference allowed between whoever made an id (api, browser) and
	// this node (default 5s). A ULID made more than Skew ahead of this node's clock, or
	// less than Skew after the index's horizon, is checked against the store.
	Skew time.Duration
	// CheckTimeout bounds one store check (default 2s). A failed check delivers its
	// messages unchecked and skips the store for Cooldown (default 5s): while MongoDB is
	// unreachable the index alone decides, and nothing waits for it.
	CheckTimeout time.Duration
	Cooldown     time.Duration
	// CheckBatch is the most ids asked in one query (default 256).
	CheckBatch int
}

func (c *Config) defaults() {
	if c.IndexBytes <= 0 {
		c.IndexBytes = 16 << 20
	}
	if c.Skew <= 0 {
		c.Skew = 5 * time.Second
	}
	if c.CheckTimeout <= 0 {
		c.CheckTimeout = 2 * time.Second
	}
	if c.Cooldown <= 0 {
		c.Cooldown = 5 * time.Second
	}
	if c.CheckBatch <= 0 {
		c.CheckBatch = 256
	}
}

// Filter is the node's duplicate filter (a feed.Sink in front of the hub, and the
// backlog's replay filter).
type Filter struct {
	cfg     Config
	sink    Sink
	store   Store // nil: the index alone decides
	log     *slog.Logger
	met     metrics
	now     func() time.Time
	created time.Time     // the index's horizon until Warm moves it back
	wake    chan struct{} // a store check is waiting

	mu      sync.Mutex
	idx     *index
	early   early
	rooms   map[string]*held // rooms with a message waiting for a store check
	pending []*entry         // waiting for a store check, not yet asked
	maxSeq  uint64           // highest seq given to the sink
	coolTil time.Time        // skip the store until then (it failed)
}

// held is a room's queue behind a message waiting for a store check.
type held struct{ q []*entry }

type entry struct {
	m       *chat.Message
	waiting bool // for the store
	drop    bool
}

// New returns a filter that passes what it keeps to sink. It must be created after the
// feed's start seq was read: the index covers every message the feed hands it.
func New(cfg Config, sink Sink, store Store, reg prometheus.Registerer, log *slog.Logger) *Filter {
	cfg.defaults()
	f := &Filter{cfg: cfg, sink: sink, store: store, log: log, now: time.Now, wake: make(chan struct{}, 1),
		rooms: make(map[string]*held)}
	f.created = f.now()
	f.idx = newIndex(cfg.IndexBytes, f.created)
	f.early = early{max: earlyMax}
	f.met = newMetrics(reg, f)
	return f
}

type verdict int

const (
	deliver verdict = iota
	drop
	check
)

// decide applies the rule to a message the feed handed over, in stream order, and
// indexes its id. Caller holds mu.
func (f *Filter) decide(m *chat.Message, now time.Time) verdict {
	if seq, ok := f.idx.get(m.ID); ok {
		if seq < m.Seq {
			return drop // a lower copy came first: delivered, or itself a later copy
		}
		return deliver
	}
	if derived(m.ID, m.Seq) {
		return deliver
	}
	if seq, ok := f.early.get(m.ID); ok && seq < m.Seq {
		return drop
	}
	f.idx.put(m.ID, m.Seq, now)
	if t, ok := createdAt(m.ID); ok {
		if t.After(now.Add(f.cfg.Skew)) {
			// Made "in the future" (a clock ahead): its time proves nothing now, and a later
			// copy could arrive once that time is inside the coverage while this one has left
			// the index. Remember it until the horizon passes its time.
			f.early.put(m.ID, m.Seq, t, f.idx.horizon.Add(f.cfg.Skew))
		} else if !t.Before(f.idx.horizon.Add(f.cfg.Skew)) && f.early.trusts(t, f.idx.horizon.Add(f.cfg.Skew)) {
			// Every copy was stored after t-Skew, i.e. after the horizon: they are indexed
			// (or, made early, in f.early).
			return deliver
		}
	}
	if f.store == nil {
		return deliver
	}
	return check
}

// Fanout implements the feed's Sink.
func (f *Filter) Fanout(m *chat.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := deliver // a change: never a copy (see the package doc)
	if m.Event == "" {
		v = f.decide(m, f.now())
	}
	switch v {
	case drop:
		f.met.dropped.WithLabelValues("live").Inc()
		f.advanceLocked(m.Seq)
	case deliver:
		if h := f.rooms[m.Room]; h != nil {
			h.q = append(h.q, &entry{m: m})
			return
		}
		f.emitLocked(m)
	case check:
		h := f.rooms[m.Room]
		if h == nil {
			h = &held{}
			f.rooms[m.Room] = h
		}
		e := &entry{m: m, waiting: true}
		h.q = append(h.q, e)
		f.pending = append(f.pending, e)
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

// Advance implements the feed's Sink.
func (f *Filter) Advance(seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advanceLocked(seq)
}

// NewEpoch implements the feed's Sink.
func (f *Filter) NewEpoch(epoch time.Time) { f.sink.NewEpoch(epoch) }

func (f *Filter) emitLocked(m *chat.Message) {
	f.sink.Fanout(m)
	if m.Seq > f.maxSeq {
		f.maxSeq = m.Seq
	} else {
		f.sink.Advance(f.maxSeq) // released behind later rooms: keep the head where it was
	}
}

func (f *Filter) advanceLocked(seq uint64) {
	f.maxSeq = max(f.maxSeq, seq)
	f.sink.Advance(f.maxSeq)
}

// releaseLocked passes on each held room's messages up to the first still waiting.
func (f *Filter) releaseLocked() {
	for room, h := range f.rooms {
		i := 0
		for ; i < len(h.q) && !h.q[i].waiting; i++ {
			if e := h.q[i]; e.drop {
				f.met.dropped.WithLabelValues("live").Inc()
				f.advanceLocked(e.m.Seq)
			} else {
				f.emitLocked(e.m)
			}
			h.q[i] = nil
		}
		if h.q = h.q[i:]; len(h.q) == 0 {
			delete(f.rooms, room)
		}
	}
}

// Run asks the store about held messages until ctx ends.
func (f *Filter) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.wake:
		}
		for {
			f.mu.Lock()
			n := min(len(f.pending), f.cfg.CheckBatch)
			batch := f.pending[:n:n]
			f.pending = f.pending[n:]
			if len(f.pending) == 0 {
				f.pending = nil
			}
			f.mu.Unlock()
			if n == 0 {
				break
			}
			msgs := make([]*chat.Message, n)
			for i, e := range batch {
				msgs[i] = e.m
			}
			keep := f.later(ctx, msgs)
			f.mu.Lock()
			for i, e := range batch {
				e.waiting, e.drop = false, !keep[i]
			}
			f.releaseLocked()
			f.mu.Unlock()
		}
	}
}

// later asks the store which of msgs are later copies of a stored message: keep[i] is
// false for those. When the store cannot answer (or failed within Cooldown), all are
// kept: delivering a possible duplicate while MongoDB is down beats stalling the room.
func (f *Filter) later(ctx context.Context, msgs []*chat.Message) (keep []bool) {
	keep = make([]bool, len(msgs))
	for i := range keep {
		keep[i] = true
	}
	f.mu.Lock()
	cooling := f.now().Before(f.coolTil)
	f.mu.Unlock()
	if f.store == nil || cooling {
		f.met.checks.WithLabelValues("skipped").Inc()
		return keep
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	cctx, cancel := context.WithTimeout(ctx, f.cfg.CheckTimeout)
	stored, err := f.store.Seqs(cctx, ids)
	cancel()
	if err != nil {
		f.met.checks.WithLabelValues("error").Inc()
		f.log.Warn("duplicate check: store unavailable; delivering unchecked", "ids", len(ids), "error", err)
		f.mu.Lock()
		f.coolTil = f.now().Add(f.cfg.Cooldown)
		f.mu.Unlock()
		return keep
	}
	f.met.checks.WithLabelValues("ok").Inc()
	for i, m := range msgs {
		if seq, ok := stored[m.ID]; ok && seq < m.Seq {
			keep[i] = false
		}
	}
	return keep
}

// Replay filters a batch of a JetStream replay (oldest first): a message whose id is
// indexed, earlier in the batch or stored with a lower seq is dropped; changes pass. One
// store query per batch.
func (f *Filter) Replay(ctx context.Context, msgs []chat.Message) []chat.Message {
	if len(msgs) == 0 {
		return msgs
	}
	seen := make(map[string]bool, len(msgs))
	var ask []*chat.Message
	cand := make([]bool, len(msgs))
	f.mu.Lock()
	for i := range msgs {
		m := &msgs[i]
		if m.Event != "" {
			cand[i] = true // a change: its ID is its message's, it is no copy of it
			continue
		}
		if seq, ok := f.idx.get(m.ID); ok && seq < m.Seq || seen[m.ID] {
			continue
		}
		if seq, ok := f.early.get(m.ID); ok && seq < m.Seq {
			continue
		}
		seen[m.ID] = true
		cand[i] = true
		if !derived(m.ID, m.Seq) {
			ask = append(ask, m)
		}
	}
	f.mu.Unlock()
	drops := map[*chat.Message]bool{}
	if len(ask) > 0 {
		keep := f.later(ctx, ask)
		for i, m := range ask {
			if !keep[i] {
				drops[m] = true
			}
		}
	}
	out := msgs[:0]
	for i := range msgs {
		if cand[i] && !drops[&msgs[i]] {
			out = append(out, msgs[i])
		} else {
			f.met.dropped.WithLabelValues("replay").Inc()
		}
	}
	return out
}
