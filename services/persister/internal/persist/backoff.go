package persist

import (
	"math/rand/v2"
	"time"
)

// Retries back off exponentially: a redelivered message that fails again waits twice as
// long as before, up to a cap. JetStream's own consumer BackOff is not used: it only
// governs ack timeouts, replaces AckWait with its first step, and mixes badly with
// NakWithDelay (the server measures a nak delay against AckWait but the deadline against
// the BackOff step). NakWithDelay with our own schedule works with MaxDeliver -1.
//
// Every delay is jittered: drawn uniformly from [d/2, d] of the exponential step d
// ("equal jitter"). Without it, the messages of a batch that failed together (a MongoDB
// outage fails every message in flight, on every persister) come back together, at each
// step again, and hit the recovering store as one wave.

// retryDelay is the exponential step for a message delivered n times (n >= 1); the
// delay waited is jittered from it (retryJittered).
func retryDelay(lo, hi time.Duration, n uint64) time.Duration {
	d := lo
	for i := uint64(1); i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// jitter draws a delay uniformly from [d/2, d] (d itself when d < 2ns).
func jitter(d time.Duration) time.Duration {
	if d < 2 {
		return d
	}
	half := d / 2
	return d - half + rand.N(half+1)
}

// retryJittered is retryDelay with jitter: the nak delay actually used.
func retryJittered(lo, hi time.Duration, n uint64) time.Duration {
	return jitter(retryDelay(lo, hi, n))
}

// backoff is a consecutive-failure counter with exponential, jittered delays.
type backoff struct {
	min, max time.Duration
	n        uint64
}

func (b *backoff) next() time.Duration {
	b.n++
	return retryJittered(b.min, b.max, b.n)
}

func (b *backoff) reset() { b.n = 0 }
