package httpapi

import (
	"context"
	"sync"
)

// inflight counts posts being handled so that a drain can wait for them, and refuses new
// ones once the drain has begun (so nothing publishes after it returns).
type inflight struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // closed when n drops to 0 after closing
}

func (f *inflight) init() { f.idle = make(chan struct{}) }

// enter registers a post; false once draining.
func (f *inflight) enter() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.n++
	return true
}

func (f *inflight) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.closed && f.n == 0 {
		close(f.idle)
	}
}

func (f *inflight) closeAndWait(ctx context.Context) error {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		if f.n == 0 {
			close(f.idle)
		}
	}
	f.mu.Unlock()
	select {
	case <-f.idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
