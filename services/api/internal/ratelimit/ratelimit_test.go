package ratelimit

import (
	"testing"
	"time"
)

func TestLimiterBurstThenRefuse(t *testing.T) {
	l := New(1, 3)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	for i := range 3 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("post %d refused inside the burst", i)
		}
	}
	ok, after := l.Allow("a")
	if ok || after <= 0 || after > time.Second {
		t.Fatalf("4th post: ok=%v retryAfter=%v, want refused with 0<retry<=1s", ok, after)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another client was refused")
	}
	now = now.Add(time.Second)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("refused after a token refilled")
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("allowed more than the refill")
	}
}

func TestLimiterRefusalDoesNotConsume(t *testing.T) {
	l := New(1, 1)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	l.Allow("a")
	for range 10 {
		if ok, _ := l.Allow("a"); ok {
			t.Fatal("allowed with an empty bucket")
		}
	}
	now = now.Add(time.Second)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("refusals consumed future tokens")
	}
}

func TestLimiterDisabled(t *testing.T) {
	if l := New(0, 200); l != nil {
		t.Fatal("rate 0 must disable the limiter")
	}
	var l *Limiter
	for range 1000 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatal("disabled limiter refused")
		}
	}
}

func TestLimiterEvictsIdleBuckets(t *testing.T) {
	l := New(50, 200) // full again after 4s; kept at least a minute
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	l.Allow("a")
	l.Allow("b")
	now = now.Add(30 * time.Second)
	l.Allow("b")
	now = now.Add(40 * time.Second) // a idle 70s, b idle 40s; sweep due
	l.Allow("c")
	if got := l.Len(); got != 2 {
		t.Fatalf("tracked %d clients, want 2 (b, c)", got)
	}
	if _, ok := l.clients["a"]; ok {
		t.Fatal("idle bucket a not evicted")
	}
}

func TestBurstDefault(t *testing.T) {
	if l := New(2.5, 0); l.burst != 3 {
		t.Fatalf("burst = %d, want 3", l.burst)
	}
}
