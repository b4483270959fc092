//go:build linux

package transport

import (
	"container/heap"
	"os"
	"sync"
	"syscall"
	"time"
)

// An idle connection's reader need not be a goroutine. A parked goroutine costs its 2 KiB
// stack and 0.45 KiB descriptor, and the GC's headroom counts stacks too (GOGC=100
// doubles them): measured on the all-in-one at 15,000 idle sockets, the readers were
// ~5 KiB of the 8.4–8.8 KiB RSS per socket. So a reader with nothing to read parks its
// connection here and returns; the idle poller (one goroutine for every parked
// connection, waiting in Go's netpoller on an epoll descriptor of its own) starts the
// connection's wake function on a new goroutine once the socket is readable (data, end
// of stream, error), its read deadline has passed, or it was closed.
//
// Each connection is added to the poller's epoll set once (EPOLLONESHOT, re-armed by
// every park) and removed before its socket is closed. The poller goroutine exists while
// any connection is in the set.

// parking is a socket's state in the idle poller, guarded by poller.mu.
type parking struct {
	wake     func() // started on a new goroutine when a parked connection wakes
	inSet    bool   // in the epoll set
	parked   bool   // a wake is due
	closed   bool   // the socket is closing: park no more
	fd       int32
	heapIdx  int32 // in poller.deadlines while parked with a deadline
	deadline int64 // the parked connection's read deadline (unix ns), 0: none
}

type idlePoller struct {
	mu        sync.Mutex
	epfd      *os.File // nil until the first park
	raw       syscall.RawConn
	running   bool
	inSet     int          // connections in the epoll set
	byFD      []*socket    // the connection each descriptor in the set belongs to
	deadlines deadlineHeap // parked connections with a read deadline, earliest first
	timer     time.Time    // the deadline set on epfd (zero: none)
	wakes     []func()     // the poller's scratch
	events    [128]syscall.EpollEvent
}

var poller idlePoller

// park hands c to the idle poller unless there is something to read already, its read
// deadline has passed, or it is closing; true: parked, wake will run (the caller must not
// touch the connection any more). false: the caller waits as it would have.
func (c *socket) park(wake func()) bool {
	if c.sys.raw == nil || c.readableNow() {
		return false
	}
	dl := c.readDeadline.Load()
	if dl != 0 && time.Now().UnixNano() >= dl {
		return false
	}
	// An empty read buffer goes while the connection is parked (the reader makes a new
	// one when it runs again, restoreReadBuf): 288 bytes of heap per idle connection, and
	// as much again in GC headroom. Dropped before the park: once parked, the wake may
	// already run on another goroutine.
	dropped := c.dropReadBuf()
	if poller.park(c, wake, dl) {
		return true
	}
	if dropped {
		c.restoreReadBuf()
	}
	return false
}

// readableNow reports whether a read would not block (data, end of stream or an error).
func (c *socket) readableNow() bool {
	readable := true
	_ = c.sys.raw.Control(func(fd uintptr) {
		for {
			_, _, err := syscall.Recvfrom(int(fd), c.sys.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err != syscall.EINTR {
				readable = err != syscall.EAGAIN
				return
			}
		}
	})
	return readable
}

func (p *idlePoller) park(c *socket, wake func(), deadline int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pk := &c.idle
	if pk.closed || pk.parked {
		return false
	}
	if p.epfd == nil && !p.open() {
		return false
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT}
	op := syscall.EPOLL_CTL_MOD
	if !pk.inSet {
		op = syscall.EPOLL_CTL_ADD
	}
	var cerr error
	if err := c.sys.raw.Control(func(fd uintptr) {
		pk.fd, ev.Fd = int32(fd), int32(fd)
		cerr = syscall.EpollCtl(int(p.epfd.Fd()), op, int(fd), &ev)
	}); err != nil || cerr != nil {
		return false
	}
	if !pk.inSet {
		pk.inSet = true
		p.inSet++
		for int(pk.fd) >= len(p.byFD) {
			p.byFD = append(p.byFD, nil)
		}
		p.byFD[pk.fd] = c
	}
	pk.wake, pk.parked, pk.deadline = wake, true, deadline
	if deadline != 0 {
		heap.Push(&p.deadlines, c)
		p.setTimerLocked()
	}
	if !p.running {
		p.running = true
		go p.run()
	}
	return true
}

// forget takes c out of the poller before its socket closes, waking its reader if parked
// (the reader then finds the socket closed).
func (c *socket) forget() {
	if c.sys.raw == nil {
		return
	}
	p := &poller
	p.mu.Lock()
	pk := &c.idle
	pk.closed = true
	wake := p.unparkLocked(c)
	if pk.inSet {
		_ = c.sys.raw.Control(func(fd uintptr) {
			_ = syscall.EpollCtl(int(p.epfd.Fd()), syscall.EPOLL_CTL_DEL, int(fd), nil)
		})
		pk.inSet = false
		p.byFD[pk.fd] = nil
		p.inSet--
		if p.inSet == 0 {
			_ = p.epfd.SetReadDeadline(time.Unix(1, 0)) // the poller sees the empty set and ends
			p.timer = time.Unix(1, 0)
		}
	}
	p.mu.Unlock()
	if wake != nil {
		go wake()
	}
}

// open makes the epoll descriptor, non-blocking so that the poller waits for it in Go's
// netpoller (an epoll descriptor is itself readable while events are ready).
func (p *idlePoller) open() bool {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return false
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return false
	}
	f := os.NewFile(uintptr(fd), "idle-epoll")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return false
	}
	p.epfd, p.raw = f, raw
	return true
}

