package persist

import "time"

// Retries back off exponentially: a redelivered message that fails again waits twice as
// long as before, up to a cap. JetStream's own consumer BackOff is not used: it only
// governs ack timeouts, replaces AckWait with its first step, and mixes badly with
// NakWithDelay (the server measures a nak delay against AckWait but the deadline against
// the BackOff step). NakWithDelay with our own schedule works with MaxDeliver -1.

// retryDelay is the nak delay for a message delivered n times (n >= 1).
func retryDelay(lo, hi time.Duration, n uint64) time.Duration {
	d := lo
	for i := uint64(1); i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// backoff is a consecutive-failure counter with exponential delays.
type backoff struct {
	min, max time.Duration
	n        uint64
}

func (b *backoff) next() time.Duration {
	b.n++
	return retryDelay(b.min, b.max, b.n)
}

func (b *backoff) reset() { b.n = 0 }
