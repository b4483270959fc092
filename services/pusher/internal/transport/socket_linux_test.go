//go:build linux

package transport

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// A plain TCP socket has the fast path; a write after the deadline of an earlier flush
// passed (an idle client) still goes out; after Close nothing is written and nothing
// fails.
func TestTryWrite(t *testing.T) {
	c, nc := upgraded(t)
	if !c.s.sys.ok() {
		t.Fatal("a plain TCP connection has no fast path")
	}
	frame := TextFrame([]byte(`{"type":"x"}`))
	_ = c.s.SetWriteDeadline(time.Now().Add(-time.Second))
	if n := c.TryWrite(frame, time.Now()); n != len(frame) {
		t.Fatalf("TryWrite after the deadline passed wrote %d of %d bytes", n, len(frame))
	}
	buf := make([]byte, len(frame))
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(nc, buf); err != nil || string(buf) != string(frame) {
		t.Fatalf("read %q %v", buf, err)
	}
	c.Close(0, "", nil)
	if n := c.TryWrite(frame, time.Now()); n != 0 || c.s.werr != nil {
		t.Fatalf("TryWrite after Close: %d bytes, error %v", n, c.s.werr)
	}
}

// tcpPair is a loopback TCP connection whose far end is drained.
func tcpPair(b *testing.B) *net.TCPConn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	far := <-accepted
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, far); close(done) }()
	b.Cleanup(func() { c.Close(); far.Close(); <-done })
	return c.(*net.TCPConn)
}

// BenchmarkRawWrite is the fast path's write of a 100-byte frame to a drained loopback
// socket, two ways: fd, the descriptor number cached at the hijack (what the pusher did
// before); rawconn, through syscall.RawConn.Write (what it does: the descriptor's write
// lock and deadline check around the same raw write(2)). The difference is the price of
// a descriptor that cannot be closed under the write.
func BenchmarkRawWrite(b *testing.B) {
	p := make([]byte, 100)
	b.Run("fd", func(b *testing.B) {
		c := tcpPair(b)
		raw, _ := c.SyscallConn()
		var fd uintptr
		_ = raw.Control(func(f uintptr) { fd = f })
		b.ReportAllocs()
		for b.Loop() {
			if _, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p))); errno != 0 && errno != syscall.EAGAIN {
				b.Fatal(errno)
			}
		}
	})
	b.Run("rawconn", func(b *testing.B) {
		c := tcpPair(b)
		raw, _ := c.SyscallConn()
		var s sysConn
		s.init(raw)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.write(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The overhead alone: RawConn.Write around a function that makes no system call.
	b.Run("rawconn-overhead", func(b *testing.B) {
		c := tcpPair(b)
		raw, _ := c.SyscallConn()
		f := func(uintptr) bool { return true }
		b.ReportAllocs()
		for b.Loop() {
			_ = raw.Write(f)
		}
	})
}