// run waits for parked connections' events and deadlines and starts their wakes; it
// returns when no connection is in the set.
func (p *idlePoller) run() {
	for {
		p.mu.Lock()
		if p.inSet == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		n := 0
		// Read returns when epoll_wait found events, or with an error when epfd's deadline
		// (the earliest parked read deadline) passed.
		_ = p.raw.Read(func(fd uintptr) bool {
			var err error
			n, err = syscall.EpollWait(int(fd), p.events[:], 0)
			if err != nil {
				n = 0
				return err != syscall.EINTR && err != syscall.EAGAIN
			}
			return n > 0
		})
		p.mu.Lock()
		wakes := p.wakes[:0]
		for _, ev := range p.events[:n] {
			if int(ev.Fd) < len(p.byFD) {
				if c := p.byFD[ev.Fd]; c != nil {
					// A descriptor reused since the event was queued wakes its new
					// connection needlessly: its reader finds nothing and parks again.
					if w := p.unparkLocked(c); w != nil {
						wakes = append(wakes, w)
					}
				}
			}
		}
		now := time.Now().UnixNano()
		for len(p.deadlines) > 0 && p.deadlines[0].idle.deadline <= now {
			if w := p.unparkLocked(p.deadlines[0]); w != nil {
				wakes = append(wakes, w)
			}
		}
		p.timer = time.Time{}
		p.setTimerLocked()
		p.mu.Unlock()
		for i, w := range wakes {
			go w()
			wakes[i] = nil
		}
		p.wakes = wakes[:0]
	}
}

// unparkLocked ends c's park and returns its wake (nil: not parked). Caller holds mu.
func (p *idlePoller) unparkLocked(c *socket) func() {
	pk := &c.idle
	if !pk.parked {
		return nil
	}
	pk.parked = false
	if pk.deadline != 0 {
		heap.Remove(&p.deadlines, int(pk.heapIdx))
	}
	w := pk.wake
	pk.wake = nil
	return w
}

// setTimerLocked sets epfd's deadline to the earliest parked deadline when that is
// earlier than the one set (the poller resets it after every wait). Caller holds mu.
func (p *idlePoller) setTimerLocked() {
	if len(p.deadlines) == 0 {
		if p.timer.IsZero() {
			_ = p.epfd.SetReadDeadline(time.Time{})
		}
		return
	}
	// A millisecond late rather than early: woken early, the reader would only park again.
	t := time.Unix(0, p.deadlines[0].idle.deadline).Add(time.Millisecond)
	if p.timer.IsZero() || t.Before(p.timer) {
		p.timer = t
		_ = p.epfd.SetReadDeadline(t)
	}
}

// deadlineHeap orders parked connections by read deadline.
type deadlineHeap []*socket

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].idle.deadline < h[j].idle.deadline }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idle.heapIdx, h[j].idle.heapIdx = int32(i), int32(j)
}
func (h *deadlineHeap) Push(x any) {
	c := x.(*socket)
	c.idle.heapIdx = int32(len(*h))
	*h = append(*h, c)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return c
}
