// Command api is the chat HTTP api: it publishes posted messages to JetStream, serves
// history pages from MongoDB and the browser UI. Configuration is read from the
// environment (CHAT_*, see app.Config).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/chatrt/chat/pkg/buildinfo"
	"github.com/chatrt/chat/pkg/diag"
	"github.com/chatrt/chat/pkg/history"
	"github.com/chatrt/chat/pkg/natsconn"
	"github.com/chatrt/chat/services/api/app"
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
		fmt.Println(buildinfo.Read().String("api"))
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := 0
	var cfg app.Config
	var dcfg diag.Config
	err := errors.Join(envconfig.Process("chat", &cfg), envconfig.Process("chat", &dcfg))
	log := diag.NewLogger(os.Stderr, dcfg).With("service", "api")
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

// run connects NATS and MongoDB, serves the api on cfg.HTTPAddr (and pprof on
// dcfg.DebugAddr, if set) until ctx is done, then shuts down in order: readiness false
// and posts drained, HTTP server shut down, NATS drained, MongoDB disconnected.
func run(ctx context.Context, cfg app.Config, dcfg diag.Config, log *slog.Logger) error {
	dbg, err := diag.Listen(dcfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return dbg.Run(gctx) })
	g.Go(func() error { return serve(gctx, cfg, log, ln) })
	return g.Wait()
}

// serve is run on an open listener (tests use port 0). It closes ln.
func serve(ctx context.Context, cfg app.Config, log *slog.Logger, ln net.Listener) (err error) {
	defer ln.Close()
	// No buffering while reconnecting: a post either reaches the server now or fails
	// (503), so a 503 never publishes later.
	nc, err := natsconn.Connect(cfg.NATS, "chat-api", log, nats.ReconnectBufSize(-1))
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
			ConstLabels: buildinfo.Read().Labels("api")}, func() float64 { return 1 }))
	a, err := app.New(ctx, cfg, app.Deps{NATS: nc.Conn, Mongo: mc, Metrics: reg, Log: log})
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      cfg.PublishTimeout + 30*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("listening", "addr", ln.Addr().String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http serve: %w", err)
		}
		return nil
	})
	g.Go(func() error { return a.Run(gctx) })
	g.Go(func() error {
		<-gctx.Done()
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
