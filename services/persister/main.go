// Command persister stores the chat messages published on the CHAT stream in MongoDB.
// Configuration is read from the environment (CHAT_*, see app.Config).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/chatrt/chat/pkg/history"
	"github.com/chatrt/chat/pkg/natsconn"
	"github.com/chatrt/chat/services/persister/app"
	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var cfg app.Config
	err := envconfig.Process("chat", &cfg)
	if err == nil {
		err = run(ctx, cfg, log)
	}
	stop()
	if err != nil {
		log.Error("persister failed", "err", err)
		os.Exit(1)
	}
}

// run serves the persister until ctx is done, then shuts down in order: HTTP server and
// consumer intake stop, the in-flight batch is written and acked, NATS drains, MongoDB
// disconnects.
func run(ctx context.Context, cfg app.Config, log *slog.Logger) error {
	closed := make(chan struct{})
	secure, err := natsconn.EnvOptions()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(cfg.NATSURL, append(secure, nats.Name("chat-persister"), nats.MaxReconnects(-1),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", "err", err) }),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats reconnected") }))...)
	if err != nil {
		return fmt.Errorf("connect nats: %w", err)
	}
	defer func() {
		if err := nc.Drain(); err == nil {
			select {
			case <-closed:
			case <-time.After(cfg.ShutdownTimeout):
				log.Warn("nats drain timed out")
			}
		}
		nc.Close()
	}()
	mc, err := history.Connect(ctx, cfg.MongoURI)
	if err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mc.Disconnect(dctx)
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a, err := app.New(ctx, cfg, app.Deps{NATS: nc, Mongo: mc, Metrics: reg, Log: log})
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
	log.Info("persister listening", "addr", ln.Addr().String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	g.Go(func() error { return a.Run(gctx) })
	return g.Wait()
}
