package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/gorilla/websocket"
)

// TestSoak runs a short soak against the real services as processes: an api, a
// persister and two pushers built from this repository, on the test's NATS and
// FerretDB, with pusher-0 restarted mid-way by a -soak-restart shell command (SIGTERM;
// the test starts it again when it exits, as compose's restart policy would). It fails
// on any lost, duplicated or out-of-order delivery and on pusher heap or goroutine growth
// over the defaults. CHATLOAD_SOAK=<duration> runs it that long with the command's
// default workload instead (README, Performance: the 10-minute soak).
func TestSoak(t *testing.T) {
	long := os.Getenv("CHATLOAD_SOAK")
	if testing.Short() && long == "" {
		t.Skip("builds and runs the services: not with -short")
	}
	bin := buildServices(t)
	n := chattest.StartNATS(t)
	m := chattest.StartMongo(t)
	dir := t.TempDir()
	common := []string{"CHAT_NATS_URL=" + n.URL(), "CHAT_MONGO_URI=" + m.URI()}
	pusherEnv := []string{"CHAT_CLOSE_SPREAD=200ms", "CHAT_MAX_CONNECTIONS=0"}
	args := []string{"-soak", "-warmup", "3s", "-duration", "12s", "-rate", "30", "-drain", "10s",
		"-soak-rooms", "3", "-soak-subs", "12", "-soak-room-life", "4s", "-soak-session", "1500ms", "-soak-away", "400ms",
		"-soak-restart-at", "0.4", "-soak-window", "256", "-soak-cold", "3", "-soak-measure-timeout", "60s"}
	if long != "" {
		d, err := time.ParseDuration(long)
		if err != nil {
			t.Fatalf("CHATLOAD_SOAK=%q: %v", long, err)
		}
		args = []string{"-soak", "-warmup", "20s", "-duration", d.String(), "-rate", "50", "-drain", "15s"}
		// Abandoned rooms must leave the pushers' memory within the run for the heap check
		// to mean something: a minute idle, not the default five.
		pusherEnv = append(pusherEnv, "CHAT_ROOM_IDLE=1m")
	} else {
		pusherEnv = append(pusherEnv, "CHAT_WINDOW=256")
	}
	api := startService(t, bin, dir, "api", append(common, "CHAT_RATE_LIMIT=0"))
	startService(t, bin, dir, "persister", common)
	var ws []string
	for i := range 2 {
		p := startService(t, bin, dir, fmt.Sprintf("pusher-%d", i), append(common, pusherEnv...))
		ws = append(ws, "ws://"+p.addr+"/ws")
	}
	hook := fmt.Sprintf(`kill -TERM "$(cat %s/pusher-$CHATLOAD_PUSHER_INDEX.pid)"`, dir)
	args = append(args, "-api", "http://"+api.addr, "-ws", strings.Join(ws, ","), "-soak-restart", hook)
	cfg, err := parseFlags(args)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := runSoak(context.Background(), cfg, restartHook(cfg.Soak.Restart))
	if rep != nil {
		var sb strings.Builder
		rep.writeSummary(&sb)
		t.Log("\n" + sb.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Passed {
		t.Fatalf("soak failed: %v", rep.Failures)
	}
	// The soak did what it says: rooms replaced, clients left and resumed, the restart
	// closed clients with 1012 and they resumed elsewhere, cold resumes were checked.
	c := &rep.Clients
	switch {
	case rep.Rooms.Created <= cfg.Soak.Rooms*2 || rep.Rooms.Verified != rep.Rooms.Created:
		t.Errorf("rooms: %d created, %d checked", rep.Rooms.Created, rep.Rooms.Verified)
	case c.Leaves == 0 || c.Resumes == 0 || c.Joins == 0:
		t.Errorf("clients: %d joins, %d leaves, %d resumes", c.Joins, c.Leaves, c.Resumes)
	case c.CloseCodes["1012"] == 0 || c.Reconnects == 0:
		t.Errorf("no client was closed with 1012 and resumed: closes %v, reconnects %d", c.CloseCodes, c.Reconnects)
	case rep.Restart.Error != "" || !rep.Pushers[0].Restarted || rep.Pushers[1].Restarted:
		t.Errorf("restart: %+v, pushers restarted %v %v", rep.Restart, rep.Pushers[0].Restarted, rep.Pushers[1].Restarted)
	case rep.Rooms.Cold == 0 || rep.ColdResumes.Expected == 0:
		t.Errorf("cold resumes: %d rooms, %d messages expected", rep.Rooms.Cold, rep.ColdResumes.Expected)
	case rep.Deliveries.Expected < 100:
		t.Errorf("only %d deliveries expected", rep.Deliveries.Expected)
	}
}

// buildServices builds the api, persister and pusher from this repository's workspace.
func buildServices(t *testing.T) string {
	t.Helper()
	wd, _ := os.Getwd()
	root := wd
	for {
		if _, err := os.Stat(filepath.Join(root, "go.work")); err == nil {
			break
		}
		if filepath.Dir(root) == root {
			t.Fatalf("no go.work above %s", wd)
		}
		root = filepath.Dir(root)
	}
	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin+string(filepath.Separator),
		"./services/api", "./services/persister", "./services/pusher")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// service is one service process of the test. It is started again whenever it exits
// until the test ends (a restart is a SIGTERM to the pid in <dir>/<name>.pid), on the
// same address.
type service struct {
	t    *testing.T
	name string
	addr string
	bin  string
	env  []string
	dir  string

	mu      sync.Mutex
	cmd     *exec.Cmd
	closing bool
	exited  chan struct{}
	wg      sync.WaitGroup
}

func startService(t *testing.T, bin, dir, name string, env []string) *service {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	kind, _, _ := strings.Cut(name, "-")
	s := &service{t: t, name: name, addr: addr, bin: filepath.Join(bin, kind), dir: dir,
		env: append(append([]string{}, env...), "CHAT_HTTP_ADDR="+addr)}
	t.Cleanup(s.close)
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	s.wg.Add(1)
	go s.supervise()
	return s
}

// start runs the binary and waits for /readyz.
func (s *service) start() error {
	logf, err := os.OpenFile(filepath.Join(s.dir, s.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.bin)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	if err := os.WriteFile(filepath.Join(s.dir, s.name+".pid"), []byte(fmt.Sprint(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("%s exited before it was ready (log %s)", s.name, filepath.Join(s.dir, s.name+".log"))
		default:
		}
		if resp, err := client.Get("http://" + s.addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within 60s", s.name)
}

// supervise starts the service again whenever it exits, until close.
func (s *service) supervise() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		exited := s.exited
		s.mu.Unlock()
		<-exited
		s.mu.Lock()
		closing := s.closing
		s.mu.Unlock()
		if closing {
			return
		}
		if err := s.start(); err != nil {
			s.t.Errorf("restart: %v", err)
			return
		}
	}
}

// close stops the service (SIGTERM, then SIGKILL after 20s) and its supervisor.
func (s *service) close() {
	s.mu.Lock()
	s.closing = true
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	s.wg.Wait()
}

func TestCheckLog(t *testing.T) {
	acks := []soakAck{{Seq: 10, ID: "a"}, {Seq: 12, ID: "b"}, {Seq: 15, ID: "c"}, {Seq: 20, ID: "d"}}
	d := func(seq uint64, id string) soakDelivery { return soakDelivery{Seq: seq, ID: id, Room: "r"} }
	cases := []struct {
		name  string
		from  uint64
		got   []soakDelivery
		check func(v verdict) bool
	}{
		{"exact", 0, []soakDelivery{d(10, "a"), d(12, "b"), d(15, "c"), d(20, "d")},
			func(v verdict) bool { return v.bad() == 0 && v.Expected == 4 && v.Delivered == 4 }},
		{"exact from a resume point", 12, []soakDelivery{d(15, "c"), d(20, "d")},
			func(v verdict) bool { return v.bad() == 0 && v.Expected == 2 }},
		{"lost in the middle", 0, []soakDelivery{d(10, "a"), d(15, "c"), d(20, "d")},
			func(v verdict) bool { return v.Lost == 1 && v.bad() == 1 }},
		{"lost at the end", 0, []soakDelivery{d(10, "a"), d(12, "b"), d(15, "c")},
			func(v verdict) bool { return v.Lost == 1 && v.bad() == 1 }},
		{"duplicated by a resume", 0, []soakDelivery{d(10, "a"), d(12, "b"), d(12, "b"), d(15, "c"), d(20, "d")},
			func(v verdict) bool { return v.Duplicated == 1 && v.bad() == 1 }},
		{"out of order", 0, []soakDelivery{d(10, "a"), d(15, "c"), d(12, "b"), d(20, "d")},
			func(v verdict) bool { return v.OutOfOrder == 1 && v.bad() == 1 }},
		{"before the resume point", 12, []soakDelivery{d(12, "b"), d(15, "c"), d(20, "d")},
			func(v verdict) bool { return v.Foreign == 1 && v.bad() == 1 }},
		{"never acknowledged", 0, []soakDelivery{d(10, "a"), d(11, "x"), d(12, "b"), d(15, "c"), d(20, "d")},
			func(v verdict) bool { return v.Foreign == 1 && v.bad() == 1 }},
		{"another room", 0, []soakDelivery{d(10, "a"), {Seq: 11, ID: "x", Room: "other"}, d(12, "b"), d(15, "c"), d(20, "d")},
			func(v verdict) bool { return v.Foreign == 1 && v.bad() == 1 }},
		{"wrong id", 0, []soakDelivery{d(10, "a"), d(12, "c"), d(15, "c"), d(20, "d")},
			func(v verdict) bool { return v.WrongID == 1 && v.bad() == 1 }},
	}
	for _, c := range cases {
		v := checkLog(acks, 20, deliveryLog{Client: "c", Room: "r", From: c.from, Deliveries: c.got})
		if !c.check(v) {
			t.Errorf("%s: %+v", c.name, v)
		}
		if v.bad() > 0 && len(v.Details) == 0 {
			t.Errorf("%s: no detail", c.name)
		}
	}
}

// TestSoakVerdict: one bad delivery or one pusher over a threshold fails the soak.
func TestSoakVerdict(t *testing.T) {
	cfg, err := parseFlags([]string{"-soak", "-ws", "ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws"})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Soak.Metrics; len(got) != 2 || got[1] != "http://127.0.0.1:2/metrics" {
		t.Errorf("default metrics %v", got)
	}
	if _, err := parseFlags([]string{"-soak", "-soak-metrics", "http://10.0.0.1:8081/metrics"}); err == nil ||
		!strings.Contains(err.Error(), "loopback") {
		t.Errorf("a non-loopback metrics endpoint: %v", err)
	}
	sample := func(live, g float64) pusherSample {
		return pusherSample{LiveHeap: live, Goroutines: g, Start: 1, Scraped: "now"}
	}
	const mb = 1 << 20
	ok := pusherFigures{URL: "p", Baseline: sample(20*mb, 40), End: sample(30*mb, 50)}
	judge := func(dup int, figs ...pusherFigures) *soakReport {
		s := newSoak(&cfg)
		s.rep.Deliveries = verdict{Expected: 10, Delivered: 10 + dup, Duplicated: dup}
		return s.finish(figs)
	}
	if r := judge(0, ok); !r.Passed {
		t.Errorf("clean run failed: %v", r.Failures)
	}
	if r := judge(1, ok); r.Passed {
		t.Error("a duplicated delivery passed")
	}
	heap := ok
	heap.End = sample(53*mb, 50)
	if r := judge(0, ok, heap); r.Passed || !strings.Contains(strings.Join(r.Failures, " "), "live heap grew 33.0 MiB") {
		t.Errorf("33 MiB of heap growth: %v", r.Failures)
	}
	gr := ok
	gr.End = sample(20*mb, 61)
	if r := judge(0, gr); r.Passed || !strings.Contains(strings.Join(r.Failures, " "), "goroutines grew by 21") {
		t.Errorf("21 more goroutines: %v", r.Failures)
	}
	if liveHeap(30*mb, 50) != 20*mb || liveHeap(30*mb, 0) != 30*mb {
		t.Errorf("liveHeap")
	}
}

func TestRestartHook(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	hook := restartHook(`echo "$CHATLOAD_PUSHER_URL $CHATLOAD_PUSHER_INDEX" > ` + out)
	if err := hook(context.Background(), "http://127.0.0.1:9", 1); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "http://127.0.0.1:9 1\n" {
		t.Errorf("hook saw %q", b)
	}
	if err := restartHook("exit 3")(context.Background(), "", 0); err == nil {
		t.Error("a failing hook did not fail")
	}
}

// TestSoakClientLog: what a pusher sends reaches the check as sent: a frame pushed twice
// fails it, and a 1012 close is counted and resumed from the last seq seen.
func TestSoakClientLog(t *testing.T) {
	var mu sync.Mutex
	var sinces []string
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		mu.Lock()
		sinces = append(sinces, r.URL.Query().Get("since"))
		first := len(sinces) == 1
		mu.Unlock()
		send := func(s string) { _ = conn.WriteMessage(websocket.TextMessage, []byte(s)) }
		send(`{"type":"subscribed","room":"r","seq":9}`)
		msg := func(seq int, id string) {
			send(fmt.Sprintf(`{"type":"message","id":%q,"room":"r","name":"n","message":"m","sent_at":"2026-12-04T00:00:00.000Z","seq":%d}`, id, seq))
		}
		if first {
			msg(5, "a")
			msg(5, "a") // pushed twice
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseServiceRestart, ""), time.Now().Add(time.Second))
			return
		}
		msg(7, "b")
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	cfg, err := parseFlags([]string{"-soak", "-ws", "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"})
	if err != nil {
		t.Fatal(err)
	}
	s := newSoak(&cfg)
	room := &soakRoom{name: "r", acks: []soakAck{{Seq: 5, ID: "a"}, {Seq: 7, ID: "b"}}}
	c := &soakClient{s: s, room: room, idx: 1} // idx 1: joins with since=0
	c.log.Room, c.log.Client = "r", "c"
	ctx := context.Background()
	c.catchUp(ctx, 7, time.Now().Add(10*time.Second))
	v := checkLog(room.acks, 7, c.log)
	if v.Duplicated != 1 || v.bad() != 1 || v.Expected != 2 || v.Delivered != 3 {
		t.Errorf("verdict %+v", v)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sinces) != 2 || sinces[0] != "0" || sinces[1] != "5" {
		t.Errorf("since of the connections: %q, want 0 then 5", sinces)
	}
	if s.rep.Clients.CloseCodes["1012"] != 1 {
		t.Errorf("close codes %v", s.rep.Clients.CloseCodes)
	}
}
