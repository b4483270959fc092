package hub

import (
	"time"
)

// Presence is told of every subscription that starts and ends on this node, and of the
// typing notices of subscribed clients (issue 12). It sends presence, join, leave and
// typing frames through the clients (Client.Enqueue, Client.Offer) and must not block on
// them. Config.Presence nil: no presence.
type Presence interface {
	// Join is called once a subscription of c to room is registered (after its subscribed
	// frame was queued), Leave once when it ends; both from c's reader goroutine.
	Join(room string, c *Client, m Member)
	Leave(room string, c *Client, m Member)
	// Typing forwards that m typed in room (m.Name is never "").
	Typing(room string, c *Client, m Member)
}

// Member is who a subscription is in presence: Name ("" anonymous) and whether it asked
// for presence and typing frames (Watch).
type Member struct {
	Name  string
	Watch bool
}

// TypingEvery is the least time between two typing notices of one subscription that are
// forwarded; those in between are dropped.
const TypingEvery = 2 * time.Second

// Typing forwards a typing notice of c in room to the room's other watchers on every
// node: errNotSubscribed when c is not subscribed to room. Anonymous subscriptions' and
// too frequent notices are dropped silently.
func (h *Hub) Typing(c *Client, room string, now time.Time) error {
	c.mu.Lock()
	var s *sub
	for _, o := range c.subs {
		if o.room.name == room {
			s = o
			break
		}
	}
	if s == nil {
		c.mu.Unlock()
		return errNotSubscribed
	}
	m := s.member
	forward := m.Name != "" && h.cfg.Presence != nil && s.joined && now.Sub(s.lastTyping) >= TypingEvery
	if forward {
		s.lastTyping = now
	}
	c.mu.Unlock()
	if forward {
		h.cfg.Presence.Typing(room, c, m)
	}
	return nil
}

// Hub is the hub c belongs to.
func (c *Client) Hub() *Hub { return c.hub }

// Offer queues frames for c only if nothing is waiting to be written to it (its queue is
// empty and no batch is being written), else drops them and returns false: frames that
// are worth something only now (typing notices) are never queued behind others. A quiet
// client gets them with a direct write, as the fan-out does.
func (c *Client) Offer(frames [][]byte, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.phase != open || c.writer == writerBusy || len(c.queue) > 0 || c.t.Pending() {
		return false
	}
	if now.Sub(c.lastWrite) < c.hub.cfg.flushInterval() {
		return c.enqueueLocked(frames...)
	}
	for i, f := range frames {
		n := c.t.TryWrite(f, now)
		if n > 0 {
			c.lastWrite = now
		}
		switch {
		case n == len(f):
			continue
		case n > 0:
			c.wakeLocked() // the writer sends the tail, then the rest
			return c.enqueueLocked(frames[i+1:]...)
		default:
			return c.enqueueLocked(frames[i:]...)
		}
	}
	if c.pingDue.Load() {
		c.wakeLocked()
	}
	c.hub.metrics.deliveries.Add(float64(len(frames)))
	return true
}

// RideWait is how long OfferRoom's frames wait for the room's next message at most, when
// messages are flowing (the room had one within RideRecent); then they go on their own.
const (
	RideWait   = 25 * time.Millisecond
	RideRecent = 100 * time.Millisecond
)

// ride is frames waiting to go out with a room's next message: in the same write, after
// it, to each of to. Guarded by room.mu.
type ride struct {
	frames [][]byte
	raw    []byte // frames, concatenated
	to     map[*Client]struct{}
	timer  *time.Timer
}

// OfferRoom offers frames (typing notices) to the clients in to among room's
// subscribers, as Client.Offer does (never queued behind anything: a client that is behind
// does not get them), but sparing the syscall each: when the room's messages are flowing,
// the frames ride with the next one, written right after it in the same write (at most
// RideWait later); otherwise, or if no message comes within RideWait, they are offered on
// their own. The message is never held back for them. to is the caller's: not kept after
// the frames went out, not changed meanwhile.
func (h *Hub) OfferRoom(room string, frames [][]byte, to map[*Client]struct{}, now time.Time) {
	if len(frames) == 0 || len(to) == 0 {
		return
	}
	h.mu.Lock()
	r := h.rooms[room]
	h.mu.Unlock()
	if r == nil {
		offerEach(frames, to, now)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead || now.Sub(r.lastFanout) > RideRecent {
		offerEach(frames, to, now)
		return
	}
	if r.ride != nil { // the previous ones found no message: they go now
		r.flushRideLocked(time.Now())
	}
	rd := &ride{frames: frames, to: to}
	for _, f := range frames {
		rd.raw = append(rd.raw, f...)
	}
	rd.timer = time.AfterFunc(RideWait, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.ride == rd {
			r.flushRideLocked(time.Now())
		}
	})
	r.ride = rd
}

// has reports whether c is one of rd's recipients (rd may be nil). A recipient whose
// subscription does not get this message (it is still replaying) misses the frames: it is
// behind.
func (rd *ride) has(c *Client) bool {
	if rd == nil {
		return false
	}
	_, ok := rd.to[c]
	return ok
}

func offerEach(frames [][]byte, to map[*Client]struct{}, now time.Time) {
	for c := range to {
		c.Offer(frames, now)
	}
}

// flushRideLocked offers the waiting frames on their own. Caller holds r.mu.
func (r *room) flushRideLocked(now time.Time) {
	rd := r.ride
	r.ride = nil
	rd.timer.Stop()
	offerEach(rd.frames, rd.to, now)
}

// takeRide returns the frames waiting for this message, if any, and f's bytes followed by
// theirs. Caller holds r.mu.
func (r *room) takeRide(f *frame) (*ride, []byte) {
	rd := r.ride
	if rd == nil {
		return nil, nil
	}
	r.ride = nil
	rd.timer.Stop()
	both := make([]byte, 0, len(f.raw)+len(rd.raw))
	return rd, append(append(both, f.raw...), rd.raw...)
}

// deliverWith is deliver for a client that also gets the ride's frames: in the same
// write as f when f is written at once; queued after f only when nothing else waits (as
// Client.Offer); dropped otherwise.
func (c *Client) deliverWith(f *frame, both []byte, rd *ride, now time.Time, direct bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	quiet := c.phase == open && c.writer != writerBusy && len(c.queue) == 0 && !c.t.Pending()
	if !direct || !quiet || now.Sub(c.lastWrite) < c.hub.cfg.flushInterval() {
		if quiet {
			c.enqueueLocked(append([][]byte{f.raw}, rd.frames...)...)
		} else {
			c.enqueueLocked(f.raw)
		}
		return false
	}
	n := c.t.TryWrite(both, now)
	switch {
	case n == len(both):
		c.lastWrite = now
		c.hub.metrics.deliveries.Add(float64(len(rd.frames)))
		if c.pingDue.Load() {
			c.wakeLocked()
		}
	case n > 0:
		c.lastWrite = now
		c.wakeLocked() // the writer sends the tail
	default:
		c.enqueueLocked(append([][]byte{f.raw}, rd.frames...)...)
	}
	return n > 0
}
