// Package app is the persister service: it stores every chat message published on the
// CHAT stream in MongoDB, exactly once per id, applies the changes to them (edits,
// deletions, reactions) in any order, and dead-letters invalid payloads. It has
// the shape shared by all services (Config, Deps, New, Handler, Run) so that the
// all-in-one command can compose it with the others in one process.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/chatrt/chat/pkg/buildinfo"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"github.com/chatrt/chat/pkg/natsconn"
	"github.com/chatrt/chat/pkg/ops"
	"github.com/chatrt/chat/services/persister/internal/persist"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Config is read with envconfig.Process("chat", &cfg): every field is CHAT_<name>.
type Config struct {
	// NATS is the connection to NATS: CHAT_NATS_URL and the CHAT_NATS_* security settings.
	natsconn.NATS
	MongoURI string `envconfig:"MONGO_URI" default:"mongodb://127.0.0.1:27017/"`
	HTTPAddr string `envconfig:"HTTP_ADDR" default:"127.0.0.1:8082"`
	// Stream configures the CHAT stream that every service ensures (CHAT_STREAM_*).
	Stream chat.StreamOptions `envconfig:"STREAM"`
	// ShutdownTimeout bounds finishing the in-flight batch and the HTTP shutdown.
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"15s"`

	// BatchSize is the most messages stored with one MongoDB insert.
	BatchSize int `envconfig:"BATCH_SIZE" default:"500"`
	// BatchWait is the least time between the starts of two inserts; what arrives
	// meanwhile joins the next one (a message after a quiet spell is written 20ms after it came).
	BatchWait time.Duration `envconfig:"BATCH_WAIT" default:"100ms"`
	// MaxAckPending bounds the messages delivered and not yet acked over all replicas.
	MaxAckPending int `envconfig:"MAX_ACK_PENDING" default:"20000"`
	// AckWait is how long JetStream waits for an ack before redelivering a message
	// (e.g. to another replica when this one died mid-batch).
	AckWait time.Duration `envconfig:"ACK_WAIT" default:"30s"`
	// WriteTimeout bounds one batch insert (capped at AckWait/2).
	WriteTimeout time.Duration `envconfig:"WRITE_TIMEOUT" default:"10s"`
	// RetryMin and RetryMax set the redelivery delay after a failed write: RetryMin
	// doubled per earlier delivery of the message, at most RetryMax, of which a random
	// half to all is waited (jitter).
	RetryMin time.Duration `envconfig:"RETRY_MIN" default:"250ms"`
	RetryMax time.Duration `envconfig:"RETRY_MAX" default:"30s"`
	// PendingInterval is how often the consumer's pending counts are polled for metrics.
	PendingInterval time.Duration `envconfig:"PENDING_INTERVAL" default:"5s"`
}

// Deps are the connections the service uses; the caller owns and closes them.
type Deps struct {
	NATS    *nats.Conn
	Mongo   *mongo.Client
	Metrics *prometheus.Registry
	Log     *slog.Logger
}

// App is the persister service.
type App struct {
	deps  Deps
	store *history.Store
	p     *persist.Persister
	ops   *ops.Responder
}

// New ensures the streams, the MongoDB indexes and the durable consumer. It starts no
// goroutines.
func New(ctx context.Context, cfg Config, deps Deps) (*App, error) {
	if deps.NATS == nil || deps.Mongo == nil {
		return nil, errors.New("persister: NATS and Mongo are required")
	}
	if deps.Metrics == nil {
		deps.Metrics = prometheus.NewRegistry()
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	store := history.New(deps.Mongo)
	if err := store.EnsureIndexes(ctx); err != nil {
		return nil, fmt.Errorf("persister: %w", err)
	}
	// A stream this service (re)creates continues after what MongoDB holds.
	cfg.Stream.NextSeq = store.NextSeq
	p, err := persist.New(ctx, persist.Config{
		Stream:          cfg.Stream,
		BatchSize:       cfg.BatchSize,
		BatchWait:       cfg.BatchWait,
		MaxAckPending:   cfg.MaxAckPending,
		AckWait:         cfg.AckWait,
		WriteTimeout:    cfg.WriteTimeout,
		RetryMin:        cfg.RetryMin,
		RetryMax:        cfg.RetryMax,
		PendingInterval: cfg.PendingInterval,
		ShutdownTimeout: cfg.ShutdownTimeout,
	}, deps.NATS, store, deps.Metrics, deps.Log)
	if err != nil {
		return nil, fmt.Errorf("persister: %w", err)
	}
	a := &App{deps: deps, store: store, p: p}
	a.ops = ops.NewResponder(deps.NATS, ops.Node{Service: "persister", Addr: cfg.HTTPAddr, Metrics: deps.Metrics,
		Ready: a.Ready, Draining: p.Draining, Log: deps.Log})
	return a, nil
}

// Run stores messages until ctx is done, then stops taking new ones, finishes the
// in-flight batch (write and ack) within the shutdown timeout, and returns. Until it
// returns it answers the operations channel (chat.ops.stats, pkg/ops).
func (a *App) Run(ctx context.Context) error {
	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	opsDone := make(chan struct{})
	go func() {
		defer close(opsDone)
		if err := a.ops.Run(opsCtx); err != nil {
			a.deps.Log.Warn("operations channel", "error", err)
		}
	}()
	defer func() { stopOps(); <-opsDone }()
	return a.p.Run(ctx)
}

// Handler serves GET /healthz ({"status":"ok","version","commit"}: alive, and which
// build), /readyz and /metrics.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range a.routes() {
		mux.Handle(rt.pattern, rt.h)
	}
	return mux
}

// Routes lists the patterns Handler serves ("GET /healthz", ...), for the OpenAPI
// document's test: every route served must be documented.
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
	health, _ := json.Marshal(map[string]string{"status": "ok", "version": bi.Version, "commit": bi.Commit()})
	return []route{
		{"GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, string(health))
		})},
		{"GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := a.Ready(r.Context()); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, `{"error":"`+err.Error()+`"}`)
				return
			}
			writeJSON(w, http.StatusOK, `{"status":"ready"}`)
		})},
		{"GET /metrics", promhttp.HandlerFor(a.deps.Metrics, promhttp.HandlerOpts{})},
	}
}

// Ready returns nil when the persister can store messages, else an error saying why not:
// "draining", "nats unavailable" or "mongodb unavailable". /readyz answers the same.
func (a *App) Ready(ctx context.Context) error {
	if a.p.Draining() {
		return errors.New("draining")
	}
	if !a.deps.NATS.IsConnected() {
		return errors.New("nats unavailable")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		return errors.New("mongodb unavailable")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body+"\n")
}
