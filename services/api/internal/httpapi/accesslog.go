package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// accessLog decides which requests the access log records. At CHAT_LOG_LEVEL=debug it is
// every request, at debug level. Above debug it is sampled, so that its cost does not
// grow with the traffic (a line per post was a measurable share of a post's CPU, and a
// flood of refused requests must not become a flood of log lines): per status class
// (success, 4xx, 5xx) at most one line per sampleEvery, at info (5xx: warn), with
// "sampled": how many requests of that class it stands for, itself included. Probes
// (/healthz, /readyz, /metrics) and the admin page's polls are logged at debug only.
type accessLog struct {
	log     *slog.Logger
	classes [3]sampler // 2xx/3xx, 4xx, 5xx
}

// sampleEvery is the least time between two sampled lines of one status class.
const sampleEvery = time.Second

type sampler struct {
	next  atomic.Int64 // unix ns from which the next line may be written
	count atomic.Int64 // requests since the last line
}

// take counts a request and reports whether it gets a line, with the count it stands for.
func (s *sampler) take(now time.Time) (int64, bool) {
	s.count.Add(1)
	next := s.next.Load()
	if now.UnixNano() < next || !s.next.CompareAndSwap(next, now.Add(sampleEvery).UnixNano()) {
		return 0, false
	}
	return s.count.Swap(0), true
}

// decide returns the level of r's line and the sample count (0: not sampled), or false
// for no line.
func (a *accessLog) decide(ctx context.Context, r *http.Request, status int, now time.Time) (slog.Level, int64, bool) {
	if a.log.Enabled(ctx, slog.LevelDebug) {
		return slog.LevelDebug, 0, true
	}
	if quietPath(r) {
		return 0, 0, false
	}
	class, level := 0, slog.LevelInfo
	switch {
	case status >= 500:
		class, level = 2, slog.LevelWarn
	case status >= 400:
		class = 1
	}
	n, ok := a.classes[class].take(now)
	return level, n, ok
}

// quietPath: requests that come by the thousand without anyone asking (probes, scrapes,
// the admin page's polls).
func quietPath(r *http.Request) bool {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/admin/api/")
}
