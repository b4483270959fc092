package deploy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// backend is a fake api or pusher upstream that records who answered.
type backend struct {
	name string
	srv  *httptest.Server
}

func (b *backend) port(t *testing.T) int {
	t.Helper()
	_, p, err := net.SplitHostPort(b.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// startAPI answers every request with its name and what it saw.
func startAPI(t *testing.T, name string) *backend {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Seen-XFF", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Seen-URI", r.RequestURI)
		w.Header().Set("X-Seen-Body", strconv.FormatInt(n, 10))
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return &backend{name: name, srv: srv}
}

// startPusher upgrades "websocket" requests to a raw echo stream (enough to prove
// nginx forwards the upgrade both ways) and answers 400 otherwise.
func startPusher(t *testing.T, name string) *backend {
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") ||
			!strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
			w.Header().Set("X-Backend", name)
			http.Error(w, "not an upgrade", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"X-Backend: %s\r\nX-Seen-XFF: %s\r\nX-Seen-URI: %s\r\nX-Seen-Host: %s\r\n\r\n",
			name, r.Header.Get("X-Forwarded-For"), r.RequestURI, r.Host)
		rw.Flush()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			_, _ = io.Copy(conn, rw)
		}()
	}))
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return &backend{name: name, srv: srv}
}

// startNginx runs nginx in the foreground on a free loopback port in front of the
// backends and returns its address.
func startNginx(t *testing.T, api, pushers []*backend) string {
	t.Helper()
	bin := nginxBinary(t)
	ports := func(bs []*backend) []int {
		out := make([]int, len(bs))
		for i, b := range bs {
			out[i] = b.port(t)
		}
		return out
	}
	for attempt := 1; ; attempt++ {
		addr, err := tryStartNginx(t, bin, ports(api), ports(pushers))
		if err == nil {
			return addr
		}
		// Another process may take the free port before nginx binds it.
		if !strings.Contains(err.Error(), "Address already in use") || attempt == 3 {
			t.Fatal(err)
		}
	}
}

func tryStartNginx(t *testing.T, bin string, api, pushers []int) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	listen := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, conf := writeLoopbackConf(t, listen, api, pushers)
	var stderr syncBuffer
	cmd := exec.Command(bin, "-c", conf, "-p", dir, "-e", "stderr", "-g", "daemon off;")
	cmd.Stderr = &stderr
	// Its own process group, so a stuck nginx and its workers can be killed together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // fast shutdown of master and workers
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", listen)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			return "", fmt.Errorf("nginx exited: %v\n%s", err, stderr.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Cleanup(stop)
			return addr, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("nginx not listening on %s within 10s\n%s", addr, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for the exec copier goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestNginxRoutesLoopback runs the loopback render in real nginx in front of fake
// upstreams: /ws reaches a pusher with the upgrade intact, everything else an api,
// X-Forwarded-For is set by nginx, requests spread over all replicas, and a dead
// pusher is skipped.
func TestNginxRoutesLoopback(t *testing.T) {
	api := []*backend{startAPI(t, "api-1"), startAPI(t, "api-2")}
	pushers := []*backend{startPusher(t, "pusher-1"), startPusher(t, "pusher-2"), startPusher(t, "pusher-3")}
	addr := startNginx(t, api, pushers)
	client := &http.Client{Timeout: 5 * time.Second}

	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/rooms/general/messages?after=5", nil)
		req.Header.Set("X-Forwarded-For", "6.6.6.6") // a spoof nginx must replace
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		b := resp.Header.Get("X-Backend")
		if !strings.HasPrefix(b, "api-") {
			t.Fatalf("GET /rooms/...: answered by %q (status %d), want an api", b, resp.StatusCode)
		}
		if got := resp.Header.Get("X-Seen-XFF"); got != "127.0.0.1" {
			t.Errorf("api saw X-Forwarded-For %q, want 127.0.0.1", got)
		}
		if got := resp.Header.Get("X-Seen-URI"); got != "/rooms/general/messages?after=5" {
			t.Errorf("api saw URI %q", got)
		}
		seen[b]++
	}
	if len(seen) != len(api) {
		t.Errorf("10 requests reached %v, want every api replica", seen)
	}

	// A body over the api's 64 KiB limit still reaches the api, which answers 413 itself.
	resp, err := client.Post("http://"+addr+"/messages", "application/json", bytes.NewReader(make([]byte, 70000)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Seen-Body") != "70000" {
		t.Errorf("POST 70000 bytes: status %d, api saw %q bytes", resp.StatusCode, resp.Header.Get("X-Seen-Body"))
	}

	// Only /ws exactly goes to the pushers.
	for path, want := range map[string]string{"/ws": "pusher-", "/ws/x": "api-", "/wsx": "api-"} {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if b := resp.Header.Get("X-Backend"); !strings.HasPrefix(b, want) {
			t.Errorf("GET %s answered by %q, want %s*", path, b, want)
		}
	}

	seen = map[string]int{}
	for i := 0; i < 6; i++ {
		seen[wsEcho(t, addr)]++
	}
	if len(seen) != len(pushers) {
		t.Errorf("6 sockets reached %v, want every pusher (no sticky sessions)", seen)
	}

	// A pusher going away: every new socket still lands on a live one.
	pushers[0].srv.Close()
	for i := 0; i < 6; i++ {
		if b := wsEcho(t, addr); b == pushers[0].name {
			t.Fatalf("socket reached the stopped %s", b)
		}
	}
}

// wsEcho opens an upgraded connection to /ws through nginx, checks both directions
// and returns the pusher that served it.
func wsEcho(t *testing.T, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws?room=general&since=7 HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n", addr)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("upgrade response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade status %d, want 101", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Seen-XFF"); got != "127.0.0.1" {
		t.Errorf("pusher saw X-Forwarded-For %q, want 127.0.0.1", got)
	}
	if got := resp.Header.Get("X-Seen-URI"); got != "/ws?room=general&since=7" {
		t.Errorf("pusher saw URI %q", got)
	}
	// The pusher's same-origin check compares Origin's host:port with Host.
	if got := resp.Header.Get("X-Seen-Host"); got != addr {
		t.Errorf("pusher saw Host %q, want %q (with the port)", got, addr)
	}
	for _, msg := range []string{"hello\n", "again\n"} {
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatal(err)
		}
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo through nginx: %q, %v", got, err)
		}
	}
	return resp.Header.Get("X-Backend")
}

