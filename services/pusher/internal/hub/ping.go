package hub

import (
	"sync"
	"time"
)

// pingWheel schedules every client's next ping on one timer for the whole hub, instead of
// a timer per client: a runtime timer and its callback cost ~0.13 KiB of heap per client
// (twice that in RSS with the GC's headroom), a large share of an idle connection.
//
// Time is cut into ticks of width (PingInterval/pingSlots); a client due at t waits in
// the slot of the first tick at or after t, so its ping is late by at most one tick
// (~3 % of the interval), never early. The wheel has more slots than an interval has
// ticks, so a slot never holds clients of two different turns. The timer runs only while
// some client is scheduled.
//
// Lock order: pingWheel.mu → Client.mu (the wake); nothing holding a Client.mu calls into
// the wheel. A client's place in it (pingSlot, pingIdx) is guarded by pingWheel.mu.
type pingWheel struct {
	interval time.Duration
	width    time.Duration
	origin   time.Time // tick k begins at origin + k·width

	mu    sync.Mutex
	slots [][]*Client // slot k % len(slots): the clients due at tick k
	next  int64       // the next tick to process
	count int         // clients scheduled
	timer *time.Timer // armed while count > 0
	armed bool

	fireMu sync.Mutex // one fire at a time: due is its scratch
	due    []*Client
}

// pingSlots is how many ticks one ping interval spans.
const pingSlots = 32

func newPingWheel(interval time.Duration) *pingWheel {
	w := &pingWheel{interval: interval, width: max(interval/pingSlots, time.Millisecond), origin: time.Now()}
	// A delay of up to one interval, rounded up, counted from the next tick to process,
	// which lags the clock by as much as the timer fires late: twice the ticks of an
	// interval tolerate a timer up to an interval late before a ping goes out early.
	n := 2*int(interval/w.width) + 2
	w.slots = make([][]*Client, n)
	return w
}

func (w *pingWheel) tickAt(t time.Time) int64 { return int64(t.Sub(w.origin) / w.width) }

// schedule makes c due for a ping after d (replacing any earlier schedule).
func (w *pingWheel) schedule(c *Client, d time.Duration) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.removeLocked(c)
	cur := w.tickAt(now)
	if w.count == 0 {
		w.next = cur // nothing is pending: the ticks passed need no processing
	}
	off := now.Add(d).Sub(w.origin)
	tick := int64((off + w.width - 1) / w.width) // the first tick at or after now+d
	tick = max(tick, w.next, cur)
	if n := int64(len(w.slots)); tick-w.next >= n {
		tick = w.next + n - 1 // the timer is far behind: ping early rather than a turn late
	}
	s := int32(tick % int64(len(w.slots)))
	c.pingSlot, c.pingIdx = s, int32(len(w.slots[s]))
	w.slots[s] = append(w.slots[s], c)
	w.count++
	if !w.armed {
		w.armed = true
		wait := w.origin.Add(time.Duration(w.next) * w.width).Sub(now)
		if w.timer == nil {
			w.timer = time.AfterFunc(wait, w.fire)
		} else {
			w.timer.Reset(wait)
		}
	}
}

// unschedule takes c off the wheel (it is closing).
func (w *pingWheel) unschedule(c *Client) {
	w.mu.Lock()
	w.removeLocked(c)
	w.mu.Unlock()
}

func (w *pingWheel) removeLocked(c *Client) {
	if c.pingSlot < 0 {
		return
	}
	slot := w.slots[c.pingSlot]
	last := len(slot) - 1
	if i := int(c.pingIdx); i != last {
		slot[i] = slot[last]
		slot[i].pingIdx = int32(i)
	}
	slot[last] = nil
	w.slots[c.pingSlot] = slot[:last]
	c.pingSlot, c.pingIdx = -1, -1
	w.count--
}

// fire takes the clients of every tick that has begun off the wheel and wakes their
// writers with a ping due; each writer schedules its next ping when it sent this one.
func (w *pingWheel) fire() {
	w.fireMu.Lock()
	defer w.fireMu.Unlock()
	now := time.Now()
	w.mu.Lock()
	cur := w.tickAt(now)
	due := w.due[:0]
	for n := 0; w.next <= cur && n < len(w.slots); n++ {
		s := w.next % int64(len(w.slots))
		for i, c := range w.slots[s] {
			c.pingSlot, c.pingIdx = -1, -1
			due = append(due, c)
			w.slots[s][i] = nil
		}
		w.count -= len(w.slots[s])
		w.slots[s] = w.slots[s][:0]
		w.next++
	}
	w.next = max(w.next, cur+1)
	if w.count > 0 {
		w.timer.Reset(w.origin.Add(time.Duration(w.next) * w.width).Sub(now))
	} else {
		w.armed = false
	}
	w.mu.Unlock()
	for i, c := range due {
		c.pingDue.Store(true)
		c.mu.Lock()
		c.wakeLocked()
		c.mu.Unlock()
		due[i] = nil
	}
	w.due = due[:0]
}
