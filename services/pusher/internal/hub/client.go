package hub

import (
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
// queue; its single writer goroutine drains everything queued into one write. A client
// whose queue overflows is evicted (1013) instead of slowing its rooms.
type Client struct {
	hub  *Hub
	conn *websocket.Conn
	bc   *batchConn

	mu        sync.Mutex
	queue     []*websocket.PreparedMessage
	spare     []*websocket.PreparedMessage
	closeCode int
	closeText string
	writing   bool      // the writer or an inline delivery is writing to the connection
	lastWrite time.Time // when frames last went out
	pingDue   atomic.Bool
	subs      map[string]*sub // by room; owned by the reader goroutine, read by the hub under mu

	wake     chan struct{} // something queued or a close requested
	drained  chan struct{} // the writer emptied the queue (replays wait on it)
	readDone chan struct{} // the reader goroutine ended
	done     chan struct{} // the writer ended and the connection is closed
}

func newClient(h *Hub, conn *websocket.Conn, bc *batchConn) *Client {
	return &Client{
		hub: h, conn: conn, bc: bc,
		subs:     make(map[string]*sub),
		wake:     make(chan struct{}, 1),
		drained:  make(chan struct{}, 1),
		readDone: make(chan struct{}),
		done:     make(chan struct{}),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// enqueue queues frames; false when the client is closing. A full queue evicts the client.
func (c *Client) enqueue(pms ...*websocket.PreparedMessage) bool {
	c.mu.Lock()
	if c.closeCode != 0 {
		c.mu.Unlock()
		return false
	}
	if len(c.queue)+len(pms) > c.hub.cfg.QueueSize {
		c.closeLocked(CloseTryAgainLater, "slow consumer")
		c.mu.Unlock()
		c.hub.metrics.evictions.Inc()
		return false
	}
	c.queue = append(c.queue, pms...)
	c.mu.Unlock()
	signal(c.wake)
	return true
}

// deliver hands f to the client (the hub's fan-out, under the room lock), and reports
// whether it was written right away. When direct, a client with nothing queued or being
// written, and no write within the flush interval, gets f with one non-blocking write: no
// writer goroutine to wake, which is most of the cost of a delivery to a quiet client. The
// rest (busy, slow, or a socket buffer full) goes through the queue and the writer.
func (c *Client) deliver(f *frame, now time.Time, direct bool) bool {
	c.mu.Lock()
	if !direct || c.writing || len(c.queue) > 0 || c.closeCode != 0 || now.Sub(c.lastWrite) < c.hub.cfg.flushInterval() {
		c.mu.Unlock()
		c.enqueue(f.pm)
		return false
	}
	c.writing = true
	c.mu.Unlock()
	n := c.bc.tryWrite(f.raw)
	c.mu.Lock()
	c.writing = false
	wake := len(c.queue) > 0 || c.closeCode != 0 || c.pingDue.Load()
	switch {
	case n > 0:
		c.lastWrite = now
		wake = wake || n < len(f.raw) // the writer sends the tail
	case c.closeCode == 0:
		// Nothing written (socket buffer full, or the connection broke: the writer's flush
		// then fails and closes it): f goes first, before whatever was queued meanwhile.
		c.queue = append(c.queue, nil)
		copy(c.queue[1:], c.queue)
		c.queue[0] = f.pm
		wake = true
	}
	c.mu.Unlock()
	if wake {
		signal(c.wake)
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
	signal(c.wake)
}

// writeLoop is the only writer of frames. It ends after a write error, a requested close or
// the end of the reader, and closes the connection. It parks on the wake channel alone (a
// one-channel receive is much cheaper to wake than a select): the ping timer and the end
// of the reader (see Hub.unregister) signal wake too.
func (c *Client) writeLoop() {
	defer close(c.done)
	defer c.conn.Close()
	ping := time.AfterFunc(c.hub.cfg.PingInterval, func() {
		c.pingDue.Store(true)
		signal(c.wake)
	})
	defer ping.Stop()
	gap := c.hub.cfg.flushInterval()
	for {
		<-c.wake
		select {
		case <-c.readDone:
			// The reader is gone; a close asked for just before still goes out, so the
			// peer learns why (e.g. 1008 after a binary frame), not just a dropped socket.
			c.mu.Lock()
			code, text := c.closeCode, c.closeText
			c.mu.Unlock()
			if code != 0 {
				_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(c.hub.cfg.WriteTimeout))
			}
			return
		default:
		}
		c.mu.Lock()
		if c.writing {
			c.mu.Unlock()
			continue // an inline delivery is writing; it wakes us when it is done
		}
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
			case <-c.readDone:
			case <-time.After(time.Second):
			}
			return
		}
		if len(batch) == 0 && !sendPing && !c.bc.pending() {
			c.giveBack(batch)
			continue
		}
		now := time.Now()
		c.bc.begin()
		for _, pm := range batch {
			_ = c.conn.WritePreparedMessage(pm) // buffered in bc; errors surface at flush
		}
		if sendPing {
			_ = c.conn.WriteControl(websocket.PingMessage, nil, now.Add(c.hub.cfg.WriteTimeout))
			ping.Reset(c.hub.cfg.PingInterval)
		}
		err := c.bc.flush(now, c.hub.cfg.WriteTimeout)
		if len(batch) > 0 {
			c.hub.metrics.deliveries.Add(float64(len(batch)))
		}
		c.giveBack(batch)
		signal(c.drained)
		if err != nil {
			return
		}
	}
}

// giveBack ends a write: it keeps batch's array for the next swap unless it grew too big,
// and wakes the writer again if frames were queued meanwhile.
func (c *Client) giveBack(batch []*websocket.PreparedMessage) {
	clear(batch)
	c.mu.Lock()
	c.writing = false
	if len(batch) > 0 {
		c.lastWrite = time.Now()
	}
	if c.spare == nil && cap(batch) <= 4*c.hub.cfg.QueueSize {
		c.spare = batch[:0]
	}
	more := len(c.queue) > 0 || c.closeCode != 0
	c.mu.Unlock()
	if more {
		signal(c.wake)
	}
}

// waitRoom blocks until at most limit frames are queued, the client closes or done fires.
func (c *Client) waitRoom(limit int, done <-chan struct{}) bool {
	for {
		c.mu.Lock()
		n, closing := len(c.queue), c.closeCode != 0
		c.mu.Unlock()
		if closing {
			return false
		}
		if n <= limit {
			return true
		}
		select {
		case <-c.drained:
		case <-c.done:
			return false
		case <-done:
			return false
		}
	}
}
