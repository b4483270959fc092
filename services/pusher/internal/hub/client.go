package hub

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Transport is a client's socket (transport.Conn): the hub writes frames through it and
// closes it, nothing else.
type Transport interface {
	// TryWrite writes a complete frame now if that needs no waiting and returns the
	// bytes written: 0, queue it; fewer than len(frame), the rest is Pending.
	TryWrite(frame []byte, now time.Time) int
	// Pending reports whether the tail of a frame TryWrite began waits to be written.
	Pending() bool
	// WriteMany writes the pending tail, frames and, when ping is set, a ping, in one write.
	WriteMany(frames [][]byte, ping bool) error
	// Close sends a close frame with code (none when 0), waits for wait (at most a
	// second; nil: not at all) and closes the socket.
	Close(code int, text string, wait <-chan struct{})
}

// Client is one websocket connection as the hub sees it. The hub and replays put frames
// on its bounded queue; a writer goroutine, started only while there is something to
// write, drains everything queued into one write. An idle connection has no writer. A
// client whose queue overflows is evicted (1013) instead of slowing its rooms. Its phase
// and its writer's state are in lifecycle.go.
type Client struct {
	hub *Hub
	t   Transport

	// The small fields are packed together: the struct fits the 192-byte size class.
	pingDue  atomic.Bool // set by the hub's ping wheel (ping.go): the writer sends a ping
	pingSlot int32       // where the client waits in the ping wheel (-1: not there); pingWheel.mu
	pingIdx  int32

	mu        sync.Mutex
	phase     phase
	writer    writerState
	credit    int8     // writes a quiet client may still make at once (writeBudget)
	busy      bool     // over writeBudget: one write per flush interval (writeBudget)
	queue     [][]byte // complete server frames
	spare     [][]byte
	closeCode int
	closeText string
	lastWrite time.Time // when frames last went out
	subs      []*sub    // a few at most (MaxSubs); changed only by addSub, removeSub, takeSubs

	drained  chan struct{} // made by the first waitRoom: the writer wrote a batch
	readDone chan struct{} // made by a closing writer that waits for the reader's end
	done     chan struct{} // made by the first Done: closed once the connection is closed
}

