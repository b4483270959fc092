// Command persister stores the chat messages published on the CHAT stream, and their
// changes, in MongoDB.
// Configuration is read from the environment (CHAT_*, see app.Config).
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
	"github.com/chatrt/chat/services/persister/app"
	"github.com/kelseyhightower/envconfig"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
)

func main() {
	version := flag.Bool("version", false, "print the build (version, commit, commit time) and exit")
	flag.Parse()
	if *version {
		fmt.Println(buildinfo.Read().String("persister"))
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := 0
	var cfg app.Config
	var dcfg diag.Config
	err := errors.Join(envconfig.Process("chat", &cfg), envconfig.Process("chat", &dcfg))
	log := diag.NewLogger(os.Stderr, dcfg).With("service", "persister")
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

// run serves the persister until ctx is done, then shuts down in order: HTTP server and
// consumer intake stop, the in-flight batch is written and acked, NATS drains, MongoDB
// disconnects.
func run(ctx context.Context, cfg app.Config, dcfg diag.Config, log *slog.Logger) (err error) {
	dbg, err := diag.Listen(dcfg, log) // first: a refused address stops the start at once
	if err != nil {
		return err
	}
	nc, err := natsconn.Connect(cfg.NATS, "chat-persister", log)
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
			ConstLabels: buildinfo.Read().Labels("persister")}, func() float64 { return 1 }))
	a, err := app.New(ctx, cfg, app.Deps{NATS: nc.Conn, Mongo: mc, Metrics: reg, Log: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	log.Info("listening", "addr", ln.Addr().String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return dbg.Run(gctx) })
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http serve: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			return fmt.Errorf("http shutdown: %w", err)
		}
		return nil
	})
	g.Go(func() error { return a.Run(gctx) })
	err = g.Wait()
	log.Info("stopped")
	return errors.Join(err, nc.Shutdown(cfg.ShutdownTimeout))
}
