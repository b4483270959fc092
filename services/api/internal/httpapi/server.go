// Package httpapi is the api's HTTP surface: posting messages (published to JetStream,
// answered after the ack), changing them (edit, delete, reactions: change.go,
// reactions.go, who may: editkey.go), reading history pages from MongoDB, health,
// readiness, metrics and the OpenAPI document (package apidoc), with JSON errors, rate
// limiting, request ids and an access log.
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/chatrt/chat/pkg/auth"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/clientip"
	"github.com/chatrt/chat/services/api/internal/apidoc"
	"github.com/chatrt/chat/services/api/internal/change"
	"github.com/chatrt/chat/services/api/internal/ratelimit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MaxBodyBytes is the largest POST body accepted (contract: 65,536 bytes).
const MaxBodyBytes = 65536

// Stream appends a validated message, posted by author (a chat.AuthorID, "" when
// anonymous), to the CHAT stream and returns it as stored (with its seq).
// *stream.Appender implements it.
type Stream interface {
	Append(ctx context.Context, m chat.Message, author string) (stored chat.Message, duplicate bool, err error)
	Connected() bool
	Status() string
}

// Changes makes changes to messages, serialized per message. *change.Changer implements it.
type Changes interface {
	Change(ctx context.Context, room, id, author string, decide change.Decide) (change.Result, error)
}

// EditKeys computes and checks the edit keys of posts made without authentication.
// *editkey.Keys implements it.
type EditKeys interface {
	Key(room, id string) string
	Check(room, id, key string) bool
}

// History reads history pages.
type History interface {
	Latest(ctx context.Context, room string, limit int) ([]chat.Message, error)
	LatestVisible(ctx context.Context, room string, limit int) ([]chat.Message, error)
	Before(ctx context.Context, room string, seq uint64, limit int) ([]chat.Message, error)
	After(ctx context.Context, room string, seq uint64, limit int) ([]chat.Message, error)
	Ping(ctx context.Context) error
}

// Admin is the admin page's handler, mounted at /admin and /admin/...; Routes lists what
// it serves ("METHOD /pattern"). *admin.Handler implements it.
type Admin interface {
	http.Handler
	Routes() []string
}

// Options configure a Server.
type Options struct {
	Stream         Stream
	History        History
	Rooms          Rooms    // the room list (GET /rooms); nil: 503
	Presence       Presence // who is connected (GET /rooms/{room}/presence, online); nil: nobody
	Changes        Changes
	EditKeys       EditKeys           // required when Auth is nil
	Reactions      []string           // the emoji reactions may use (ParseReactions)
	Limiter        *ratelimit.Limiter // nil: no rate limit
	Auth           *auth.Verifier     // nil: no authentication
	Clients        clientip.Resolver
	HistoryTimeout time.Duration // per history query; <= 0 means 5s
	RetryAfter     time.Duration // Retry-After on 503; <= 0 means 2s
	UI             http.Handler  // GET / and static files
	Admin          Admin         // /admin and /admin/... (nil: 404)
	// AllowedOrigins get CORS answers (scheme://host[:port] each, "*" any; see cors.go).
	AllowedOrigins []string
	Metrics        *prometheus.Registry
	Log            *slog.Logger
}

// Server serves the api's routes.
type Server struct {
	o        Options
	log      *slog.Logger
	access   *accessLog
	metrics  *metrics
	origins  origins
	draining atomic.Bool
	inflight inflight
	handler  http.Handler
	// reactions is the emoji allowlist, in the configured order.
	reactions []string
}

