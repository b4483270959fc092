package hub

import "time"

// RideWait is how long OfferRoom's and EnqueueRoom's frames wait for the room's next
// message at most, when messages are flowing (the room had one within RideRecent); then
// they go on their own.
const (
	RideWait   = 25 * time.Millisecond
	RideRecent = 100 * time.Millisecond
)

// ride is frames waiting to go out with a room's next message: in the same write, after
// it, to each of to. keep: queued for a client that is behind (join and leave frames),
// else dropped for it (typing). Guarded by room.mu.
type ride struct {
	frames [][]byte
	raw    []byte // frames, concatenated
	to     map[*Client]struct{}
	keep   bool
	timer  *time.Timer
}

// OfferRoom offers frames (typing notices) to the clients in to among room's
// subscribers, as Client.Offer does (never queued behind anything: a client that is behind
// does not get them), but sparing each its own write: when the room's messages are
// flowing, the frames ride with the next one, written right after it in the same write
// (at most RideWait later); otherwise, or if no message comes within RideWait, they are
// offered on their own. The message is never held back for them. The hub takes to over.
func (h *Hub) OfferRoom(room string, frames [][]byte, to map[*Client]struct{}, now time.Time) {
	h.rideRoom(room, frames, to, now, false)
}

// EnqueueRoom is OfferRoom for frames every client in to must get (join and leave
// frames): a client that is behind gets them queued (Client.Enqueue), as does one whose
// subscription does not get the next message.
func (h *Hub) EnqueueRoom(room string, frames [][]byte, to map[*Client]struct{}, now time.Time) {
	h.rideRoom(room, frames, to, now, true)
}

// FlushRoom sends room's waiting frames now, on their own: a watcher joining gets its
// presence frame after the join and leave frames the others were sent before.
func (h *Hub) FlushRoom(room string) {
	h.mu.Lock()
	r := h.rooms[room]
	h.mu.Unlock()
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ride != nil {
		r.flushRideLocked(time.Now())
	}
}

func (h *Hub) rideRoom(room string, frames [][]byte, to map[*Client]struct{}, now time.Time, keep bool) {
	if len(frames) == 0 || len(to) == 0 {
		return
	}
	rd := &ride{frames: frames, to: to, keep: keep}
	h.mu.Lock()
	r := h.rooms[room]
	h.mu.Unlock()
	if r == nil {
		rd.sendEach(now)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ride != nil { // the previous ones found no message: they go first, now
		r.flushRideLocked(now)
	}
	if r.dead || now.Sub(r.lastFanout) > RideRecent {
		rd.sendEach(now)
		return
	}
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

// sendEach sends the frames to each recipient on their own.
func (rd *ride) sendEach(now time.Time) {
	for c := range rd.to {
		if rd.keep {
			c.Enqueue(rd.frames...)
		} else {
			c.Offer(rd.frames, now)
		}
	}
}

// flushRideLocked sends the waiting frames on their own. Caller holds r.mu.
func (r *room) flushRideLocked(now time.Time) {
	rd := r.ride
	r.ride = nil
	rd.timer.Stop()
	rd.sendEach(now)
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
// write as f when f is written at once; else queued after f when nothing else waits (as
// Client.Offer) or when they must arrive (keep); dropped otherwise.
func (c *Client) deliverWith(f *frame, both []byte, rd *ride, now time.Time, direct bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	quiet := c.phase == open && c.writer != writerBusy && len(c.queue) == 0 && !c.t.Pending()
	if !direct || !quiet || now.Sub(c.lastWrite) < c.hub.cfg.flushInterval() {
		if quiet || rd.keep {
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

// has reports whether c is one of rd's recipients (rd may be nil).
func (rd *ride) has(c *Client) bool {
	if rd == nil {
		return false
	}
	_, ok := rd.to[c]
	return ok
}
