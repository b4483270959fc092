// Command pusher pushes chat messages to websocket clients. Run as many as needed behind a
// load balancer: each consumes the whole stream and serves any client.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/chatrt/chat/pkg/history"
	"github.com/chatrt/chat/pkg/natsconn"
	"github.com/chatrt/chat/services/pusher/app"
	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil)).With("service", "pusher")
	// The pusher's heap is mostly long-lived per-connection state, and it allocates little
	// per delivery: half of Go's default GC headroom costs next to no CPU here and saves
	// about a fifth of what an idle connection costs (README, Performance). GOGC wins.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(50)
	}
	var cfg app.Config
	if err := envconfig.Process("chat", &cfg); err != nil {
		log.Error("config", "error", err)
		os.Exit(2)
	}
	if err := run(ctx, cfg, log); err != nil {
		log.Error("run", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg app.Config, log *slog.Logger) error {
	secure, err := natsconn.EnvOptions()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(cfg.NATSURL, append(secure, nats.Name("chat-pusher"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))...)
	if err != nil {
		return fmt.Errorf("connect nats: %w", err)
	}
	defer nc.Close()
	mc, err := history.Connect(ctx, cfg.MongoURI)
	if err != nil {
		return err
	}
	defer func() { _ = mc.Disconnect(context.Background()) }()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a, err := app.New(ctx, cfg, app.Deps{NATS: nc, Mongo: mc, Metrics: reg, Log: log})
	if err != nil {
		return err
	}
	// Read/WriteTimeout bound plain requests (slowloris); net/http clears the deadlines
	// when /ws hijacks the connection, and the hub then keeps its own (pong, write).
	srv := &http.Server{Addr: cfg.HTTPAddr, Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10}
	g, gctx := errgroup.WithContext(ctx)
	drained := make(chan struct{})
	g.Go(func() error {
		defer close(drained)
		return a.Run(gctx)
	})
	g.Go(func() error {
		log.Info("listening", "addr", cfg.HTTPAddr)
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		// a.Run drains first: /readyz answers 503 so the load balancer stops sending new
		// clients, and the hub closes the websocket clients itself (Shutdown does not
		// touch hijacked connections), spread over CHAT_CLOSE_SPREAD. Only then the HTTP
		// server stops.
		<-drained
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	err = g.Wait()
	if derr := nc.Drain(); derr != nil && err == nil {
		err = fmt.Errorf("drain nats: %w", derr)
	}
	return err
}