func newClient(h *Hub, t Transport) *Client {
	c := &Client{hub: h, t: t, pingSlot: -1, pingIdx: -1}
	// The first ping comes after a random half to whole interval, so that clients that
	// connected together (after a restart, say) are not all pinged at the same instant.
	first := h.cfg.PingInterval
	if half := first / 2; half > 0 {
		first = half + rand.N(half)
	}
	h.pings.schedule(c, first)
	return c
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// addSub records s, unless the client has a subscription to its room or max of them.
func (c *Client) addSub(s *sub, max int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if slices.ContainsFunc(c.subs, func(o *sub) bool { return o.room == s.room }) {
		return errAlreadySubscribed
	}
	if len(c.subs) >= max {
		return errTooManySubs
	}
	c.subs = append(c.subs, s)
	return nil
}

// removeSub forgets the subscription to room and returns it (nil if none).
func (c *Client) removeSub(room string) *sub {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.IndexFunc(c.subs, func(s *sub) bool { return s.room.name == room })
	if i < 0 {
		return nil
	}
	s := c.subs[i]
	c.subs = slices.Delete(c.subs, i, i+1)
	return s
}

// takeSubs forgets every subscription and returns them.
func (c *Client) takeSubs() []*sub {
	c.mu.Lock()
	defer c.mu.Unlock()
	subs := c.subs
	c.subs = nil
	return subs
}

// Enqueue queues frames (complete server frames); false when the client is closing. A
// full queue evicts the client.
func (c *Client) Enqueue(frames ...[]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enqueueLocked(frames...)
}

func (c *Client) enqueueLocked(frames ...[]byte) bool {
	if c.phase != open {
		return false
	}
	if len(c.queue)+len(frames) > c.hub.cfg.QueueSize {
		c.closeLocked(CloseTryAgainLater, "slow consumer")
		c.hub.metrics.evictions.Inc()
		return false
	}
	c.queue = append(c.queue, frames...)
	c.wakeLocked()
	return true
}

// writeBudget is how many writes per flush interval a client gets at once, one frame
// each: a client receiving up to that rate (800 frames/s at 5 ms) sees no added latency.
// A frame beyond it makes the client busy: from then on its frames are queued and go
// out in one write per interval, as a busy room's clients need to stay cheap. It is quiet
// again when a write carries fewer than quietBelow frames (its rate fell well below the
// budget) or an interval passes without a write. The credit refills at writeBudget per
// interval.
const writeBudget = 4

// quietBelow: a busy client whose write carried fewer frames than this (its rate fell
// under 3 per interval, 600/s at 5 ms) is quiet again. Below writeBudget, so that a
// client near the budget does not flip between the two on every write.
const quietBelow = writeBudget - 1

// mayWriteLocked reports whether a frame may be written at once, and marks the client
// busy when not. Caller holds mu.
func (c *Client) mayWriteLocked(now time.Time) bool {
	gap := c.hub.cfg.flushInterval()
	if gap <= 0 {
		return true
	}
	since := now.Sub(c.lastWrite)
	switch {
	case since >= gap:
		c.busy, c.credit = false, writeBudget
	case c.busy:
		return false
	case since > 0:
		c.credit = int8(min(writeBudget, int64(c.credit)+int64(since)*writeBudget/int64(gap)))
	}
	if c.credit > 0 {
		return true
	}
	c.busy = true
	return false
}

// wroteLocked records a write of n frames at t. Caller holds mu.
func (c *Client) wroteLocked(t time.Time, n int) {
	c.lastWrite = t
	switch {
	case c.busy && n < quietBelow:
		c.busy, c.credit = false, writeBudget
	case c.credit > 0:
		c.credit--
	}
}

// deliver hands f to the client (the hub's fan-out, under the room lock), and reports
// whether it was written right away. When direct, a client with nothing queued or being
// written, within its write budget, gets f with one non-blocking write: no writer
// goroutine to start, which is most of the cost of a delivery to a quiet client. The
// rest (busy, slow, or a socket buffer full) goes through the queue and the writer.
// The non-blocking write happens under mu: it cannot wait, and the writer, which checks
// for work under mu, then never sees a half-done delivery.
func (c *Client) deliver(f *frame, now time.Time, direct bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !direct {
		c.busy = true // the node is behind: batch as much as possible
	}
	if !direct || c.phase != open || c.writer == writerBusy || len(c.queue) > 0 || !c.mayWriteLocked(now) {
		c.enqueueLocked(f.raw)
		return false
	}
	n := c.t.TryWrite(f.raw, now)
	switch {
	case n == len(f.raw):
		c.wroteLocked(now, 1)
		if c.pingDue.Load() {
			c.wakeLocked()
		}
	case n > 0:
		c.wroteLocked(now, 1)
		c.wakeLocked() // the writer sends the tail
	default:
		// Nothing written (socket buffer full, or the connection broke: the writer's flush
		// then fails and closes it): the writer sends f.
		c.enqueueLocked(f.raw)
	}
	return n > 0
}

// queued is how many frames wait to be written.
func (c *Client) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// writeLoop is the only writer of queued frames. It runs while there is something to
// write and returns one flush interval after there is not. It ends the connection after
// a write error, a requested close or the end of the reader.
func (c *Client) writeLoop() {
	gap := c.hub.cfg.flushInterval()
	idle := false // the previous pass found nothing to write
	for {
		c.mu.Lock()
		if c.phase == readerGone {
			// The reader is gone; a close asked for just before still goes out, so the
			// peer learns why (e.g. 1008 after a binary frame), not just a dropped socket.
			code, text := c.closeCode, c.closeText
			c.mu.Unlock()
			c.end(code, text, nil)
			return
		}
		if c.phase == open && len(c.queue) == 0 && !c.pingDue.Load() && !c.t.Pending() {
			if idle || gap <= 0 {
				// Going idle: the queue's arrays go too (a busy client's writer lingers and
				// keeps them; an idle one would hold them for nothing).
				c.queue, c.spare = nil, nil
				c.stopWriterLocked()
				c.mu.Unlock()
				return
			}
			// A busy client's next frames come within gap (they would wait for it anyway:
			// a frame is queued, not written, only for a busy client): look once more
			// then, rather than exit and be started again for each write.
			idle = true
			c.mu.Unlock()
			time.Sleep(gap)
			continue
		}
		idle = false
		c.startWriteLocked() // keep inline deliveries off from here to finishWrite
		// A busy client's frames wait for the rest of the interval and go out together
		// (see writeBudget): fewer, larger writes; a quiet one's go out at once.
		if d := gap - time.Since(c.lastWrite); c.busy && gap > 0 && d > 0 && c.phase == open {
			c.mu.Unlock()
			time.Sleep(d)
			c.mu.Lock()
		}
		batch := c.queue
		c.queue, c.spare = c.spare[:0], nil
		ph, code, text := c.phase, c.closeCode, c.closeText
		c.mu.Unlock()

		if ph != open {
			// Closing: give the peer a moment to answer the close so it reads our frame
			// before the TCP connection goes away.
			c.end(code, text, c.readerDone())
			return
		}
		sendPing := c.pingDue.Swap(false)
		err := c.t.WriteMany(batch, sendPing)
		if sendPing {
			c.hub.pings.schedule(c, c.hub.cfg.PingInterval)
		}
		if len(batch) > 0 {
			c.hub.metrics.deliveries.Add(float64(len(batch)))
		}
		c.giveBack(batch)
		if err != nil {
			c.end(0, "", nil)
			return
		}
	}
}

// giveBack ends a write: it keeps batch's array for the next swap unless it grew too big.
func (c *Client) giveBack(batch [][]byte) {
	clear(batch)
	c.mu.Lock()
	c.finishWriteLocked()
	if len(batch) > 0 {
		c.wroteLocked(time.Now(), len(batch))
	}
	if c.spare == nil && cap(batch) <= 4*c.hub.cfg.QueueSize {
		c.spare = batch[:0]
	}
	drained := c.drained
	c.mu.Unlock()
	if drained != nil {
		signal(drained)
	}
}

// waitRoom blocks until at most limit frames are queued, the client closes or done fires.
func (c *Client) waitRoom(limit int, done <-chan struct{}) bool {
	ended := c.Done()
	for {
		c.mu.Lock()
		n, closed := len(c.queue), c.phase != open
		if c.drained == nil {
			c.drained = make(chan struct{}, 1)
		}
		drained := c.drained
		c.mu.Unlock()
		if closed {
			return false
		}
		if n <= limit {
			return true
		}
		select {
		case <-drained:
		case <-ended:
			return false
		case <-done:
			return false
		}
	}
}
