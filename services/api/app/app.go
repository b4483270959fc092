// Package app is the api service: POST messages (published to JetStream and answered
// after the ack), changes to them (edit, delete, reactions), history pages from MongoDB,
// the browser UI, health, readiness and metrics. cmd/chat composes it with the other
// services in one process.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/chatrt/chat/pkg/auth"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/clientip"
	"github.com/chatrt/chat/pkg/history"
	"github.com/chatrt/chat/pkg/natsconn"
	"github.com/chatrt/chat/pkg/ops"
	"github.com/chatrt/chat/pkg/presence"
	"github.com/chatrt/chat/services/api/internal/admin"
	"github.com/chatrt/chat/services/api/internal/change"
	"github.com/chatrt/chat/services/api/internal/editkey"
	"github.com/chatrt/chat/services/api/internal/httpapi"
	"github.com/chatrt/chat/services/api/internal/ratelimit"
	"github.com/chatrt/chat/services/api/internal/stream"
	"github.com/chatrt/chat/services/api/internal/web"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Config is read with envconfig.Process("chat", &cfg): every field is CHAT_<tag>.
type Config struct {
	// NATS is the connection to NATS: CHAT_NATS_URL and the CHAT_NATS_* security settings.
	natsconn.NATS
	// MongoURI is the MongoDB holding the history (CHAT_MONGO_URI).
	MongoURI string `envconfig:"MONGO_URI" default:"mongodb://127.0.0.1:27017/"`
	// HTTPAddr is where the api listens (CHAT_HTTP_ADDR).
	HTTPAddr string `envconfig:"HTTP_ADDR" default:"127.0.0.1:8080"`
	// Stream configures the CHAT stream (CHAT_STREAM_REPLICAS, _MAX_AGE, _MAX_BYTES,
	// _MAX_MSGS, _DUPLICATES). DUPLICATES is also the Idempotency-Key window.
	Stream chat.StreamOptions `envconfig:"STREAM"`
	// ShutdownTimeout bounds the wait for in-flight posts on shutdown (CHAT_SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"15s"`

	// PublishTimeout is how long a post waits for its JetStream ack before answering 503
	// (CHAT_PUBLISH_TIMEOUT).
	PublishTimeout time.Duration `envconfig:"PUBLISH_TIMEOUT" default:"5s"`
	// PublishMaxPending bounds the async publishes awaiting an ack on the connection; a
	// post finding the window full waits for a slot within its PublishTimeout
	// (CHAT_PUBLISH_MAX_PENDING).
	PublishMaxPending int `envconfig:"PUBLISH_MAX_PENDING" default:"1024"`
	// HistoryTimeout bounds one history query (CHAT_HISTORY_TIMEOUT).
	HistoryTimeout time.Duration `envconfig:"HISTORY_TIMEOUT" default:"5s"`
	// RetryAfter is the Retry-After sent with 503 answers (CHAT_RETRY_AFTER).
	RetryAfter time.Duration `envconfig:"RETRY_AFTER" default:"2s"`
	// RateLimit is the posts per second allowed per client, 0 disables (CHAT_RATE_LIMIT).
	RateLimit float64 `envconfig:"RATE_LIMIT" default:"50"`
	// RateBurst is the burst of posts allowed per client (CHAT_RATE_BURST).
	RateBurst int `envconfig:"RATE_BURST" default:"200"`
	// TrustedProxies lists proxy IPs or CIDRs, comma-separated, whose X-Forwarded-For is
	// believed for the client address (CHAT_TRUSTED_PROXIES). Empty: the peer address.
	TrustedProxies []string `envconfig:"TRUSTED_PROXIES"`
	// AllowedOrigins are browser Origins (scheme://host[:port], comma-separated, "*": any)
	// answered with CORS headers, so pages there can use the api (CHAT_ALLOWED_ORIGINS,
	// the setting the pushers check websocket Origins against). Empty: same origin only.
	AllowedOrigins []string `envconfig:"ALLOWED_ORIGINS"`
	// Reactions is the emoji a reaction may use, comma-separated (CHAT_REACTIONS): up to
	// 64 distinct emoji, each 1-32 bytes without spaces or control characters; anything
	// else refuses to start; empty is the default. Matched exactly (❤️ with its U+FE0F is
	// not ❤ without).
	Reactions []string `envconfig:"REACTIONS" default:"👍,❤️,😂,🎉,😮,😢"`
	// PresenceTimeout is how long a pusher's presence is believed without news (the
	// pushers' setting, CHAT_PRESENCE_TIMEOUT): GET /rooms/{room}/presence and the online
	// counts of GET /rooms come from what the pushers publish on NATS.
	PresenceTimeout time.Duration `envconfig:"PRESENCE_TIMEOUT" default:"10s"`
	// Auth turns bearer-token authentication on when a key is set (CHAT_AUTH_HS256_SECRET,
	// CHAT_AUTH_PUBLIC_KEY, CHAT_AUTH_PUBLIC_KEY_FILE or CHAT_AUTH_JWKS_URL; with
	// CHAT_AUTH_ISSUER, CHAT_AUTH_AUDIENCE, CHAT_AUTH_LEEWAY, CHAT_AUTH_JWKS_REFRESH, see
	// pkg/auth): posts, changes and history reads then need a token allowing the room,
	// the author is the token's name (else sub), and a message may be changed by its
	// author or a token whose roles claim holds "moderator". Off: by whoever holds the
	// edit key the post's 201 returned (the secret is in the KV bucket CHAT_SECRETS).
	auth.Config
}

