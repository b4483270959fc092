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
	b := backoff{min: lo, max: time.Second}
	if d1, d2, d3, d4 := b.next(), b.next(), b.next(), b.next(); d1 != lo || d2 != 2*lo || d3 != time.Second || d4 != time.Second {
		t.Errorf("backoff = %v %v %v %v", d1, d2, d3, d4)
	}
	b.reset()
	if d := b.next(); d != lo {
		t.Errorf("after reset: %v", d)
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
