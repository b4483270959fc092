package persist

import (
	"strings"
	"testing"
	"time"
)

func TestRetryDelay(t *testing.T) {
	lo, hi := 250*time.Millisecond, 30*time.Second
	for n, want := range map[uint64]time.Duration{
		0: lo, 1: lo, 2: 500 * time.Millisecond, 3: time.Second, 6: 32 * lo, 8: hi, 1 << 40: hi,
	} {
		if got := retryDelay(lo, hi, n); got != want {
			t.Errorf("retryDelay(%d) = %v, want %v", n, got, want)
		}
	}
	// The backoff follows retryDelay's steps, each jittered into [step/2, step].
	b := backoff{min: lo, max: time.Second}
	within := func(d, step time.Duration) bool { return d >= step/2 && d <= step }
	if d1, d2, d3, d4 := b.next(), b.next(), b.next(), b.next(); !within(d1, lo) || !within(d2, 2*lo) || !within(d3, time.Second) || !within(d4, time.Second) {
		t.Errorf("backoff = %v %v %v %v", d1, d2, d3, d4)
	}
	b.reset()
	if d := b.next(); !within(d, lo) {
		t.Errorf("after reset: %v", d)
	}
}

// TestRetryJitter: every delay lies within [step/2, step] of its exponential step
// (never above RetryMax), and delays of the same step differ, so messages or persisters
// that failed together do not retry in lockstep.
func TestRetryJitter(t *testing.T) {
	lo, hi := 250*time.Millisecond, 30*time.Second
	for _, n := range []uint64{1, 2, 5, 8, 1 << 40} {
		step := retryDelay(lo, hi, n)
		seen := map[time.Duration]bool{}
		var minD, maxD time.Duration = step, 0
		for range 1000 {
			d := retryJittered(lo, hi, n)
			if d < step/2 || d > step {
				t.Fatalf("delivery %d: delay %v outside [%v, %v]", n, d, step/2, step)
			}
			seen[d] = true
			minD, maxD = min(minD, d), max(maxD, d)
		}
		// 1000 uniform draws: below 100 distinct values or a spread under half the range
		// would mean no real jitter (the odds of either by chance are negligible).
		if len(seen) < 100 || maxD-minD < step/4 {
			t.Errorf("delivery %d (step %v): %d distinct delays in [%v, %v]", n, step, len(seen), minD, maxD)
		}
	}
	b := backoff{min: lo, max: hi}
	first := map[time.Duration]bool{}
	for range 50 {
		first[b.next()] = true
		b.reset()
	}
	if len(first) < 10 {
		t.Errorf("50 first backoff delays take %d values: not jittered", len(first))
	}
	for _, d := range []time.Duration{0, 1, 2, 3} {
		if j := jitter(d); j < d/2 || j > d {
			t.Errorf("jitter(%v) = %v", d, j)
		}
	}
}

func TestEpochOf(t *testing.T) {
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cur := old.Add(time.Hour)
	if got := epochOf(cur.Add(-time.Second), old, cur); !got.Equal(old) {
		t.Errorf("message stored before recreation: epoch %v, want %v", got, old)
	}
	if got := epochOf(cur, old, cur); !got.Equal(cur) {
		t.Errorf("message stored at recreation: epoch %v, want %v", got, cur)
	}
	if got := epochOf(old, time.Time{}, cur); !got.Equal(cur) {
		t.Errorf("no previous epoch: %v, want %v", got, cur)
	}
}

func TestHeaderValue(t *testing.T) {
	if got := headerValue("a\r\nb"); got != "a  b" {
		t.Errorf("headerValue = %q", got)
	}
	long := headerValue(strings.Repeat("é", 300))
	if len(long) > 256 || !strings.HasSuffix(long, "...") || !strings.HasPrefix(long, "éé") {
		t.Errorf("long headerValue = %q (%d bytes)", long, len(long))
	}
}
