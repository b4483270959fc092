package hub

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Close codes from the contract.
const (
	CloseServiceRestart = 1012 // pusher shutting down: reconnect elsewhere and resume
	CloseTryAgainLater  = 1013 // slow consumer evicted: reconnect and resume
	ClosePolicy         = 1008 // binary or non-JSON frames
	CloseInternal       = 1011 // a resume could not be served
)

// Client is one websocket connection. The hub and replays put frames on its bounded
// queue; a writer goroutine, started only while there is something to write, drains
// everything queued into one write. An idle connection has no writer: only its reader
// goroutine. A client whose queue overflows is evicted (1013) instead of slowing its rooms.
type Client struct {
	hub  *Hub
	conn *websocket.Conn
	bc   *batchConn
	ping *time.Timer // sets pingDue and starts the writer every PingInterval

	mu        sync.Mutex
	queue     [][]byte // complete server frames
	spare     [][]byte
	closeCode int
	closeText string
	writing   bool      // the writer is writing or waiting out the flush interval: no inline writes
	flushing  bool      // a writer goroutine runs
	readEnded bool      // the reader goroutine ended
	ended     bool      // the connection is closed (done is closed)
	lastWrite time.Time // when frames last went out
	pingDue   atomic.Bool
	subs      []*sub // a few at most (MaxSubs); changed by the connection's own goroutines under mu

	drained  chan struct{} // made by the first waitRoom: the writer wrote a batch
	readDone chan struct{} // made by a closing writer that waits for the reader's end
	done     chan struct{} // the connection is closed
}

