//go:build linux

package transport

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
)

// parkedRead reads c like the session does: ReadMessage, and after ErrParked again on
// the goroutine the wake starts. The first result that is not ErrParked comes on the
// channels.
func parkedRead(c *Conn) (<-chan error, <-chan []byte) {
	errs, msgs := make(chan error, 1), make(chan []byte, 1)
	var read func()
	read = func() {
		_, p, err := c.ReadMessage()
		switch {
		case errors.Is(err, ErrParked):
			return // read runs again on wake
		case err != nil:
			errs <- err
		default:
			msgs <- p
		}
	}
	c.SetWake(read)
	go read()
	return errs, msgs
}

// A parked connection wakes for data (a pong first: consumed, it parks again), for its
// read deadline, and for its close; each wake runs on a goroutine of its own.
func TestParkedConnectionWakes(t *testing.T) {
	t.Run("data", func(t *testing.T) {
		c, nc := upgraded(t)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		pongs := 0
		c.SetPongHandler(func() error { pongs++; return nil })
		errs, msgs := parkedRead(c)
		waitParked(t, c)
		wantReadBuf(t, c, false) // empty: dropped while parked
		if _, err := nc.Write(clientFrameOp(0x8a, "")); err != nil {
			t.Fatal(err)
		}
		waitParked(t, c) // the pong woke it; it parked again
		wantReadBuf(t, c, false)
		// Half a pong: kept in the buffer while parked, completed by the next bytes.
		pong := clientFrameOp(0x8a, "x")
		if _, err := nc.Write(pong[:3]); err != nil {
			t.Fatal(err)
		}
		waitParkedWith(t, c, 3)
		wantReadBuf(t, c, true)
		if _, err := nc.Write(append(pong[3:], clientFrameOp(0x81, "hi")...)); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-msgs:
			if string(p) != "hi" || pongs != 2 {
				t.Fatalf("message %q after %d pongs, want hi after 2", p, pongs)
			}
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(5 * time.Second):
			t.Fatal("a parked connection did not wake for a message")
		}
	})
	t.Run("deadline", func(t *testing.T) {
		c, _ := upgraded(t)
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		errs, _ := parkedRead(c)
		select {
		case err := <-errs:
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("got %v, want a timeout", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a parked connection's read deadline did not end its read")
		}
	})
	t.Run("close", func(t *testing.T) {
		c, _ := upgraded(t)
		_ = c.SetReadDeadline(time.Time{})
		errs, _ := parkedRead(c)
		waitParked(t, c)
		c.Close(0, "", nil)
		select {
		case <-errs:
		case <-time.After(5 * time.Second):
			t.Fatal("closing a parked connection did not end its read")
		}
	})
}

// waitParked waits until c is parked in the idle poller.
func waitParked(t *testing.T, c *Conn) {
	t.Helper()
	chattest.Eventually(t, 5*time.Second, func() bool { return parkedWith(c, -1) }, "the connection did not park")
}

// waitParkedWith waits until c is parked with n bytes in its read buffer.
func waitParkedWith(t *testing.T, c *Conn, n int) {
	t.Helper()
	chattest.Eventually(t, 5*time.Second, func() bool { return parkedWith(c, n) },
		"the connection did not park with %d bytes buffered", n)
}

// parkedWith reports whether c is parked with n bytes in its read buffer (any when n < 0).
func parkedWith(c *Conn, n int) bool {
	poller.mu.Lock()
	defer poller.mu.Unlock()
	return c.s.idle.parked && (n < 0 || c.s.br.Buffered() == n)
}

// wantReadBuf checks, while c is parked, whether its read buffer is kept (it holds the
// start of a frame) or was dropped (it was empty).
func wantReadBuf(t *testing.T, c *Conn, kept bool) {
	t.Helper()
	poller.mu.Lock()
	size := c.s.br.Size()
	poller.mu.Unlock()
	if kept != (size > 0) {
		t.Fatalf("parked with a read buffer of %d bytes, want kept: %v", size, kept)
	}
}
