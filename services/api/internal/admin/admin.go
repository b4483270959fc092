// Package admin is the api's admin page for people on call: GET /admin (a page embedded
// in the binary, no CDN) and its JSON routes under /admin/api/: every node's numbers
// gathered over NATS (pkg/ops, so any number of nodes behind a load balancer show), the
// CHAT and DEADLETTER streams, the persister consumer, the busiest rooms, and the dead
// letters with requeue and discard. Access: access.go.
package admin

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/chatrt/chat/pkg/auth"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

//go:embed static
var static embed.FS

// Options configure the admin handler.
type Options struct {
	NATS *nats.Conn
	// Auth is the api's token verifier; nil (authentication off) limits the page to
	// loopback clients.
	Auth *auth.Verifier
	// StatsWait is how long a stats request collects the nodes' answers (default 500ms).
	StatsWait time.Duration
	// Timeout bounds each JetStream request (default 3s).
	Timeout time.Duration
	// RetryAfter is the Retry-After of a 503 (default 2s; the api's CHAT_RETRY_AFTER).
	RetryAfter time.Duration
	Log        *slog.Logger
}

// Handler serves /admin and /admin/...
type Handler struct {
	o   Options
	js  jetstream.JetStream
	log *slog.Logger
	mux *http.ServeMux
	// routes are the served routes as "METHOD /pattern" (Routes).
	routes []string
}

// DefaultStatsWait is how long a stats request waits for the nodes' answers.
const DefaultStatsWait = 500 * time.Millisecond

// New returns the admin handler.
func New(o Options) (*Handler, error) {
	if o.NATS == nil {
		return nil, errors.New("admin: NATS is required")
	}
	if o.StatsWait <= 0 {
		o.StatsWait = DefaultStatsWait
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	js, err := jetstream.New(o.NATS)
	if err != nil {
		return nil, fmt.Errorf("admin: jetstream: %w", err)
	}
	h := &Handler{o: o, js: js, log: o.Log, mux: http.NewServeMux()}
	page := pageHandler()
	for _, rt := range []struct {
		method, pattern string
		h               http.Handler
	}{
		{http.MethodGet, "/admin", page},
		{http.MethodGet, "/admin/{$}", page},
		{http.MethodGet, "/admin/admin.js", page},
		{http.MethodGet, "/admin/admin.css", page},
		{http.MethodGet, "/admin/api/stats", http.HandlerFunc(h.stats)},
		{http.MethodGet, "/admin/api/deadletters", http.HandlerFunc(h.listDeadLetters)},
		{http.MethodDelete, "/admin/api/deadletters/{seq}", http.HandlerFunc(h.discard)},
		{http.MethodPost, "/admin/api/deadletters/{seq}/requeue", http.HandlerFunc(h.requeue)},
	} {
		h.mux.Handle(rt.pattern, only(rt.method, rt.h))
		h.routes = append(h.routes, rt.method+" "+rt.pattern)
	}
	h.mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not found")
	})
	return h, nil
}

// Routes lists the routes h serves as "METHOD /pattern" (GET answers HEAD too), for the
// api's route listing that docs/openapi.yaml is checked against.
func (h *Handler) Routes() []string { return slices.Clone(h.routes) }

// ServeHTTP checks access (access.go), then serves the route.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.access(h.mux).ServeHTTP(w, r)
}

// only lets method through (GET also answers HEAD); others get 405 with Allow.
func only(method string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == method || (method == http.MethodGet && r.Method == http.MethodHead) {
			next.ServeHTTP(w, r)
			return
		}
		allow := method
		if method == http.MethodGet {
			allow = "GET, HEAD"
		}
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, reason string) {
	writeJSON(w, status, map[string]string{"error": reason})
}

// unavailable answers 503 with Retry-After, as the api's other 503s do: NATS or the
// dead-letter stream is away, and a retry later may succeed.
func (h *Handler) unavailable(w http.ResponseWriter, reason string) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(h.o.RetryAfter.Seconds())))))
	writeError(w, http.StatusServiceUnavailable, reason)
}

// jsContext bounds one JetStream request.
func (h *Handler) jsContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.o.Timeout)
}
