package hub

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// batchConn wraps a hijacked connection so that everything the websocket library writes
// while a batch is open goes out in one write: a client's queued frames cost one syscall,
// not one each. Outside a batch, writes pass straight through. The mutex also serializes
// the library's own control writes (pong and close replies from the reader goroutine)
// with the batch flush, so frames never interleave.
type batchConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      []byte
}

var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.batching {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// begin opens a batch.
func (c *batchConn) begin() {
	c.mu.Lock()
	c.batching = true
	if c.buf == nil {
		c.buf = (*batchBufs.Get().(*[]byte))[:0]
	}
	c.mu.Unlock()
}

// flush closes the batch and writes it with one write under deadline. The buffer goes back
// to a pool, so an idle connection holds none.
func (c *batchConn) flush(deadline time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = false
	buf := c.buf
	c.buf = nil
	if len(buf) == 0 {
		if buf != nil {
			batchBufs.Put(&buf)
		}
		return nil
	}
	_ = c.Conn.SetWriteDeadline(deadline)
	_, err := c.Conn.Write(buf)
	if cap(buf) <= 1<<20 {
		buf = buf[:0]
		batchBufs.Put(&buf)
	}
	return err
}

// hijacker hands the websocket upgrader a batchConn instead of the raw connection.
type hijacker struct {
	http.ResponseWriter
	conn *batchConn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &batchConn{Conn: conn}
	return h.conn, brw, nil
}