func newClient(h *Hub, conn *websocket.Conn, bc *batchConn) *Client {
	c := &Client{
		hub: h, conn: conn, bc: bc,
		done: make(chan struct{}),
	}
	// The first ping comes after a random half to whole interval, so that clients that
	// connected together (after a restart, say) are not all pinged at the same instant.
	first := h.cfg.PingInterval
	if half := first / 2; half > 0 {
		first = half + rand.N(half)
	}
	c.mu.Lock() // the timer's writer reads c.ping: set it before the timer can take mu
	c.ping = time.AfterFunc(first, func() {
		c.pingDue.Store(true)
		c.mu.Lock()
		c.startWriterLocked()
		c.mu.Unlock()
	})
	c.mu.Unlock()
	return c
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// startWriterLocked starts the writer goroutine unless one runs or the connection ended.
// Caller holds mu. Everything that gives the writer work calls it: a queued frame, a
// close, a due ping, the tail of a partial inline write, the end of the reader.
func (c *Client) startWriterLocked() {
	if c.flushing || c.ended {
		return
	}
	c.flushing = true
	go c.writeLoop()
}

// subIndex is the index of the subscription to room in subs, -1 if none. Caller holds mu.
func (c *Client) subIndex(room string) int {
	return slices.IndexFunc(c.subs, func(s *sub) bool { return s.room.name == room })
}

// enqueue queues frames; false when the client is closing. A full queue evicts the client.
func (c *Client) enqueue(frames ...[]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enqueueLocked(frames...)
}

func (c *Client) enqueueLocked(frames ...[]byte) bool {
	if c.closeCode != 0 {
		return false
	}
	if len(c.queue)+len(frames) > c.hub.cfg.QueueSize {
		c.closeLocked(CloseTryAgainLater, "slow consumer")
		c.hub.metrics.evictions.Inc()
		return false
	}
	c.queue = append(c.queue, frames...)
	c.startWriterLocked()
	return true
}

// deliver hands f to the client (the hub's fan-out, under the room lock), and reports
// whether it was written right away. When direct, a client with nothing queued or being
// written, and no write within the flush interval, gets f with one non-blocking write: no
// writer goroutine to start, which is most of the cost of a delivery to a quiet client.
// The rest (busy, slow, or a socket buffer full) goes through the queue and the writer.
// The non-blocking write happens under mu: it cannot wait, and the writer, which checks
// for work under mu, then never sees a half-done delivery.
func (c *Client) deliver(f *frame, now time.Time, direct bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !direct || c.writing || len(c.queue) > 0 || c.closeCode != 0 || now.Sub(c.lastWrite) < c.hub.cfg.flushInterval() {
		c.enqueueLocked(f.raw)
		return false
	}
	n := c.bc.tryWrite(f.raw)
	switch {
	case n == len(f.raw):
		c.lastWrite = now
		if c.pingDue.Load() || c.readEnded {
			c.startWriterLocked()
		}
	case n > 0:
		c.lastWrite = now
		c.startWriterLocked() // the writer sends the tail
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

// Close asks the writer to send a close frame with code and end the connection.
func (c *Client) Close(code int, text string) {
	c.mu.Lock()
	c.closeLocked(code, text)
	c.mu.Unlock()
}

func (c *Client) closeLocked(code int, text string) {
	if c.closeCode != 0 {
		return
	}
	c.closeCode, c.closeText = code, text
	c.queue = nil
	c.startWriterLocked()
}

// readerEnded records the end of the reader goroutine; the writer then closes the
// connection.
func (c *Client) readerEnded() {
	c.mu.Lock()
	c.readEnded = true
	if c.readDone != nil {
		close(c.readDone)
	}
	c.startWriterLocked()
	c.mu.Unlock()
}

// readerDone returns a channel closed once the reader goroutine has ended.
func (c *Client) readerDone() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readDone == nil {
		c.readDone = make(chan struct{})
		if c.readEnded {
			close(c.readDone)
		}
	}
	return c.readDone
}

// writeLoop is the only writer of queued frames. It runs while there is something to
// write and returns one flush interval after there is not. It ends the connection after
// a write error, a requested close or the end of the reader.
func (c *Client) writeLoop() {
	gap := c.hub.cfg.flushInterval()
	idle := false // the previous pass found nothing to write
	for {
		c.mu.Lock()
		if c.readEnded {
			// The reader is gone; a close asked for just before still goes out, so the
			// peer learns why (e.g. 1008 after a binary frame), not just a dropped socket.
			code, text := c.closeCode, c.closeText
			c.mu.Unlock()
			if code != 0 {
				_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(c.hub.cfg.WriteTimeout))
			}
			c.end()
			return
		}
		if len(c.queue) == 0 && c.closeCode == 0 && !c.pingDue.Load() && !c.bc.pending() {
			if idle || gap <= 0 {
				c.flushing = false
				c.mu.Unlock()
				return
			}
			// A busy client's next frames come within gap (they would wait for it anyway):
			// look once more then, rather than exit and be started again for each write.
			idle = true
			c.mu.Unlock()
			time.Sleep(gap)
			continue
		}
		idle = false
		// Frames arriving within gap of the previous write wait for the rest of the gap and
		// go out together: a busy client gets fewer, larger writes; an idle one no delay.
		if d := gap - time.Since(c.lastWrite); gap > 0 && d > 0 && c.closeCode == 0 {
			c.writing = true // keep inline deliveries off while we wait
			c.mu.Unlock()
			time.Sleep(d)
			c.mu.Lock()
		}
		c.writing = true
		batch := c.queue
		c.queue, c.spare = c.spare[:0], nil
		code, text := c.closeCode, c.closeText
		c.mu.Unlock()
		sendPing := c.pingDue.Swap(false)

		if code != 0 {
			deadline := time.Now().Add(c.hub.cfg.WriteTimeout)
			_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), deadline)
			// Give the peer a moment to answer the close so it reads our frame before the
			// TCP connection goes away.
			select {
			case <-c.readerDone():
			case <-time.After(time.Second):
			}
			c.end()
			return
		}
		now := time.Now()
		c.bc.begin()
		c.bc.add(batch)
		if sendPing {
			_ = c.conn.WriteControl(websocket.PingMessage, nil, now.Add(c.hub.cfg.WriteTimeout))
			c.ping.Reset(c.hub.cfg.PingInterval)
		}
		err := c.bc.flush(now, c.hub.cfg.WriteTimeout)
		if len(batch) > 0 {
			c.hub.metrics.deliveries.Add(float64(len(batch)))
		}
		c.giveBack(batch)
		if err != nil {
			c.end()
			return
		}
	}
}

// end closes the connection; the writer calls it once, as its last act.
func (c *Client) end() {
	c.ping.Stop()
	_ = c.conn.Close()
	c.mu.Lock()
	c.ended, c.flushing, c.queue = true, false, nil
	c.mu.Unlock()
	close(c.done)
}

// giveBack ends a write: it keeps batch's array for the next swap unless it grew too big.
func (c *Client) giveBack(batch [][]byte) {
	clear(batch)
	c.mu.Lock()
	c.writing = false
	if len(batch) > 0 {
		c.lastWrite = time.Now()
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
	for {
		c.mu.Lock()
		n, closing := len(c.queue), c.closeCode != 0
		if c.drained == nil {
			c.drained = make(chan struct{}, 1)
		}
		drained := c.drained
		c.mu.Unlock()
		if closing {
			return false
		}
		if n <= limit {
			return true
		}
		select {
		case <-drained:
		case <-c.done:
			return false
		case <-done:
			return false
		}
	}
}
