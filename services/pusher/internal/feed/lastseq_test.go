package feed

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A storm of callers shares requests, but never one sent before the caller arrived.
func TestLastSeqAskCoalescesOnlyLaterRequests(t *testing.T) {
	var stream atomic.Uint64 // the stream's last seq
	var sent atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{}, 16)
	a := &lastSeqAsk{timeout: 5 * time.Second, fetch: func(ctx context.Context) (uint64, error) {
		sent.Add(1)
		seq := stream.Load() // the answer reflects the stream when the request was sent
		started <- struct{}{}
		<-release
		return seq, nil
	}}
	stream.Store(10)
	first := make(chan uint64)
	go func() { seq, _ := a.get(context.Background()); first <- seq }()
	<-started // request 1 (seq 10) in flight

	stream.Store(11) // acknowledged before the next callers arrive
	const n = 200
	var wg sync.WaitGroup
	got := make([]uint64, n)
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); got[i], _ = a.get(context.Background()) }()
	}
	// Wait until all n wait for the next request, then let request 1 answer.
	for {
		a.mu.Lock()
		queued := a.next != nil && a.next.waiters == n
		a.mu.Unlock()
		if queued {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	if seq := <-first; seq != 10 {
		t.Fatalf("first caller got %d", seq)
	}
	wg.Wait()
	for i, seq := range got {
		if seq < 11 {
			t.Fatalf("caller %d got %d: a request sent before it arrived", i, seq)
		}
	}
	if s := sent.Load(); s != 2 {
		t.Fatalf("%d requests for %d callers: not coalesced", s, n+1)
	}
	if _, err := a.get(context.Background()); err != nil {
		t.Fatal(err)
	}
}
