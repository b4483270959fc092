package persist

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
)

// TestThroughput measures how fast a backlog is stored. It runs only when
// CHAT_PERSISTER_THROUGHPUT is set to the number of messages, e.g.
//
//	CHAT_PERSISTER_THROUGHPUT=20000 go test -count=1 -run TestThroughput -v ./services/persister/internal/persist/
//
// CHAT_PERSISTER_BATCH overrides the batch size (default 500).
func TestThroughput(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CHAT_PERSISTER_THROUGHPUT"))
	if n <= 0 {
		t.Skip("set CHAT_PERSISTER_THROUGHPUT=<messages> to measure")
	}
	e := newEnv(t)
	cfg := testConfig()
	cfg.AckWait = 30 * time.Second
	cfg.BatchSize = 500
	if b, _ := strconv.Atoi(os.Getenv("CHAT_PERSISTER_BATCH")); b > 0 {
		cfg.BatchSize = b
	}
	start := time.Now()
	e.publishN(t, "general", n)
	t.Logf("published %d in %v", n, time.Since(start))

	start = time.Now()
	in := e.start(t, cfg, nil)
	storedN(t, in, n)
	d := time.Since(start)
	t.Logf("backlog: stored %d messages in %v: %.0f msgs/s (batch %d, %d batches)",
		n, d, float64(n)/d.Seconds(), cfg.BatchSize, histCount(in))

	// Live: publishing and storing at once.
	start = time.Now()
	e.publishN(t, "general", n)
	storedN(t, in, 2*n)
	d = time.Since(start)
	t.Logf("live: published and stored %d messages in %v: %.0f msgs/s", n, d, float64(n)/d.Seconds())
	e.waitStored(t, 2*n, time.Minute)

	// Latency of a lone message (the batch waits BatchWait for company).
	var worst time.Duration
	for i := range 20 {
		start := time.Now()
		e.publishN(t, "general", 1)
		storedN(t, in, 2*n+i+1)
		worst = max(worst, time.Since(start))
	}
	t.Logf("lone message: published and stored within %v (worst of 20)", worst)
}

// storedN waits (cheaply, on the metric, not on MongoDB) until n messages are stored.
func storedN(t *testing.T, in *instance, n int) {
	chattest.Eventually(t, 5*time.Minute, func() bool { return counter(in.p.met.stored) >= n }, "%d stored", n)
}

func histCount(in *instance) uint64 {
	mfs, err := in.reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == "chat_persister_batch_size" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}
