// Command pusher pushes chat messages to websocket clients. Run as many as needed behind a
// load balancer: each consumes the whole stream and serves any client. Configuration is
// read from the environment (CHAT_*, see app.Config).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/chatrt/chat/pkg/buildinfo"
	"github.com/chatrt/chat/pkg/diag"
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
	version := flag.Bool("version", false, "print the build (version, commit, commit time) and exit")
	flag.Parse()
	if *version {
		fmt.Println(buildinfo.Read().String("pusher"))
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The pusher's heap is mostly long-lived per-connection state, and it allocates little
	// per delivery: half of Go's default GC headroom costs next to no CPU here and saves
	// about a fifth of what an idle connection costs (README, Performance). GOGC wins.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(50)
	}
	code := 0
	var cfg app.Config
	var dcfg diag.Config
	err := errors.Join(envconfig.Process("chat", &cfg), envconfig.Process("chat", &dcfg))
	log := diag.NewLogger(os.Stderr, dcfg).With("service", "pusher")
	if err != nil {
		log.Error("config", "error", err)
		code = 2
	} else if err := run(ctx, cfg, dcfg, log); err != nil {
		log.Error("run", "error", err)
		code = 1
	}
	stop()
	os.Exit(code)
}

// run serves websockets until ctx is done, then shuts down in order: readiness false and
// the websocket clients closed, HTTP server shut down, NATS drained, MongoDB disconnected.
func run(ctx context.Context, cfg app.Config, dcfg diag.Config, log *slog.Logger) (err error) {
	dbg, err := diag.Listen(dcfg, log) // first: a refused address stops the start at once
	if err != nil {
		return err
	}
	// A pusher publishes nothing, so it may start before NATS is reachable: the first
	// connect is retried like a reconnect.
	nc, err := natsconn.Connect(cfg.NATS, "chat-pusher", log, nats.RetryOnFailedConnect(true))
	if err != nil {
		return err
	}
	defer nc.Close() // early returns; the drain is below
	mc, err := history.Connect(ctx, cfg.MongoURI)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, history.Disconnect(mc, 5*time.Second)) }()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		// chat_build_info{service,version,commit} = 1: which build serves.
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: buildinfo.MetricName, Help: buildinfo.MetricHelp,
			ConstLabels: buildinfo.Read().Labels("pusher")}, func() float64 { return 1 }))
	a, err := app.New(ctx, cfg, app.Deps{NATS: nc.Conn, Mongo: mc, Metrics: reg, Log: log})
	if err != nil {
		return err
	}
	// Read/WriteTimeout bound plain requests (slowloris); net/http clears the deadlines
	// when /ws hijacks the connection, and the hub then keeps its own (pong, write).
	srv := &http.Server{Addr: cfg.HTTPAddr, Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return dbg.Run(gctx) })
	drained := make(chan struct{})
	g.Go(func() error {
		defer close(drained)
		return a.Run(gctx)
	})
	g.Go(func() error {
		log.Info("listening", "addr", cfg.HTTPAddr)
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http serve: %w", err)
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
		if err := srv.Shutdown(sctx); err != nil {
			return fmt.Errorf("http shutdown: %w", err)
		}
		return nil
	})
	err = g.Wait()
	log.Info("stopped")
	return errors.Join(err, nc.Shutdown(cfg.ShutdownTimeout))
}
