//go:build linux

package transport

import (
	"math"
	"syscall"
	"unsafe"
)

// sysConn is the descriptor's fast paths on Linux: a non-blocking write straight from the
// fan-out (tryWrite) and a readability check that lets an idle reader park shallow
// (awaitMessage). Both reach the descriptor only through syscall.RawConn, which holds
// Go's reference on it for the duration of the call: a concurrent Close cannot close (or
// let the kernel reuse) the descriptor under us, whoever calls it.
//
// RawConn.Write rather than a descriptor number cached at the hijack (what this was
// before): it adds the descriptor's write lock and a deadline check per write, measured
// (BenchmarkRawWrite, socket_linux_test.go) at ~26 ns against the 3-6 µs of the write(2)
// itself on loopback: within noise of the big room's CPU, for safety by construction.
type sysConn struct {
	raw syscall.RawConn // nil: not a plain socket (TLS, a test's fake): no fast paths

	// write's argument and result (bytes written, or -errno), passed through fields
	// because writeFn is made once per connection: a closure per write would allocate.
	// Used under socket.mu only. res is an int32 next to peekBuf (write passes at most
	// math.MaxInt32 bytes): the socket then fits a smaller allocator size class.
	p       []byte
	writeFn func(fd uintptr) bool

	readable func(fd uintptr) bool // awaitMessage's check, made once
	res      int32
	peekBuf  [1]byte
}

func (s *sysConn) init(raw syscall.RawConn) {
	s.raw = raw
	s.writeFn = func(fd uintptr) bool {
		// A raw system call: it cannot block (Go keeps sockets non-blocking), so the
		// runtime need not be told. Through syscall.Write each of a big room's thousands
		// of writes in a row went through the scheduler's system-call entry and exit: 5 %
		// of the pusher's CPU in that room (A/B, README).
		r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(s.p))), uintptr(len(s.p)))
		s.res = int32(r)
		if errno != 0 {
			s.res = -int32(errno)
		}
		return true // never wait for the socket: the caller queues instead
	}
	s.readable = func(fd uintptr) bool {
		for {
			_, _, err := syscall.Recvfrom(int(fd), s.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err != syscall.EINTR {
				return err != syscall.EAGAIN // data, end of stream or an error
			}
		}
	}
}

func (s *sysConn) ok() bool { return s.raw != nil }

// write writes p with one non-blocking write(2). n 0 and err nil: nothing written now
// (socket buffer full, the connection closing, or its deadline passed); err: the
// connection is broken.
func (s *sysConn) write(p []byte) (n int, err error) {
	s.p = p[:min(len(p), math.MaxInt32)] // the rest, if any, is a partial write's tail
	rerr := s.raw.Write(s.writeFn)
	n, errno := int(s.res), syscall.Errno(0)
	if n < 0 {
		n, errno = 0, syscall.Errno(-n)
	}
	s.p, s.res = nil, 0
	switch {
	case rerr != nil: // closed meanwhile, or the deadline passed: the writer reports it
		return 0, nil
	case errno == syscall.EAGAIN || errno == syscall.EINTR || (errno == 0 && n <= 0):
		return 0, nil
	case errno != 0:
		return 0, errno
	}
	return n, nil
}

// waitReadable parks until the socket has data, reached its end or failed; false when
// there is no way to wait (then the library reads).
func (s *sysConn) waitReadable() bool {
	if s.raw == nil {
		return false
	}
	_ = s.raw.Read(s.readable)
	return true
}
