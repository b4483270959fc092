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
	if !c.mayWriteLocked(now) {
		return c.enqueueLocked(frames...)
	}
	for i, f := range frames {
		n := c.t.TryWrite(f, now)
		if n > 0 {
			c.wroteLocked(now, 1)
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