// New registers the metrics on o.Metrics and builds the handler.
func New(o Options) (*Server, error) {
	if o.HistoryTimeout <= 0 {
		o.HistoryTimeout = 5 * time.Second
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.UI == nil {
		o.UI = http.NotFoundHandler()
	}
	m, err := newMetrics(o.Metrics)
	if err != nil {
		return nil, err
	}
	allowed, err := parseOrigins(o.AllowedOrigins)
	if err != nil {
		return nil, err
	}
	if o.Changes == nil {
		return nil, errors.New("httpapi: Changes is required")
	}
	if o.Auth == nil && o.EditKeys == nil {
		return nil, errors.New("httpapi: EditKeys is required when authentication is off")
	}
	reactions, err := ParseReactions(o.Reactions)
	if err != nil {
		return nil, err
	}
	s := &Server{o: o, log: o.Log, access: &accessLog{log: o.Log}, metrics: m, origins: allowed, reactions: reactions}
	s.inflight.init()
	s.handler = s.middleware(s.cors(s.routes()))
	return s, nil
}

// Handler is every route of the api.
func (s *Server) Handler() http.Handler { return s.handler }

// Drain makes the server not ready and refuse new posts (503), then waits until the posts
// in flight are answered or ctx ends.
func (s *Server) Drain(ctx context.Context) error {
	s.draining.Store(true)
	return s.inflight.closeAndWait(ctx)
}

// route is one pattern of the api's mux and its handlers by method.
type route struct {
	pattern string
	methods methods
}

// routeTable is every route the api serves: routes builds the mux from it and Routes
// lists it, so that the OpenAPI document's test sees exactly what is served.
func (s *Server) routeTable() []route {
	return []route{
		{"/messages", methods{
			http.MethodGet:  http.HandlerFunc(s.getDefaultRoom),
			http.MethodPost: http.HandlerFunc(s.postDefault),
		}},
		{"/rooms", methods{http.MethodGet: http.HandlerFunc(s.getRooms)}},
		{"/rooms/{room}/presence", methods{http.MethodGet: http.HandlerFunc(s.getPresence)}},
		{"/rooms/{room}/messages", methods{
			http.MethodGet:  http.HandlerFunc(s.getRoom),
			http.MethodPost: http.HandlerFunc(s.postRoom),
		}},
		{"/rooms/{room}/messages/{id}", methods{
			http.MethodPatch:  http.HandlerFunc(s.edit),
			http.MethodDelete: http.HandlerFunc(s.delete),
		}},
		{"/rooms/{room}/messages/{id}/reactions", methods{http.MethodPost: http.HandlerFunc(s.react)}},
		{"/rooms/{room}/messages/{id}/reactions/{emoji}", methods{http.MethodDelete: http.HandlerFunc(s.unreact)}},
		{"/healthz", methods{http.MethodGet: http.HandlerFunc(s.healthz)}},
		{"/readyz", methods{http.MethodGet: http.HandlerFunc(s.readyz)}},
		{"/metrics", methods{http.MethodGet: promhttp.HandlerFor(s.o.Metrics, promhttp.HandlerOpts{})}},
		{"/openapi.json", methods{http.MethodGet: apidoc.Handler()}},
		{"/", methods{http.MethodGet: s.o.UI}},
	}
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routeTable() {
		mux.Handle(rt.pattern, rt.methods)
	}
	if s.o.Admin != nil {
		mux.Handle("/admin", s.o.Admin)
		mux.Handle("/admin/", s.o.Admin)
	}
	return mux
}

// Routes lists the api's routes as "METHOD /pattern" (GET routes answer HEAD too; every
// route answers a CORS preflight when origins are allowed), the admin page's included,
// sorted.
func (s *Server) Routes() []string {
	var out []string
	for _, rt := range s.routeTable() {
		for m := range rt.methods {
			out = append(out, m+" "+rt.pattern)
		}
	}
	if s.o.Admin != nil {
		out = append(out, s.o.Admin.Routes()...)
	}
	slices.Sort(out)
	return out
}

// methods dispatches on the request method; GET routes answer HEAD too. Other methods
// get 405 with an Allow header and a JSON error.
type methods map[string]http.Handler

func (m methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	if h, ok := m[method]; ok {
		h.ServeHTTP(w, r)
		return
	}
	allow := make([]string, 0, 5)
	for _, k := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPatch, http.MethodDelete} {
		if _, ok := m[k]; ok || (k == http.MethodHead && m[http.MethodGet] != nil) {
			allow = append(allow, k)
		}
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
}
