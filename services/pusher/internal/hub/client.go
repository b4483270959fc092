package hub

import (
	"sync"
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
// the end of the reader, and closes the connection.
func (c *Client) writeLoop() {
	defer close(c.done)
	defer c.conn.Close()
	ping := time.NewTicker(c.hub.cfg.PingInterval)
	defer ping.Stop()
	for {
		sendPing := false
		select {
		case <-c.wake:
		case <-ping.C:
			sendPing = true
		case <-c.readDone:
			return
		}
		c.mu.Lock()
		batch := c.queue
		c.queue, c.spare = c.spare[:0], nil
		code, text := c.closeCode, c.closeText
		c.mu.Unlock()

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
		c.bc.begin()
		for _, pm := range batch {
			_ = c.conn.WritePreparedMessage(pm) // buffered in bc; errors surface at flush
		}
		if sendPing {
			_ = c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.hub.cfg.WriteTimeout))
		}
		err := c.bc.flush(time.Now().Add(c.hub.cfg.WriteTimeout))
		c.hub.metrics.deliveries.Add(float64(len(batch)))
		clear(batch)
		c.mu.Lock()
		if c.spare == nil && cap(batch) <= 4*c.hub.cfg.QueueSize {
			c.spare = batch[:0]
		}
		c.mu.Unlock()
		signal(c.drained)
		if err != nil {
			return
		}
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
