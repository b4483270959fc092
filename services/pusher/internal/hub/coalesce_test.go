package hub

import (
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/services/pusher/internal/transport"
)

// writeLog records each write a client makes: inline (TryWrite) or batched (WriteMany).
type writeLog struct {
	mu     sync.Mutex
	inline int
	writes []batchWrite
}

type batchWrite struct {
	frames int
	at     time.Time
}

func (w *writeLog) TryWrite(frame []byte, _ time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inline++
	return len(frame)
}
func (w *writeLog) Pending() bool { return false }
func (w *writeLog) WriteMany(frames [][]byte, _ bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(frames) > 0 {
		w.writes = append(w.writes, batchWrite{len(frames), time.Now()})
	}
	return nil
}
func (w *writeLog) Close(int, string, <-chan struct{}) {}

func (w *writeLog) batches() []batchWrite {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]batchWrite(nil), w.writes...)
}

// waitBatches polls the fake transport (no event to wait on) until it has n batches.
func waitBatches(t *testing.T, w *writeLog, n int) []batchWrite {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(w.batches()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d batched writes, want %d", len(w.batches()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return w.batches()
}

// TestQuietClientWrittenAtOnceBusyClientCoalesced: a client gets writeBudget frames
// within one flush interval at once, each with its own write; a frame beyond that makes
// it busy: its frames wait for the rest of the interval and go out in one write, until a
// write carries fewer than quietBelow frames.
func TestQuietClientWrittenAtOnceBusyClientCoalesced(t *testing.T) {
	const gap = 500 * time.Millisecond
	h := New(Config{Window: 8, QueueSize: 64, ReplayBatch: 8, PingInterval: time.Hour, MaxSubs: 4, FlushInterval: gap},
		0, time.Now(), nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	w := &writeLog{}
	c, _ := h.Join(w)
	defer func() { c.Close(CloseServiceRestart, ""); h.Leave(c) }()
	f := &frame{seq: 1, raw: transport.TextFrame([]byte(`{"type":"message"}`))}
	lastWrite := func() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.lastWrite }

	t0 := time.Now()
	for i := range writeBudget {
		if !c.deliver(f, t0.Add(time.Duration(i)*time.Millisecond), true) {
			t.Fatalf("frame %d of a quiet client was queued", i+1)
		}
	}
	// Over budget: this frame and the next ones within the interval go out together.
	for i := range writeBudget {
		if c.deliver(f, t0.Add(time.Duration(writeBudget+i)*time.Millisecond), true) {
			t.Fatalf("frame %d within one interval was written at once (budget %d)", writeBudget+i+1, writeBudget)
		}
	}
	last := t0.Add(time.Duration(writeBudget-1) * time.Millisecond)
	b := waitBatches(t, w, 1)[0]
	if b.frames != writeBudget {
		t.Errorf("a busy client's frames went out %d per write, want all %d in one", b.frames, writeBudget)
	}
	if early := last.Add(gap).Sub(b.at); early > 20*time.Millisecond {
		t.Errorf("the coalesced write came %v before the interval ended", early)
	}
	if w.inline != writeBudget {
		t.Errorf("%d inline writes, want %d", w.inline, writeBudget)
	}

	// Still busy (its last write carried writeBudget frames): a frame within the interval
	// waits for it.
	last = lastWrite()
	if c.deliver(f, last.Add(gap/2), true) {
		t.Fatal("a busy client's frame within the interval was written at once")
	}
	if b := waitBatches(t, w, 2)[1]; b.at.Before(last.Add(gap-20*time.Millisecond)) || b.frames != 1 {
		t.Errorf("a busy client's write of %d came %v after the previous one, want 1 after %v", b.frames, b.at.Sub(last), gap)
	}
	// That write carried less than quietBelow frames: quiet again, written at once.
	if !c.deliver(f, lastWrite().Add(time.Millisecond), true) {
		t.Fatal("a client whose rate fell below the budget was not written at once")
	}
}
