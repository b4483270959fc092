package hub

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// batchConn wraps a hijacked connection so that everything the websocket library writes
// while a batch is open goes out in one write: a client's queued frames cost one syscall,
// not one each. Outside a batch, writes pass straight through. The mutex also serializes
// the library's own control writes (pong and close replies from the reader goroutine)
// with the batch flush, so frames never interleave.
type batchConn struct {
	net.Conn
	raw      syscall.RawConn // nil: not a socket (awaitMessage then leaves reading to the library)
	fd       int             // the socket's descriptor for tryWrite; -1 when unknown
	mu       sync.Mutex
	closed   bool // Close was called: fd may belong to another file now
	batching bool
	bufp     *[]byte     // from batchBufs while a batch is open
	deadline time.Time   // the write deadline last set on Conn
	tail     []byte      // the unwritten end of a frame a non-blocking write began
	hasTail  atomic.Bool // len(tail) > 0, readable without mu
	werr     error       // a non-blocking write failed: the connection is broken

	br       *bufio.Reader         // the websocket library's read buffer (see hijacker)
	readable func(fd uintptr) bool // awaitMessage's socket check, made once
	peekBuf  [1]byte
}

// Close closes the connection. Under mu, so that tryWrite never writes to a descriptor
// that was closed (and perhaps reused) meanwhile.
func (c *batchConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.Conn.Close()
}

// awaitMessage waits, a few calls deep, until the read buffer holds the start of a frame
// other than a pong, or the socket failed; the websocket library then reads the message.
// Whole pong frames are consumed here, calling onPong for each. A pong is all an idle
// connection receives (one per ping): handed to the library, it would take the reader
// into the library's read path and park it there, deep, waiting for the next frame, on a
// stack grown past the 2 KiB minimum. Parked here instead, the reader keeps a small stack
// (the runtime shrinks one that a command grew). Anything unusual (a pong that breaks
// the protocol, a read error, end of stream) is left to the library to report.
func (c *batchConn) awaitMessage(onPong func()) {
	if c.raw == nil || c.br == nil {
		return
	}
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		n := pongLen(buf)
		if n > 0 {
			_, _ = c.br.Discard(n)
			onPong()
			continue
		}
		if n < 0 {
			return // a frame for the library
		}
		// Empty, or the start of what may be a pong: wait for the socket, then read what
		// it has (the wait returned, so this read does not block).
		_ = c.raw.Read(c.readable)
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			return
		}
	}
}

// pongLen is the length of the client pong frame at the start of b: > 0 a whole frame, 0
// possibly a pong but incomplete (or b empty), < 0 something else, or a pong the library
// must reject (unmasked, fragmented, reserved bits, too long).
func pongLen(b []byte) int {
	switch {
	case len(b) == 0:
		return 0
	case b[0] != 0x8a: // FIN, no reserved bits, opcode 10 (pong)
		return -1
	case len(b) < 2:
		return 0
	case b[1]&0x80 == 0 || b[1]&0x7f > 125: // client frames are masked; control payloads <= 125
		return -1
	}
	n := 2 + 4 + int(b[1]&0x7f)
	if len(b) < n {
		return 0
	}
	return n
}

// tryWrite writes p with one non-blocking write, when nothing else is buffered or pending
// on the connection. It returns how much it wrote; when that is only part of p the rest is
// kept as the tail, which goes out before anything else (the writer must be woken to send
// it). 0: nothing written (socket buffer full, another write in progress, not possible
// now, or the connection broke, which the writer's next flush reports): queue p instead.
func (c *batchConn) tryWrite(p []byte) int {
	// The fan-out calls this under its room's lock: never wait, not even for a control
	// frame the reader goroutine may be writing (a pong to a client that does not read).
	if !c.mu.TryLock() {
		return 0
	}
	defer c.mu.Unlock()
	if c.fd < 0 || c.closed || c.batching || len(c.tail) > 0 || c.werr != nil {
		return 0
	}
	// Straight to the descriptor, past the netpoller's bookkeeping (its write lock,
	// deadline and readiness checks): Go keeps sockets non-blocking, every write to this
	// connection is serialized by mu, and Close takes mu, so fd is this socket throughout.
	//
	// A raw system call: it cannot block, so the runtime need not be told. Through
	// syscall.Write each of a big room's thousands of writes in a row went through the
	// scheduler's system-call entry and exit (and whatever scheduling that triggers):
	// 5 % of the pusher's CPU in that room (A/B, README).
	r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(c.fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	n := int(r)
	switch {
	case errno == syscall.EAGAIN || errno == syscall.EINTR || (errno == 0 && n <= 0):
		return 0
	case errno != 0:
		c.werr = errno
		return 0
	case n < len(p):
		c.tail = append(c.tail[:0], p[n:]...)
		c.hasTail.Store(true)
	}
	return n
}

// pending reports whether a tail waits to be written.
func (c *batchConn) pending() bool {
	// Without mu: the writer asks while holding its client's lock, which the fan-out
	// needs, and mu may be held for a while by a blocking write (a pong on a full socket).
	return c.hasTail.Load()
}

var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func (c *batchConn) Write(p []byte) (int, error) {
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

// SetWriteDeadline passes the websocket library's deadlines through, except inside a batch:
// there it only buffers, and flush sets the batch's deadline. (The library sets a deadline
// before every frame; skipping those inside a batch saves a timer update per frame.)
func (c *batchConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.batching {
		return nil
	}
	c.deadline = t
	return c.Conn.SetWriteDeadline(t)
}

// begin opens a batch, which starts with the tail of a frame begun by tryWrite, if any.
func (c *batchConn) begin() {
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
func (c *batchConn) add(frames [][]byte) {
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
func (c *batchConn) flush(now time.Time, timeout time.Duration) error {
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
	bc := &batchConn{Conn: conn, fd: -1}
	h.conn = bc
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			bc.raw = raw
			_ = raw.Control(func(fd uintptr) { bc.fd = int(fd) })
			bc.readable = func(fd uintptr) bool {
				for {
					_, _, err := syscall.Recvfrom(int(fd), bc.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
					if err != syscall.EINTR {
						return err != syscall.EAGAIN // data, end of stream or an error
					}
				}
			}
		}
	}
	if brw.Reader.Buffered() > 0 {
		return bc, brw, nil // the upgrader refuses a client that sent data too early
	}
	// The library reuses a hijacked read buffer larger than 256 bytes (with
	// Upgrader.ReadBufferSize 0): hand it a small one of ours, so that awaitMessage sees
	// what it holds; net/http's 4 KiB one is dropped.
	bc.br = bufio.NewReaderSize(bc, readBufferSize)
	return bc, bufio.NewReadWriter(bc.br, brw.Writer), nil
}

// readBufferSize is a connection's read buffer: client frames are small commands, and the
// library reads larger payloads past the buffer. It only needs a frame header and a
// control frame (at most 139 bytes), and must exceed 256 for the library to use it.
const readBufferSize = 288
