package transport

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// socket wraps a hijacked connection so that everything the websocket library writes
// while a batch is open goes out in one write: a client's queued frames cost one syscall,
// not one each. Outside a batch, writes pass straight through. The mutex also serializes
// the library's own control writes (pong and close replies from the reader goroutine)
// with the batch flush, so frames never interleave. It is the only thing that writes to
// or closes the connection: the websocket library holds it as its net.Conn.
type socket struct {
	net.Conn
	mu       sync.Mutex
	closed   bool        // Close was called
	batching bool        // (the small fields together: Conn fits a smaller size class)
	hasTail  atomic.Bool // len(tail) > 0, readable without mu
	bufp     *[]byte     // from batchBufs while a batch is open
	deadline time.Time   // the write deadline last set on Conn
	tail     []byte      // the unwritten end of a frame a non-blocking write began
	werr     error       // a non-blocking write failed: the connection is broken

	br  *bufio.Reader // the websocket library's read buffer (see hijacker)
	sys sysConn       // the descriptor's fast paths (socket_linux.go); zero elsewhere

	readDeadline atomic.Int64 // the read deadline set last (unix ns, 0: none), for park
	idle         parking      // in the idle poller (park_linux.go)
}

// Close closes the connection, once; later calls return nil. The flag is set under mu
// (tryWrite then stops trying); the close itself is outside it, as it always was. A raw
// write cannot race it into a reused descriptor: it holds the descriptor through
// syscall.RawConn (socket_linux.go).
func (c *socket) Close() error {
	c.mu.Lock()
	closed := c.closed
	c.closed = true
	c.mu.Unlock()
	if closed {
		return nil
	}
	c.forget() // out of the idle poller first: its descriptor is about to close
	return c.Conn.Close()
}

// tryWrite writes p with one non-blocking write, when nothing else is buffered or pending
// on the connection. It returns how much it wrote; when that is only part of p the rest is
// kept as the tail, which goes out before anything else (the writer must be woken to send
// it). 0: nothing written (socket buffer full, another write in progress, no fast path on
// this connection, or the connection broke, which the writer's next flush reports): queue
// p instead.
func (c *socket) tryWrite(p []byte, now time.Time) int {
	// The fan-out calls this under its room's lock: never wait, not even for a control
	// frame the reader goroutine may be writing (a pong to a client that does not read).
	if !c.mu.TryLock() {
		return 0
	}
	defer c.mu.Unlock()
	if c.closed || c.batching || len(c.tail) > 0 || c.werr != nil || !c.sys.ok() {
		return 0
	}
	if !c.deadline.IsZero() && now.After(c.deadline) {
		// The deadline of the last flush has passed (the client was idle): the descriptor
		// would refuse the write. Clear it; the next flush sets a fresh one.
		c.deadline = time.Time{}
		_ = c.Conn.SetWriteDeadline(c.deadline)
	}
	n, err := c.sys.write(p)
	switch {
	case err != nil:
		c.werr = err
		return 0
	case n <= 0:
		return 0
	case n < len(p):
		c.tail = append(c.tail[:0], p[n:]...)
		c.hasTail.Store(true)
	}
	return n
}

// pending reports whether a tail waits to be written.
func (c *socket) pending() bool {
	// Without mu: the writer asks while holding its client's lock, which the fan-out
	// needs, and mu may be held for a while by a blocking write (a pong on a full socket).
	return c.hasTail.Load()
}

var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func (c *socket) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.batching {
		*c.bufp = append(*c.bufp, p...)
		return len(p), nil
	}
	if c.werr != nil {
		return 0, c.werr
	}
	if len(c.tail) > 0 {
		if _, err := c.Conn.Write(c.tail); err != nil {
			return 0, err
		}
		c.tail = c.tail[:0]
		c.hasTail.Store(false)
	}
	return c.Conn.Write(p)
}

