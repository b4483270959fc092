package feed

import (
	"context"
	"sync"
	"time"
)

// lastSeqAsk coalesces asks for the stream's last seq: a connect storm (thousands of
// resumes at once after a pusher died) sends one stream info per round trip, not one per
// subscribe. A caller shares only a request sent after it arrived: one already in flight
// may have been answered before a message the caller saw acknowledged was stored, so
// callers arriving meanwhile wait for the next request, sent when the current one
// returns. At most one request is in flight.
type lastSeqAsk struct {
	fetch   func(ctx context.Context) (uint64, error)
	timeout time.Duration

	mu       sync.Mutex
	inflight bool
	next     *lastSeqCall // callers waiting for a request not sent yet
}

type lastSeqCall struct {
	done    chan struct{}
	waiters int // callers sharing it
	seq     uint64
	err     error
}

func (a *lastSeqAsk) get(ctx context.Context) (uint64, error) {
	a.mu.Lock()
	if a.next == nil {
		a.next = &lastSeqCall{done: make(chan struct{})}
	}
	call := a.next
	call.waiters++
	if !a.inflight {
		a.inflight = true
		go a.run()
	}
	a.mu.Unlock()
	select {
	case <-call.done:
		return call.seq, call.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// run sends requests while callers wait for one.
func (a *lastSeqAsk) run() {
	for {
		a.mu.Lock()
		call := a.next
		a.next = nil
		if call == nil {
			a.inflight = false
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
		call.seq, call.err = a.fetch(ctx)
		cancel()
		close(call.done)
	}
}
