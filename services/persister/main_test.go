package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/buildinfo"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/diag"
	"github.com/chatrt/chat/pkg/natsconn"
	"github.com/chatrt/chat/services/persister/app"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestRunServesAndShutsDown(t *testing.T) {
	n := chattest.StartNATS(t)
	m := chattest.StartMongo(t)
	cfg := app.Config{
		NATS: natsconn.NATS{URL: n.URL()}, MongoURI: m.URI(), HTTPAddr: freeAddr(t),
		Stream: chat.DefaultStreamOptions(), ShutdownTimeout: 5 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	dcfg := diag.Config{DebugAddr: freeAddr(t)}
	go func() { done <- run(ctx, cfg, dcfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()

	chattest.Eventually(t, 15*time.Second, func() bool {
		res, err := http.Get("http://" + cfg.HTTPAddr + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, "run serves /readyz")
	checkBuildInfo(t, "http://"+cfg.HTTPAddr, "persister")
	checkPprof(t, dcfg.DebugAddr)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

// checkBuildInfo: the running service says which build it is, on /metrics
// (chat_build_info{service,version,commit} 1) and in /healthz's body.
func checkBuildInfo(t *testing.T, base, service string) {
	t.Helper()
	bi := buildinfo.Read()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	want := fmt.Sprintf(`chat_build_info{commit=%q,service=%q,version=%q} 1`, bi.Commit(), service, bi.Version)
	if !strings.Contains(string(metrics), want+"\n") {
		t.Errorf("/metrics lacks %s", want)
	}
	res, err = http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var h map[string]string
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil || res.StatusCode != http.StatusOK ||
		h["status"] != "ok" || h["version"] != bi.Version || h["commit"] != bi.Commit() || bi.Version == "" {
		t.Errorf("/healthz %d %v (%v), want status ok, version %q, commit %q", res.StatusCode, h, err, bi.Version, bi.Commit())
	}
}

// checkPprof: CHAT_DEBUG_ADDR serves net/http/pprof.
func checkPprof(t *testing.T, addr string) {
	t.Helper()
	res, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile:") {
		t.Fatalf("pprof on %s: %d %.200s", addr, res.StatusCode, body)
	}
}

// TestRunRefusesRemoteDebugAddr: a profiling endpoint reachable from other machines must
// be asked for explicitly; run fails before connecting anything.
func TestRunRefusesRemoteDebugAddr(t *testing.T) {
	err := run(context.Background(), app.Config{}, diag.Config{DebugAddr: "0.0.0.0:0"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "CHAT_DEBUG_ALLOW_REMOTE") {
		t.Fatalf("run with CHAT_DEBUG_ADDR=0.0.0.0:0: %v", err)
	}
}