// TestNginxHidesInternalEndpoints: /metrics and /readyz of the api are not reachable
// through the edge, in any spelling nginx normalizes to them, while the public routes
// still reach their upstreams. Prometheus and health checks go to the services directly.
func TestNginxHidesInternalEndpoints(t *testing.T) {
	api := []*backend{startAPI(t, "api-1")}
	pushers := []*backend{startPusher(t, "pusher-1")}
	addr := startNginx(t, api, pushers)
	client := &http.Client{Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/metrics"},
		{http.MethodGet, "/readyz"},
		{http.MethodHead, "/metrics"},
		{http.MethodHead, "/readyz"},
		{http.MethodPost, "/metrics"},
		{http.MethodGet, "/metrics?format=text"},
		{http.MethodGet, "/readyz?verbose=1"},
		{http.MethodGet, "//metrics"},
		{http.MethodGet, "/./readyz"},
		{http.MethodGet, "/ws/../metrics"},
		{http.MethodGet, "/%6Detrics"},
		{http.MethodGet, "/ready%7A"},
	} {
		status, backend, body := rawRequest(t, addr, c.method, c.path)
		if status != http.StatusNotFound || backend != "" {
			t.Errorf("%s %s: status %d from %q, want 404 from nginx itself", c.method, c.path, status, backend)
		}
		if c.method == http.MethodGet && body != `{"error":"not found"}`+"\n" {
			t.Errorf("%s %s: body %q, want a JSON error", c.method, c.path, body)
		}
	}

	// The public surface still reaches the api ...
	for _, path := range []string{"/", "/chat.js", "/healthz", "/messages", "/rooms/general/messages?limit=5",
		"/metrics/x", "/readyz2"} {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if b := resp.Header.Get("X-Backend"); b != "api-1" {
			t.Errorf("GET %s: answered by %q (status %d), want the api", path, b, resp.StatusCode)
		}
	}
	resp, err := client.Post("http://"+addr+"/rooms/general/messages", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if b := resp.Header.Get("X-Backend"); b != "api-1" {
		t.Errorf("POST /rooms/general/messages: answered by %q, want the api", b)
	}
	// ... and the pushers.
	if b := wsEcho(t, addr); b != "pusher-1" {
		t.Errorf("/ws reached %q, want pusher-1", b)
	}
}

// rawRequest sends one request with the path exactly as given (net/http would clean it)
// and returns the status, the X-Backend that answered (empty: nginx itself) and the body.
func rawRequest(t *testing.T, addr, method, path string) (status int, backend, body string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", method, path, addr)
	req, _ := http.NewRequest(method, "http://"+addr+"/", nil)
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header.Get("X-Backend"), string(b)
}
