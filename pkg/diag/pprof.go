package diag

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// Debug serves net/http/pprof under /debug/pprof/ on its own listener, apart from the
// service's port, so that it is never exposed by the routes a load balancer forwards.
type Debug struct {
	ln  net.Listener
	srv *http.Server
	log *slog.Logger
}

// Listen opens cfg.DebugAddr; with no address it returns nil (Run on nil does nothing).
// Unless cfg.DebugAllowRemote, the address must be loopback (127.0.0.0/8, ::1 or
// localhost): an empty or unspecified host (":6060", "0.0.0.0:6060") is refused, and so
// is a name that resolves to anything else.
func Listen(cfg Config, log *slog.Logger) (*Debug, error) {
	if cfg.DebugAddr == "" {
		return nil, nil
	}
	if !cfg.DebugAllowRemote {
		if err := checkLoopback(cfg.DebugAddr); err != nil {
			return nil, fmt.Errorf("CHAT_DEBUG_ADDR: %w (set CHAT_DEBUG_ALLOW_REMOTE=true to serve profiles to other machines)", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.DebugAddr)
	if err != nil {
		return nil, fmt.Errorf("CHAT_DEBUG_ADDR: listen %s: %w", cfg.DebugAddr, err)
	}
	if !cfg.DebugAllowRemote {
		// What was bound, not what was asked: a name is resolved by Listen once more.
		if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
			ln.Close()
			return nil, fmt.Errorf("CHAT_DEBUG_ADDR: %s bound %s, not a loopback address", cfg.DebugAddr, ln.Addr())
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// No write timeout: a CPU profile or trace answers after its ?seconds=.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	return &Debug{ln: ln, srv: srv, log: log}, nil
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return fmt.Errorf("%s: the host must be a loopback IP address or localhost", addr)
	}
	if !ip.IsLoopback() {
		return fmt.Errorf("%s is not a loopback address", addr)
	}
	return nil
}

// Addr is the address served (host:port), "" for nil.
func (d *Debug) Addr() string {
	if d == nil {
		return ""
	}
	return d.ln.Addr().String()
}

// Run serves until ctx ends, then closes the listener and any profile in progress.
func (d *Debug) Run(ctx context.Context) error {
	if d == nil {
		return nil
	}
	d.log.Info("debug endpoint (pprof)", "addr", d.Addr(), "path", "/debug/pprof/")
	stop := context.AfterFunc(ctx, func() { _ = d.srv.Close() })
	defer stop()
	if err := d.srv.Serve(d.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("debug endpoint: %w", err)
	}
	return nil
}
