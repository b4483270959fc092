// Package ratelimit limits posts per client with one token bucket per client key and
// resolves the client of a request (its peer address, or X-Forwarded-For when the peer
// is a trusted proxy).
package ratelimit

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// sweepEvery is how often Allow looks for idle buckets to evict.
const sweepEvery = time.Minute

// Limiter holds one token bucket per client. A nil *Limiter allows everything.
type Limiter struct {
	limit rate.Limit
	burst int
	idle  time.Duration // a bucket unused this long is full again and can be forgotten
	now   func() time.Time

	mu        sync.Mutex
	clients   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

// New returns a limiter allowing perSecond events per client with bursts of burst.
// perSecond <= 0 disables limiting (New returns nil). A burst below 1 becomes
// max(1, ceil(perSecond)).
func New(perSecond float64, burst int) *Limiter {
	if perSecond <= 0 || math.IsNaN(perSecond) || math.IsInf(perSecond, 0) {
		return nil
	}
	if burst < 1 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	// Once idle for burst/perSecond the bucket is full: forgetting it changes nothing.
	refill := time.Duration(float64(burst) / perSecond * float64(time.Second))
	return &Limiter{
		limit:   rate.Limit(perSecond),
		burst:   burst,
		idle:    max(refill, time.Minute),
		now:     time.Now,
		clients: make(map[string]*bucket),
	}
}

// Allow takes a token from key's bucket. When none is left it returns false and how long
// until one is available.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= sweepEvery {
		l.sweepLocked(now)
	}
	b := l.clients[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.clients[key] = b
	}
	b.last = now
	r := b.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

func (l *Limiter) sweepLocked(now time.Time) {
	l.lastSweep = now
	for k, b := range l.clients {
		if now.Sub(b.last) >= l.idle {
			delete(l.clients, k)
		}
	}
}

// Len is the number of clients currently tracked.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}
