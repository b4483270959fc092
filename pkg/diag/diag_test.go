package diag

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestLevelFromEnvironment(t *testing.T) {
	for in, want := range map[string]slog.Level{
		"debug": slog.LevelDebug, "INFO": slog.LevelInfo, "warn": slog.LevelWarn, "Error": slog.LevelError,
	} {
		t.Setenv("CHAT_DIAGTEST_LOG_LEVEL", in)
		var cfg Config
		if err := envconfig.Process("chat_diagtest", &cfg); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if cfg.LogLevel.Level() != want {
			t.Errorf("%q: level %v, want %v", in, cfg.LogLevel.Level(), want)
		}
	}
	t.Setenv("CHAT_DIAGTEST_LOG_LEVEL", "verbose")
	var cfg Config
	if err := envconfig.Process("chat_diagtest", &cfg); err == nil || !strings.Contains(err.Error(), "debug, info, warn or error") {
		t.Errorf("verbose: %v, want a clear error", err)
	}
}

func TestLevelDefaultsToInfo(t *testing.T) {
	var cfg Config
	if err := envconfig.Process("chat_diagtest_unset", &cfg); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := NewLogger(&buf, cfg)
	log.Debug("hidden")
	log.Info("shown")
	if s := buf.String(); strings.Contains(s, "hidden") || !strings.Contains(s, "shown") {
		t.Errorf("default level logged %q", s)
	}
	if cfg.DebugAddr != "" {
		t.Errorf("debug endpoint on by default: %q", cfg.DebugAddr)
	}
}

func TestDebugOffWithoutAddress(t *testing.T) {
	d, err := Listen(Config{}, discard)
	if err != nil || d != nil {
		t.Fatalf("Listen without an address: %v, %v", d, err)
	}
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestDebugRefusesRemoteAddresses(t *testing.T) {
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0", "192.0.2.1:0", "example.com:0", "nonsense"} {
		if d, err := Listen(Config{DebugAddr: addr}, discard); err == nil {
			d.ln.Close()
			t.Errorf("%s: served without CHAT_DEBUG_ALLOW_REMOTE", addr)
		} else if !strings.Contains(err.Error(), "CHAT_DEBUG_ADDR") {
			t.Errorf("%s: error %q does not name the setting", addr, err)
		}
	}
	d, err := Listen(Config{DebugAddr: "0.0.0.0:0", DebugAllowRemote: true}, discard)
	if err != nil {
		t.Fatalf("allowed remote: %v", err)
	}
	d.ln.Close()
}

func TestDebugServesPprofOnLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "localhost:0"} {
		d, err := Listen(Config{DebugAddr: addr}, discard)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap?debug=1", "/debug/pprof/profile?seconds=1"} {
			res, err := http.Get("http://" + d.Addr() + path)
			if err != nil {
				t.Fatalf("%s%s: %v", addr, path, err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || len(body) == 0 {
				t.Errorf("%s%s: %d, %d bytes", addr, path, res.StatusCode, len(body))
			}
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
}
