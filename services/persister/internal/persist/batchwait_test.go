package persist

import (
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
)

// TestBatchWaitSpacesWrites: a message after a quiet spell is written at once, not
// BatchWait later; messages arriving within BatchWait of a write's start wait for the
// next write and go out together.
func TestBatchWaitSpacesWrites(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.BatchWait = 3 * time.Second
	in := e.start(t, cfg, nil)

	start := time.Now()
	e.publishN(t, "general", 1)
	storedN(t, in, 1)
	if d := time.Since(start); d >= cfg.BatchWait {
		t.Fatalf("a lone message after a quiet spell took %v (BatchWait %v) to store", d, cfg.BatchWait)
	}
	written := time.Now()
	e.publishN(t, "general", 10)
	storedN(t, in, 11)
	if d := time.Since(written); d < cfg.BatchWait/2 {
		t.Errorf("messages right after a write were stored %v later, before the spacing of %v", d, cfg.BatchWait)
	}
	chattest.Eventually(t, 5*time.Second, func() bool { return histCount(in) == 2 }, "batches: %d, want 2", histCount(in))
}
