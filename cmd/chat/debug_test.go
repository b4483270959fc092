package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/chatrt/chat/harness/chattest"
)

// TestDebugEndpoint: CHAT_DEBUG_ADDR serves net/http/pprof for the whole process on its
// own port, and nothing of it is on the public port.
func TestDebugEndpoint(t *testing.T) {
	cfg := testConfig(t)
	cfg.Diag.DebugAddr = chattest.FreeAddr(t)
	s := startSystemWith(t, cfg)
	res, err := http.Get("http://" + cfg.Diag.DebugAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	// The whole system is in this process: the pusher's hub is in the goroutine dump.
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "services/pusher") {
		t.Fatalf("pprof: %d %.300s", res.StatusCode, body)
	}
	res, err = http.Get(s.url + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusOK {
		t.Fatal("/debug/pprof/ answered on the public port")
	}
}

// TestDebugEndpointRefusesRemote: a non-loopback CHAT_DEBUG_ADDR without
// CHAT_DEBUG_ALLOW_REMOTE stops the start before anything else starts.
func TestDebugEndpointRefusesRemote(t *testing.T) {
	cfg := testConfig(t)
	cfg.Diag.DebugAddr = "0.0.0.0:0"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = serve(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), ln)
	if err == nil || !strings.Contains(err.Error(), "CHAT_DEBUG_ALLOW_REMOTE") {
		t.Fatalf("serve with CHAT_DEBUG_ADDR=0.0.0.0:0: %v", err)
	}
}
