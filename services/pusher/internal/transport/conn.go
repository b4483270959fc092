// Package transport is the pusher's socket I/O: the websocket upgrade, the one type that
// writes to and closes a client's socket (socket.go), the batching writer that sends a
// client's queued frames with one write, the non-blocking write the fan-out uses for a
// quiet client, and a reader that parks an idle connection shallow, or without a goroutine
// in the idle poller (park_linux.go). The fast paths (a raw write(2), a MSG_PEEK
// readability check, the idle poller) exist on Linux only, for plain TCP sockets
// (socket_linux.go); elsewhere, and for TLS, the portable path (socket_other.go, or the
// same code with no descriptor) queues every frame and reads through the library.
//
// A Conn is written by two goroutines at most: the fan-out's TryWrite (a TryLock, never
// waiting) and the one client writer's WriteMany and Close; the reader goroutine reads,
// and the library's automatic pong and close replies go through the same lock.
package transport

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Conn is one upgraded websocket connection. Its writing methods are the hub's Transport;
// its reading methods are the session's.
type Conn struct {
	s            socket
	ws           *websocket.Conn
	writeTimeout time.Duration
	wake         func() // SetWake's: an idle reader parks its connection (park_linux.go)
}

// Upgrade answers r's websocket handshake (refusing it itself when it is not valid) and
// returns the connection. writeTimeout bounds each write to the socket. The caller checks
// the origin before.
func Upgrade(w http.ResponseWriter, r *http.Request, writeTimeout time.Duration) (*Conn, error) {
	c := &Conn{writeTimeout: writeTimeout}
	up := websocket.Upgrader{
		ReadBufferSize:   0, // use the hijacker's reader (readBufferSize)
		WriteBufferPool:  writeBufPool,
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      func(*http.Request) bool { return true }, // the caller's job
	}
	ws, err := up.Upgrade(&hijacker{ResponseWriter: w, conn: c}, r, nil)
	if err != nil {
		return nil, err
	}
	c.ws = ws
	return c, nil
}

// writeBufPool shares write buffers between connections: an idle one holds none.
var writeBufPool = &sync.Pool{}

// TryWrite writes a complete frame right away if the socket takes it without waiting and
// nothing else is being written; it returns the bytes written. 0: queue the frame. Less
// than len(frame): the rest is pending (Pending) and goes out first in the next WriteMany.
func (c *Conn) TryWrite(frame []byte, now time.Time) int { return c.s.tryWrite(frame, now) }

// Pending reports whether the tail of a frame TryWrite began waits to be written.
func (c *Conn) Pending() bool { return c.s.pending() }

// WriteMany writes frames (complete server frames), after any pending tail and with a
// ping when ping is set, in one write.
func (c *Conn) WriteMany(frames [][]byte, ping bool) error {
	now := time.Now()
	c.s.begin()
	c.s.add(frames)
	if ping {
		_ = c.ws.WriteControl(websocket.PingMessage, nil, now.Add(c.writeTimeout))
	}
	return c.s.flush(now, c.writeTimeout)
}

// Close sends a close frame with code and text (none when code is 0), waits until wait
// is closed or a second has passed (nil: no wait) so that the peer reads the frame before
// the TCP connection goes away, then closes the socket. It is the only close; later
// calls (and the library's) find the socket closed.
func (c *Conn) Close(code int, text string, wait <-chan struct{}) {
	if code != 0 {
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(c.writeTimeout))
		if wait != nil {
			select {
			case <-wait:
			case <-time.After(time.Second):
			}
		}
	}
	_ = c.s.Close()
}

// SetReadLimit, SetReadDeadline: the library's.
func (c *Conn) SetReadLimit(n int64)              { c.ws.SetReadLimit(n) }
func (c *Conn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

// SetPongHandler sets what runs for each pong the client sends, whoever reads it. An
// error it returns ends the reading when the library read the pong (the library's rule).
func (c *Conn) SetPongHandler(f func() error) {
	c.ws.SetPongHandler(func(string) error { return f() })
}

// ErrParked is ReadMessage's answer, after SetWake, when there was nothing to read: the
// connection waits in the idle poller, without a goroutine, and the wake function runs
// on a new goroutine once it is readable, its read deadline has passed or it was closed.
// The caller returns at once and leaves the connection to the wake function.
var ErrParked = errors.New("transport: connection parked")

// SetWake lets ReadMessage park the connection while it is idle, instead of waiting:
// wake then continues the reading (on Linux, plain sockets; elsewhere ReadMessage waits).
// Call it before the first ReadMessage.
func (c *Conn) SetWake(wake func()) { c.wake = wake }

// ReadMessage returns the next data message. While there is none it waits in
// awaitMessage, consuming pongs, or returns ErrParked (see SetWake).
func (c *Conn) ReadMessage() (messageType int, p []byte, err error) {
	if c.awaitMessage() {
		return 0, nil, ErrParked
	}
	return c.ws.ReadMessage()
}

// awaitMessage waits, a few calls deep, until the read buffer holds the start of a frame
// other than a pong, or the socket failed; the websocket library then reads the message.
// Whole pong frames are consumed here, calling the pong handler for each. A pong is all an idle
// connection receives (one per ping): handed to the library, it would take the reader
// into the library's read path and park it there, deep, waiting for the next frame, on a
// stack grown past the 2 KiB minimum. Parked here instead, the reader keeps a small stack
// (the runtime shrinks one that a command grew). Anything unusual (a pong that breaks
// the protocol, a read error, end of stream) is left to the library to report. With a
// wake function (SetWake) it parks the connection instead of waiting, and returns true.
func (c *Conn) awaitMessage() (parked bool) {
	br := c.s.br
	if br == nil || !c.s.sys.ok() {
		return false
	}
	c.s.restoreReadBuf() // a parked connection's buffer was dropped (park_linux.go)
	for {
		buf, _ := br.Peek(br.Buffered())
		n := pongLen(buf)
		if n > 0 {
			_, _ = br.Discard(n)
			_ = c.ws.PongHandler()("")
			continue
		}
		if n < 0 {
			return false // a frame for the library
		}
		// Empty, or the start of what may be a pong: park, or wait for the socket, then
		// read what it has (the wait returned, so this read does not block).
		if c.wake != nil && c.s.park(c.wake) {
			return true
		}
		if !c.s.sys.waitReadable() {
			return false
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return false
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
