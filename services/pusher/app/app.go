// Package app is the pusher service: one ordered consumer per node feeding an in-process
// hub that pushes messages to websocket clients at /ws, with resumes (since) served from
// the hub's window, JetStream or MongoDB. cmd/chat composes it with the other services.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/chatrt/chat/pkg/auth"
	"github.com/chatrt/chat/pkg/buildinfo"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/clientip"
	"github.com/chatrt/chat/pkg/history"
	"github.com/chatrt/chat/pkg/natsconn"
	"github.com/chatrt/chat/pkg/ops"
	"github.com/chatrt/chat/services/pusher/internal/dedup"
	"github.com/chatrt/chat/services/pusher/internal/feed"
	"github.com/chatrt/chat/services/pusher/internal/hub"
	"github.com/chatrt/chat/services/pusher/internal/presence"
	"github.com/chatrt/chat/services/pusher/internal/session"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"golang.org/x/sync/errgroup"
)

// Config is read from the environment with the prefix CHAT_.
type Config struct {
	// NATS is the connection to NATS: CHAT_NATS_URL and the CHAT_NATS_* security settings.
	natsconn.NATS
	MongoURI        string             `envconfig:"MONGO_URI" default:"mongodb://127.0.0.1:27017/"`
	HTTPAddr        string             `envconfig:"HTTP_ADDR" default:"127.0.0.1:8081"`
	Stream          chat.StreamOptions `envconfig:"STREAM"`
	ShutdownTimeout time.Duration      `envconfig:"SHUTDOWN_TIMEOUT" default:"15s"`

	// Window is how many recent messages per room the node keeps to serve resumes.
	Window int `envconfig:"WINDOW" default:"1024"`
	// WindowBytes is the budget all rooms and their windows share on this node; beyond it
	// rooms without subscribers are evicted, least recently used first, then the windows
	// of the others are trimmed (CHAT_WINDOW_BYTES, default 64 MiB). RoomIdle: a room
	// without subscribers leaves memory after this long without a publish or subscribe
	// (CHAT_ROOM_IDLE, negative: only when the budget needs it). Resumes of what left
	// memory are served from JetStream/MongoDB.
	WindowBytes int64         `envconfig:"WINDOW_BYTES" default:"67108864"`
	RoomIdle    time.Duration `envconfig:"ROOM_IDLE" default:"5m"`
	// QueueSize is how many frames a client may have waiting before it is evicted (1013).
	QueueSize int `envconfig:"QUEUE_SIZE" default:"4096"`
	// ReplayBatch is how many older messages a resume reads per step.
	ReplayBatch  int           `envconfig:"REPLAY_BATCH" default:"256"`
	PingInterval time.Duration `envconfig:"PING_INTERVAL" default:"25s"`
	PongTimeout  time.Duration `envconfig:"PONG_TIMEOUT" default:"60s"`
	WriteTimeout time.Duration `envconfig:"WRITE_TIMEOUT" default:"10s"`
	// MaxSubscriptions caps the rooms one socket may subscribe to.
	MaxSubscriptions int `envconfig:"MAX_SUBSCRIPTIONS" default:"64"`
	// CloseSpread spreads the 1012 closes of a shutdown over this window.
	CloseSpread time.Duration `envconfig:"CLOSE_SPREAD" default:"3s"`
	// AllowedOrigins are browser Origins allowed besides the same origin ("*": any).
	AllowedOrigins []string `envconfig:"ALLOWED_ORIGINS"`
	// FlushInterval paces busy clients: up to 4 frames per interval are written at once;
	// beyond that a client gets one write per interval, what arrives meanwhile going out
	// together, until its rate falls (0: 5ms; negative: every frame at once).
	FlushInterval time.Duration `envconfig:"FLUSH_INTERVAL" default:"5ms"`
	// StreamWatch is how often the node checks whether the stream was recreated.
	StreamWatch time.Duration `envconfig:"STREAM_WATCH" default:"2s"`
	// DedupIndexBytes bounds the node's index of recent message ids (later stream copies
	// of an id are not pushed; see dedup); DedupSkew is the clock skew allowed between
	// whoever made a ULID id and this node (CHAT_DEDUP_INDEX_BYTES, CHAT_DEDUP_SKEW).
	DedupIndexBytes int           `envconfig:"DEDUP_INDEX_BYTES" default:"16777216"`
	DedupSkew       time.Duration `envconfig:"DEDUP_SKEW" default:"5s"`

	// MaxConnections caps this node's websockets; beyond it upgrades get 503 + Retry-After
	// (CHAT_MAX_CONNECTIONS, 0: unlimited).
	MaxConnections int `envconfig:"MAX_CONNECTIONS" default:"10000"`
	// MaxConnectionsPerIP caps websockets per client address (IPv6: its /64); beyond it
	// upgrades get 429 (CHAT_MAX_CONNECTIONS_PER_IP, 0: unlimited). Behind a load balancer
	// set CHAT_TRUSTED_PROXIES too, else every client shares the balancer's address.
	MaxConnectionsPerIP int `envconfig:"MAX_CONNECTIONS_PER_IP" default:"0"`
	// TrustedProxies are proxy IPs/CIDRs whose X-Forwarded-For is believed (CHAT_TRUSTED_PROXIES).
	TrustedProxies []string `envconfig:"TRUSTED_PROXIES"`
	// CommandRate and CommandBurst limit client commands per connection; over the limit a
	// command gets an error frame, and CommandBurst refusals in a row close the socket
	// with 1008 (CHAT_WS_COMMAND_RATE, CHAT_WS_COMMAND_BURST; rate 0: unlimited).
	CommandRate  float64 `envconfig:"WS_COMMAND_RATE" default:"20"`
	CommandBurst int     `envconfig:"WS_COMMAND_BURST" default:"50"`
	// AuthTimeout is how long a socket opened without a token has to send
	// {"type":"auth","token":...} (CHAT_AUTH_TIMEOUT).
	AuthTimeout time.Duration `envconfig:"AUTH_TIMEOUT" default:"10s"`
	// PresenceHeartbeat is how often the node publishes its rooms' full presence on NATS;
	// PresenceTimeout how long another node's presence is believed without news: the
	// members of a pusher that died leave within it (plus a second of coalescing)
	// (CHAT_PRESENCE_HEARTBEAT, CHAT_PRESENCE_TIMEOUT; the api reads the timeout too).
	PresenceHeartbeat time.Duration `envconfig:"PRESENCE_HEARTBEAT" default:"3s"`
	PresenceTimeout   time.Duration `envconfig:"PRESENCE_TIMEOUT" default:"10s"`
	// Auth turns bearer-token authentication on when a key is set (CHAT_AUTH_*, see
	// pkg/auth): /ws then needs a token (Authorization header, ?access_token= or a first
	// {"type":"auth"} frame) and subscribes only to the rooms it allows.
	auth.Config
}

