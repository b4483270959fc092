package hub

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/services/pusher/internal/transport"
)

// sub is one client's subscription to one room. While it replays, live frames are not
// queued for it (live == false); the room's window holds them, and the replay switches
// the subscription to live under the room lock once it has caught up with the window.
// lastSent is the seq of the last message queued for it: nothing at or below it is queued
// again, which is what makes the replay→live seam gap-free and duplicate-free.
type sub struct {
	c      *Client
	room   *room
	cancel context.CancelFunc // stops a backlog replay; nil when there is none

	// guarded by room.mu once registered in room.subs
	idx      int // index in room.subs; -1 when not registered
	live     bool
	lastSent uint64

	member     Member    // who it is in presence
	joined     bool      // Presence.Join was called (by c's reader, like unsubscribe)
	lastTyping time.Time // guarded by Client.mu: the last typing notice forwarded
}

// The errors of Subscribe and Unsubscribe; their texts are the error frames' reasons.
var (
	errAlreadySubscribed = errors.New("already subscribed")
	errTooManySubs       = errors.New("too many subscriptions on this socket")
	errNotSubscribed     = errors.New("not subscribed")
)

// Subscribe subscribes c to room. since == nil: live messages only. Otherwise every
// message with seq > *since exactly once, then live. The subscribed frame goes out first.
// The room must be valid (chat.ValidRoom).
func (h *Hub) Subscribe(c *Client, name string, since *uint64) error {
	return h.SubscribeAs(c, name, since, Member{})
}

// SubscribeAs is Subscribe for member m: once subscribed (its subscribed frame queued),
// the subscription joins the room's presence (Config.Presence).
func (h *Hub) SubscribeAs(c *Client, name string, since *uint64, m Member) error {
	s, err := h.subscribe(c, name, since, m)
	if err != nil || s == nil || h.cfg.Presence == nil {
		return err
	}
	s.joined = true
	h.cfg.Presence.Join(name, c, m)
	return nil
}

// subscribe registers the subscription; nil, nil when c is closing.
func (h *Hub) subscribe(c *Client, name string, since *uint64, m Member) (*sub, error) {
	r, err := h.room(name, time.Now(), true)
	if err != nil {
		return nil, err
	}
	s := &sub{c: c, room: r, idx: -1, member: m}
	if err := c.addSub(s, h.cfg.MaxSubs); err != nil {
		return nil, err
	}
	h.metrics.subscriptions.Inc()

	// The subscribed frame carries the stream's latest seq, asked after this subscribe
	// began (the backlog coalesces concurrent asks), so it covers every message
	// acknowledged before; without since, live delivery starts right after it. A cursor
	// past it is beyond the stream ("live from now"); one past this node's head only is
	// from a node whose feed is ahead (this one still delivers up to it: not again).
	last := h.head.Load() // the best this node knows
	err = errors.New("no backlog")
	if h.backlog != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		last, err = h.backlog.LastSeq(ctx)
		cancel()
	}
	beyond := since != nil && err == nil && *since > last

	// The room has no subscriber of ours yet: it may have been evicted meanwhile. Look it
	// up again (the one reader goroutine of c calls Subscribe, Unsubscribe and Leave, so
	// nothing else reads s.room yet).
	if r, err = h.lockRoom(name, time.Now(), true); err != nil {
		c.removeSub(name)
		h.metrics.subscriptions.Dec()
		return nil, err
	}
	s.room = r
	defer r.mu.Unlock()
	last = max(last, h.head.Load())
	if !c.Enqueue(subscribedFrame(name, last, h.epoch.Load().(string))) {
		return nil, nil // closing
	}
	r.addSub(s)
	switch {
	case since == nil:
		s.live, s.lastSent = true, max(r.last, last)
	case *since >= r.floor:
		// The window holds everything after since: queue it and go live, atomically with
		// respect to the feed (both under r.mu).
		h.metrics.replays.WithLabelValues("window").Inc()
		s.live, s.lastSent = true, r.last
		if !beyond {
			s.lastSent = max(r.last, *since)
		}
		if frames := r.after(*since); len(frames) > 0 {
			c.Enqueue(frames...)
		}
	default:
		h.metrics.replays.WithLabelValues("backlog").Inc()
		s.lastSent = *since
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		go h.replay(ctx, s)
	}
	return s, nil
}

// Unsubscribe ends c's subscription to room.
func (h *Hub) Unsubscribe(c *Client, room string) error {
	s := c.removeSub(room)
	if s == nil {
		return errNotSubscribed
	}
	h.unsubscribe(s)
	return nil
}

// unsubscribe removes s from its room and stops its replay.
func (h *Hub) unsubscribe(s *sub) {
	s.room.mu.Lock()
	s.room.removeSub(s)
	cancel := s.cancel
	s.room.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	h.metrics.subscriptions.Dec()
	if s.joined {
		s.joined = false
		h.cfg.Presence.Leave(s.room.name, s.c, s.member)
	}
}

// replay feeds s from the backlog in bounded batches (waiting while the client's queue
// is half full, so a large backlog neither floods memory nor starves the client's other
// rooms) until it reaches the room's window, then queues the window's rest and goes live.
func (h *Hub) replay(ctx context.Context, s *sub) {
	r, c := s.room, s.c
	for {
		r.mu.Lock()
		if s.lastSent >= r.floor {
			if frames := r.after(s.lastSent); len(frames) == 0 || c.Enqueue(frames...) {
				s.live = true
				s.lastSent = max(s.lastSent, r.last)
			}
			r.mu.Unlock()
			return
		}
		upTo := r.floor
		r.mu.Unlock()

		if !c.waitRoom(h.cfg.QueueSize/2, ctx.Done()) {
			return
		}
		msgs, next, err := h.fetch(ctx, r.name, s.lastSent, upTo)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Error("replay", "room", r.name, "after", s.lastSent, "error", err)
				c.Close(CloseInternal, "resume failed, reconnect and resume again")
			}
			return
		}
		if len(msgs) > 0 {
			raws := make([][]byte, len(msgs))
			for i := range msgs {
				raws[i] = messageFrame(&msgs[i])
			}
			if !c.Enqueue(raws...) {
				return
			}
		}
		s.lastSent = next
	}
}

// fetch asks the backlog for the next batch, retrying briefly on errors (e.g. NATS
// reconnecting) before giving up.
func (h *Hub) fetch(ctx context.Context, room string, after, upTo uint64) ([]chat.Message, uint64, error) {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var msgs []chat.Message
		var next uint64
		msgs, next, err = h.backlog.Fetch(fctx, room, after, upTo, h.cfg.ReplayBatch)
		cancel()
		if err == nil {
			if next <= after {
				return nil, 0, errors.New("backlog made no progress")
			}
			return msgs, next, nil
		}
		select {
		case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	return nil, 0, err
}

func subscribedFrame(room string, seq uint64, epoch string) []byte {
	b := append([]byte(`{"type":"subscribed","room":"`), room...)
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"epoch":"`...)
	b = append(b, epoch...)
	b = append(b, `"}`...)
	return transport.TextFrame(b)
}
