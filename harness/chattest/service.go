package chattest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/chatrt/chat/pkg/buildinfo"
)

// What every service binary's main test checks of a running service (api, persister,
// pusher): its build on /metrics and /healthz, and the profiling endpoint.

// FreeAddr is a free loopback address for a listener the test starts once.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// CheckBuildInfo: the running service says which build it is, on /metrics
// (chat_build_info{service,version,commit} 1) and in /healthz's body.
func CheckBuildInfo(t testing.TB, base, service string) {
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

// CheckPprof: CHAT_DEBUG_ADDR serves net/http/pprof.
func CheckPprof(t testing.TB, addr string) {
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