// Deps are the connections the pusher uses; the caller owns them.
type Deps struct {
	NATS    *nats.Conn
	Mongo   *mongo.Client // nil: resumes older than the stream are not served
	Metrics *prometheus.Registry
	Log     *slog.Logger
}

// App is a pusher node.
type App struct {
	cfg      Config
	deps     Deps
	hub      *hub.Hub
	ws       *session.Handler
	feed     *feed.Feed
	dedup    *dedup.Filter
	presence *presence.Tracker
	ops      *ops.Responder
	draining atomic.Bool
}

// New ensures the streams and prepares the node's feed to start after the stream's
// current last message.
func New(ctx context.Context, cfg Config, deps Deps) (*App, error) {
	js, err := jetstream.New(deps.NATS)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	var store *history.Store
	if deps.Mongo != nil {
		store = history.New(deps.Mongo)
		cfg.Stream.NextSeq = store.NextSeq
	}
	ensure := func(ctx context.Context) (jetstream.Stream, error) { return chat.EnsureStreams(ctx, js, cfg.Stream) }
	stream, err := ensure(ctx)
	if err != nil {
		return nil, err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream info: %w", err)
	}
	verifier, err := auth.NewVerifier(cfg.Config, auth.WithLogger(deps.Log))
	if err != nil {
		return nil, fmt.Errorf("pusher config: %w", err)
	}
	clients, err := clientip.New(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("pusher config: %w", err)
	}
	src := feed.NewSource(js, stream, ensure)
	start := info.State.LastSeq
	var seqs dedup.Store // a nil *history.Store must stay a nil interface
	if store != nil {
		seqs = store
	}
	tracker := presence.New(deps.NATS, presence.Config{Heartbeat: cfg.PresenceHeartbeat, Timeout: cfg.PresenceTimeout}, deps.Log)
	sink := &hubSink{}
	filter := dedup.New(dedup.Config{IndexBytes: cfg.DedupIndexBytes, Skew: cfg.DedupSkew}, sink, seqs, deps.Metrics, deps.Log)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := filter.Warm(wctx, stream, info.Created, start); err != nil {
		deps.Log.Warn("duplicate index starts cold", "error", err)
	}
	cancel()
	h := hub.New(hub.Config{
		Window:        max(cfg.Window, 1),
		QueueSize:     max(cfg.QueueSize, 2*max(cfg.Window, 1)),
		ReplayBatch:   max(cfg.ReplayBatch, 1),
		PingInterval:  cfg.PingInterval,
		MaxSubs:       max(cfg.MaxSubscriptions, 1),
		CloseSpread:   cfg.CloseSpread,
		FlushInterval: cfg.FlushInterval,
		WindowBytes:   cfg.WindowBytes,
		RoomIdle:      cfg.RoomIdle,
		Presence:      tracker,
	}, start, info.Created, feed.NewBacklog(src, store, filter), deps.Metrics, deps.Log)
	sink.Hub = h
	ws := session.NewHandler(h, session.Config{
		PongTimeout:   cfg.PongTimeout,
		WriteTimeout:  cfg.WriteTimeout,
		AllowedOrigin: cfg.AllowedOrigins,
		Gate: session.GateConfig{
			Auth:          verifier,
			AuthTimeout:   cfg.AuthTimeout,
			MaxConns:      cfg.MaxConnections,
			MaxConnsPerIP: cfg.MaxConnectionsPerIP,
			CommandRate:   cfg.CommandRate,
			CommandBurst:  cfg.CommandBurst,
			Clients:       clients,
		},
	}, deps.Metrics)
	a := &App{
		cfg:      cfg,
		deps:     deps,
		hub:      h,
		ws:       ws,
		feed:     feed.New(src, start, cfg.StreamWatch, filter, deps.Log),
		dedup:    filter,
		presence: tracker,
	}
	rates := &roomRates{hub: h}
	node := ops.Node{Service: "pusher", Addr: cfg.HTTPAddr, Ready: a.Ready, Draining: a.draining.Load,
		Rooms: rates.busiest, Log: deps.Log}
	if deps.Metrics != nil { // a nil *Registry must stay a nil interface
		node.Metrics = deps.Metrics
	}
	a.ops = ops.NewResponder(deps.NATS, node)
	return a, nil
}