// SetReadDeadline records t for park (the idle poller enforces it while no goroutine
// waits) and passes it through.
func (c *socket) SetReadDeadline(t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	c.readDeadline.Store(ns)
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline passes the websocket library's deadlines through, except inside a batch:
// there it only buffers, and flush sets the batch's deadline. (The library sets a deadline
// before every frame; skipping those inside a batch saves a timer update per frame.)
func (c *socket) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.batching {
		return nil
	}
	c.deadline = t
	return c.Conn.SetWriteDeadline(t)
}

// begin opens a batch, which starts with the tail of a frame begun by tryWrite, if any.
func (c *socket) begin() {
	c.mu.Lock()
	c.batching = true
	if c.bufp == nil {
		c.bufp = batchBufs.Get().(*[]byte)
		*c.bufp = (*c.bufp)[:0]
	}
	*c.bufp = append(*c.bufp, c.tail...)
	c.tail = c.tail[:0]
	c.hasTail.Store(false)
	c.mu.Unlock()
}

// add appends complete frames to the open batch.
func (c *socket) add(frames [][]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range frames {
		*c.bufp = append(*c.bufp, f...)
	}
}

// flush closes the batch and writes it with one write, which may take timeout from now.
// The buffer goes back to a pool, so an idle connection holds none. The deadline is moved
// only when less than half of timeout is left of it: setting it costs a timer update, and
// a write still gets between timeout/2 and timeout.
func (c *socket) flush(now time.Time, timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = false
	bufp := c.bufp
	c.bufp = nil
	if bufp == nil {
		return c.werr
	}
	defer func() {
		if cap(*bufp) <= 1<<20 {
			*bufp = (*bufp)[:0]
			batchBufs.Put(bufp)
		}
	}()
	if c.werr != nil || len(*bufp) == 0 {
		return c.werr
	}
	if c.deadline.IsZero() || c.deadline.Sub(now) < timeout/2 {
		c.deadline = now.Add(timeout)
		_ = c.Conn.SetWriteDeadline(c.deadline)
	}
	_, err := c.Conn.Write(*bufp)
	return err
}

// hijacker hands the websocket upgrader a socket instead of the raw connection.
type hijacker struct {
	http.ResponseWriter
	conn *Conn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	s := &h.conn.s
	s.Conn = conn
	// Only a plain socket gets the fast paths: on a TLS (or any other wrapped) connection
	// the bytes on the descriptor are not the frames, so it goes the portable way.
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			s.sys.init(raw)
		}
	}
	if brw.Reader.Buffered() > 0 {
		return s, brw, nil // the upgrader refuses a client that sent data too early
	}
	// The library reuses a hijacked read buffer larger than 256 bytes (with
	// Upgrader.ReadBufferSize 0): hand it a small one of ours, so that awaitMessage sees
	// what it holds; net/http's 4 KiB one is dropped. TestLibraryReadsThroughOurBuffer
	// fails if a gorilla release stops doing so.
	s.br = bufio.NewReaderSize(s, readBufferSize)
	return s, bufio.NewReadWriter(s.br, brw.Writer), nil
}

// dropReadBuf lets the read buffer's memory go if it holds nothing (the connection is
// about to park): the library keeps its pointer to br, so br itself stays, zeroed, until
// restoreReadBuf gives it a new buffer. True: dropped.
func (c *socket) dropReadBuf() bool {
	if c.br == nil || c.br.Size() == 0 || c.br.Buffered() > 0 {
		return false
	}
	*c.br = bufio.Reader{}
	return true
}

// restoreReadBuf gives br a buffer again if dropReadBuf took it; the reader calls it
// before anything reads br.
func (c *socket) restoreReadBuf() {
	if c.br != nil && c.br.Size() == 0 {
		*c.br = *bufio.NewReaderSize(c, readBufferSize)
	}
}

// readBufferSize is a connection's read buffer: client frames are small commands, and the
// library reads larger payloads past the buffer. It only needs a frame header and a
// control frame (at most 139 bytes), and must exceed 256 for the library to use it.
const readBufferSize = 288