// Deps are the connections the app uses; the caller owns (and closes) them.
type Deps struct {
	NATS    *nats.Conn
	Mongo   *mongo.Client
	Metrics *prometheus.Registry // nil: a private registry
	Log     *slog.Logger         // nil: slog.Default()
}

// App is the api service.
type App struct {
	cfg      Config
	log      *slog.Logger
	server   *httpapi.Server
	presence *presence.View
	ops      *ops.Responder
}

// New ensures the streams and the history indexes and builds the handler. It starts no
// goroutines.
func New(ctx context.Context, cfg Config, deps Deps) (*App, error) {
	if deps.NATS == nil || deps.Mongo == nil {
		return nil, fmt.Errorf("api: NATS and Mongo are required")
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	if deps.Metrics == nil {
		deps.Metrics = prometheus.NewRegistry()
	}
	clients, err := clientip.New(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("api config: %w", err)
	}
	verifier, err := auth.NewVerifier(cfg.Config, auth.WithLogger(deps.Log))
	if err != nil {
		return nil, fmt.Errorf("api config: %w", err)
	}
	reactions, err := httpapi.ParseReactions(cfg.Reactions)
	if err != nil {
		return nil, fmt.Errorf("api config: CHAT_REACTIONS: %w", err)
	}
	store := history.New(deps.Mongo)
	if err := store.EnsureIndexes(ctx); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	// A stream this service creates continues after what MongoDB holds.
	cfg.Stream.NextSeq = store.NextSeq
	appender, err := stream.New(ctx, deps.NATS, stream.Options{
		Stream:     cfg.Stream,
		MaxPending: cfg.PublishMaxPending,
		Timeout:    cfg.PublishTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	changer, err := change.New(ctx, deps.NATS, store, change.Options{
		Timeout:        cfg.HistoryTimeout + cfg.PublishTimeout,
		HistoryTimeout: cfg.HistoryTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	var keys httpapi.EditKeys
	if verifier == nil {
		js, err := jetstream.New(deps.NATS)
		if err != nil {
			return nil, fmt.Errorf("api: jetstream: %w", err)
		}
		if keys, err = editkey.Open(ctx, js, cfg.Stream.Replicas); err != nil {
			return nil, fmt.Errorf("api: edit keys: %w", err)
		}
	}
	view := presence.NewView(deps.NATS, presence.ViewConfig{Timeout: cfg.PresenceTimeout, Log: deps.Log})
	adm, err := admin.New(admin.Options{NATS: deps.NATS, Auth: verifier, RetryAfter: cfg.RetryAfter, Log: deps.Log})
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	srv, err := httpapi.New(httpapi.Options{
		Stream:         appender,
		History:        store,
		Rooms:          store,
		Presence:       view,
		Changes:        changer,
		EditKeys:       keys,
		Reactions:      reactions,
		Limiter:        ratelimit.New(cfg.RateLimit, cfg.RateBurst),
		Clients:        clients,
		Auth:           verifier,
		HistoryTimeout: cfg.HistoryTimeout,
		RetryAfter:     cfg.RetryAfter,
		UI:             web.Handler(),
		Admin:          adm,
		AllowedOrigins: cfg.AllowedOrigins,
		Metrics:        deps.Metrics,
		Log:            deps.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	a := &App{cfg: cfg, log: deps.Log, server: srv, presence: view}
	a.ops = ops.NewResponder(deps.NATS, ops.Node{Service: "api", Addr: cfg.HTTPAddr, Metrics: deps.Metrics,
		Ready: srv.Ready, Draining: srv.Draining, Log: deps.Log})
	return a, nil
}

// Handler serves every api route: GET /rooms, GET /rooms/{room}/presence, POST/GET
// /messages, POST/GET /rooms/{room}/messages,
// PATCH/DELETE /rooms/{room}/messages/{id}, POST /rooms/{room}/messages/{id}/reactions,
// DELETE /rooms/{room}/messages/{id}/reactions/{emoji}, /healthz, /readyz, /metrics,
// /openapi.json, the admin page at /admin (internal/admin) and the UI at /.
func (a *App) Handler() http.Handler { return a.server.Handler() }

// Routes lists the routes Handler serves as "METHOD /pattern" (docs/openapi.yaml
// documents each).
func (a *App) Routes() []string { return a.server.Routes() }

// Ready returns nil when the api can take posts (NATS connected, MongoDB answering, not
// draining), else an error saying what is not. /readyz answers the same.
func (a *App) Ready(ctx context.Context) error { return a.server.Ready(ctx) }

// Run listens to the pushers' presence until ctx is done, then drains: /readyz turns 503,
// new posts get 503, and it returns once the posts in flight are answered (or
// ShutdownTimeout passes). The caller then shuts its HTTP server down and drains the NATS
// connection.
//
// Meanwhile it answers the operations channel (chat.ops.stats, pkg/ops) until it returns,
// so a draining api still shows on the admin page.
func (a *App) Run(ctx context.Context) error {
	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	opsDone := make(chan struct{})
	go func() {
		defer close(opsDone)
		if err := a.ops.Run(opsCtx); err != nil {
			a.log.Warn("operations channel", "error", err)
		}
	}()
	defer func() { stopOps(); <-opsDone }()
	if err := a.presence.Run(ctx); err != nil {
		return err
	}
	a.log.Info("api draining")
	timeout := a.cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := a.server.Drain(dctx); err != nil {
		return fmt.Errorf("api drain in-flight posts: %w", err)
	}
	return nil
}