// Presence is the node's presence tracker (its view of every node).
func (a *App) Presence() *presence.Tracker { return a.presence }

// Handler serves /ws, /healthz ({"status":"ok","version","commit"}: alive, and which
// build), /readyz and /metrics.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range a.routes() {
		mux.Handle(rt.pattern, rt.h)
	}
	return mux
}

// Routes lists the patterns Handler serves ("GET /ws", ...), for the OpenAPI document's
// test: every route served must be documented.
func (a *App) Routes() []string {
	var out []string
	for _, rt := range a.routes() {
		out = append(out, rt.pattern)
	}
	return out
}

type route struct {
	pattern string
	h       http.Handler
}

func (a *App) routes() []route {
	bi := buildinfo.Read()
	rts := []route{
		{"GET /ws", a.ws},
		{"GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "version": bi.Version, "commit": bi.Commit()})
		})},
		{"GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			natsOK := a.deps.NATS.IsConnected()
			status := http.StatusOK
			if a.Ready(r.Context()) != nil {
				status = http.StatusServiceUnavailable
			}
			writeJSON(w, status, map[string]any{"nats": natsOK, "draining": a.draining.Load(),
				"connections": a.hub.Connections(), "head_seq": a.hub.Head()})
		})},
	}
	if a.deps.Metrics != nil {
		rts = append(rts, route{"GET /metrics", promhttp.HandlerFor(a.deps.Metrics, promhttp.HandlerOpts{})})
	}
	return rts
}

// Ready returns nil when the pusher takes websocket clients (NATS connected, not
// draining), else an error saying what is not. /readyz answers the same.
func (a *App) Ready(context.Context) error {
	if a.draining.Load() {
		return errors.New("draining")
	}
	if !a.deps.NATS.IsConnected() {
		return errors.New("nats unavailable")
	}
	return nil
}

// Run feeds the hub and answers the operations channel (chat.ops.stats) until ctx ends, then drains: readiness goes false, clients are
// closed with 1012 (spread over CloseSpread), and only then the feed stops.
func (a *App) Run(ctx context.Context) error {
	feedCtx, stopFeed := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFeed()
	g, gctx := errgroup.WithContext(feedCtx)
	g.Go(func() error { return a.feed.Run(gctx) })
	g.Go(func() error { return a.dedup.Run(gctx) })
	g.Go(func() error { return a.hub.Run(gctx) })
	// Presence outlives the drain like the feed: the members of the clients closed leave
	// everyone's presence as they go, then the node says goodbye.
	g.Go(func() error { return a.presence.Run(gctx) })
	g.Go(func() error { // until the feed stops: a draining node still answers
		if err := a.ops.Run(gctx); err != nil {
			a.deps.Log.Warn("operations channel", "error", err)
		}
		return nil
	})
	g.Go(func() error {
		select {
		case <-ctx.Done():
		case <-gctx.Done():
			return nil
		}
		a.draining.Store(true)
		sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
		defer cancel()
		if err := a.hub.Shutdown(sctx); err != nil {
			a.deps.Log.Warn("close websocket clients", "error", err)
		}
		stopFeed()
		return nil
	})
	return g.Wait()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// hubSink lets the duplicate filter be built before the hub it feeds (the hub's backlog
// needs the filter); Hub is set before the feed runs.
type hubSink struct{ *hub.Hub }
