package chatclient_test

// The client against the real services: embedded NATS and FerretDB (harness/chattest),
// the persister and pusher nodes from their app packages on real HTTP servers, messages
// published to the CHAT stream as other services (and the api) do.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	chatclient "github.com/chatrt/chat/clients/go"
	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/auth"
	"github.com/chatrt/chat/pkg/chat"
	persisterapp "github.com/chatrt/chat/services/persister/app"
	pusherapp "github.com/chatrt/chat/services/pusher/app"
	"github.com/prometheus/client_golang/prometheus"
)

type system struct {
	t     *testing.T
	nats  *chattest.NATS
	mongo *chattest.Mongo
	pub   *chat.Poster
}

// startSystem runs NATS, MongoDB (FerretDB) and a persister; pushers are added with
// pusher().
func startSystem(t *testing.T) *system {
	t.Helper()
	s := &system{t: t, nats: chattest.StartNATS(t), mongo: chattest.StartMongo(t)}
	nc, js := s.nats.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := chat.EnsureStreams(ctx, js, chat.DefaultStreamOptions()); err != nil {
		t.Fatal(err)
	}
	s.pub = chat.NewPoster(js)
	p, err := persisterapp.New(ctx, persisterapp.Config{Stream: chat.DefaultStreamOptions(), ShutdownTimeout: 5 * time.Second,
		BatchSize: 100, BatchWait: 5 * time.Millisecond, MaxAckPending: 1000, AckWait: 10 * time.Second,
		WriteTimeout: 5 * time.Second, RetryMin: 50 * time.Millisecond, RetryMax: time.Second, PendingInterval: time.Second},
		persisterapp.Deps{NATS: nc, Mongo: s.mongo.Connect(t), Metrics: prometheus.NewRegistry(), Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	run(t, p.Run)
	return s
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// run runs f until the test ends.
func run(t *testing.T, f func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

func pusherConfig() pusherapp.Config {
	return pusherapp.Config{Stream: chat.DefaultStreamOptions(), ShutdownTimeout: 5 * time.Second, Window: 1024, QueueSize: 4096,
		ReplayBatch: 64, PingInterval: 5 * time.Second, PongTimeout: 20 * time.Second, WriteTimeout: 5 * time.Second,
		MaxSubscriptions: 8, CloseSpread: 0}
}

// pusher is a pusher node on an HTTP server whose address survives its restarts: while
// the node is stopped the server answers 503, as a pusher shutting down does.
type pusher struct {
	s   *system
	cfg pusherapp.Config
	srv *httptest.Server
	url string

	mu      sync.Mutex
	handler http.Handler
	stopApp func()
}

func (s *system) pusher(cfg pusherapp.Config) *pusher {
	p := &pusher{s: s, cfg: cfg}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		h := p.handler
		p.mu.Unlock()
		if h == nil {
			http.Error(w, `{"error":"shutting down"}`, http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	p.url = "ws" + strings.TrimPrefix(p.srv.URL, "http") + "/ws"
	s.t.Cleanup(p.kill)
	p.start()
	return p
}

func (p *pusher) start() {
	t := p.s.t
	t.Helper()
	nc, _ := p.s.nats.Connect(t)
	a, err := pusherapp.New(context.Background(), p.cfg, pusherapp.Deps{NATS: nc, Mongo: p.s.mongo.Connect(t),
		Metrics: prometheus.NewRegistry(), Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	p.mu.Lock()
	p.handler = a.Handler()
	p.stopApp = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("pusher run: %v", err)
		}
	}
	p.mu.Unlock()
}

// stop shuts the node down as SIGTERM does: its clients are closed with 1012.
func (p *pusher) stop() {
	p.mu.Lock()
	stop := p.stopApp
	p.handler, p.stopApp = nil, nil
	p.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// kill stops the node and its server: the address refuses connections.
func (p *pusher) kill() {
	p.stop()
	p.srv.Close()
}

// post publishes n messages to room (their index, then "x" up to size characters) and
// returns their seqs.
func (s *system) post(room string, n, size int) []uint64 {
	return s.postFill(room, n, size, "x")
}

func (s *system) postFill(room string, n, size int, fill string) []uint64 {
	s.t.Helper()
	var seqs []uint64
	for i := range n {
		text := fmt.Sprint(i)
		text += strings.Repeat(fill, max(size-len(text), 0))
		m, _, err := s.pub.Post(context.Background(), chat.Post{Room: room, Name: "n", Message: text})
		if err != nil {
			s.t.Fatal(err)
		}
		seqs = append(seqs, m.Seq)
	}
	return seqs
}

// collector keeps what a subscription delivered and the events it went through.
type collector struct {
	mu     sync.Mutex
	seqs   []uint64
	events []chatclient.Event
	wrong  []string
}

func (c *collector) handle(m chatclient.Msg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.ID == "" || m.Name != "n" || m.SentAt.IsZero() {
		c.wrong = append(c.wrong, string(m.Raw))
	}
	c.seqs = append(c.seqs, m.Seq)
}

func (c *collector) options() []chatclient.SubscribeOption {
	return []chatclient.SubscribeOption{
		chatclient.OnEvent(func(e chatclient.Event) { c.mu.Lock(); c.events = append(c.events, e); c.mu.Unlock() }),
		chatclient.OnSkipped(func(f chatclient.Frame) {
			c.mu.Lock()
			c.wrong = append(c.wrong, "skipped "+string(f.Data))
			c.mu.Unlock()
		}),
	}
}

// await waits until every seq in want was delivered, then checks that exactly want was
// delivered, in order.
func (c *collector) await(t *testing.T, want []uint64) {
	t.Helper()
	last := want[len(want)-1]
	chattest.Eventually(t, 60*time.Second, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.seqs) > 0 && c.seqs[len(c.seqs)-1] >= last
	}, "seq %d not delivered", last)
	c.mu.Lock()
	defer c.mu.Unlock()
	if got, exp := fmt.Sprint(c.seqs), fmt.Sprint(want); got != exp {
		t.Errorf("delivered %d messages, want %d exactly once in order:\n got %s\nwant %s", len(c.seqs), len(want), got, exp)
	}
	if len(c.wrong) > 0 {
		t.Errorf("wrong or skipped frames: %q", c.wrong)
	}
}

// closes are the close codes of the Disconnected events; connects the URLs connected to.
func (c *collector) history() (closes []int, connects []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.events {
		switch e.Kind {
		case chatclient.Disconnected:
			closes = append(closes, e.Code)
		case chatclient.Connected:
			connects = append(connects, e.URL)
		}
	}
	return closes, connects
}

func newClient(t *testing.T, urls []string, opts ...chatclient.Option) *chatclient.Client {
	t.Helper()
	c, err := chatclient.New(urls, append([]chatclient.Option{chatclient.WithBackoff(20*time.Millisecond, 500*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func subscribe(t *testing.T, c *chatclient.Client, room string, col *collector, opts ...chatclient.SubscribeOption) *chatclient.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx, room, col.handle, append(col.options(), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// TestSystemResumeAfterPusherRestart: a pusher restarted while messages keep coming
// closes its clients with 1012; the client reconnects (to the same address, refused
// until the new node is up) and resumes: every message once, in order, none missing.
func TestSystemResumeAfterPusherRestart(t *testing.T) {
	s := startSystem(t)
	p := s.pusher(pusherConfig())
	col := &collector{}
	sub := subscribe(t, newClient(t, []string{p.url}), "restart", col)

	var seqs []uint64
	seqs = append(seqs, s.post("restart", 50, 20)...)
	p.stop()
	seqs = append(seqs, s.post("restart", 50, 20)...) // while no pusher serves
	p.start()
	seqs = append(seqs, s.post("restart", 50, 20)...)
	col.await(t, seqs)
	if closes, connects := col.history(); len(closes) == 0 || closes[0] != 1012 || len(connects) < 2 {
		t.Errorf("closes %v, connections %v: want a 1012 and a reconnection", closes, connects)
	}
	if sub.LastSeq() != seqs[len(seqs)-1] {
		t.Errorf("LastSeq %d, want %d", sub.LastSeq(), seqs[len(seqs)-1])
	}
}

// TestSystemFailover: with two pusher URLs, a subscription whose pusher goes away for
// good continues on the other one from where it was; Since(0) starts with the room's
// whole history.
func TestSystemFailover(t *testing.T) {
	s := startSystem(t)
	a, b := s.pusher(pusherConfig()), s.pusher(pusherConfig())
	seqs := s.post("failover", 30, 20) // before the subscription: delivered through since=0
	col := &collector{}
	subscribe(t, newClient(t, []string{a.url, b.url}), "failover", col, chatclient.Since(0))
	seqs = append(seqs, s.post("failover", 30, 20)...)
	col.await(t, seqs[:60])
	a.kill()
	seqs = append(seqs, s.post("failover", 30, 20)...)
	col.await(t, seqs)
	if closes, connects := col.history(); len(closes) == 0 || closes[0] != 1012 ||
		len(connects) != 2 || connects[0] != a.url || connects[1] != b.url {
		t.Errorf("closes %v, connections %v: want a then b", closes, connects)
	}
}

// TestSystemSlowConsumerResumes: a handler that stops reading while a room floods fills
// the socket buffers and its queue on the pusher, which evicts it (1013); the client
// delivers what was buffered, resumes, and ends with every message once, in order.
func TestSystemSlowConsumerResumes(t *testing.T) {
	s := startSystem(t)
	cfg := pusherConfig()
	cfg.Window, cfg.QueueSize = 8, 128
	// The blocked client reads nothing, not even pings, until the flood is over: give the
	// eviction's close frame (queued behind what the kernel buffered) and the pongs time.
	cfg.WriteTimeout, cfg.PongTimeout = time.Minute, 2*time.Minute
	p := s.pusher(cfg)
	col := &collector{}
	release := make(chan struct{})
	var blocked atomic.Bool
	c := newClient(t, []string{p.url})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.Subscribe(ctx, "flood", func(m chatclient.Msg) {
		if blocked.CompareAndSwap(false, true) {
			<-release
		}
		col.handle(m)
	}, col.options()...)
	if err != nil {
		t.Fatal(err)
	}
	// 1,500 messages of 4,000 three-byte characters, 18 MB: more than loopback socket
	// buffers hold.
	t0 := time.Now()
	seqs := s.postFill("flood", 1500, 4000, "€")
	t.Logf("posted in %v", time.Since(t0))
	close(release)
	col.await(t, seqs)
	t.Logf("delivered in %v", time.Since(t0))
	if closes, connects := col.history(); len(closes) != 1 || closes[0] != 1013 || len(connects) != 2 {
		t.Errorf("closes %v, connections %v: want one 1013 and a resume", closes, connects)
	}
}

// TestSystemAuth: with authentication on, the token goes with the upgrade; when it
// expires the pusher closes 4401 and the client resumes with a fresh token from the token
// function, missing nothing; a token that does not allow the room fails Subscribe with
// ErrForbidden.
func TestSystemAuth(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-test"
	s := startSystem(t)
	cfg := pusherConfig()
	cfg.Config = auth.Config{HS256Secret: secret, Leeway: time.Second}
	p := s.pusher(cfg)
	var minted atomic.Int32
	mint := func(rooms string, ttl time.Duration) string {
		now := time.Now()
		claims := auth.Claims{Subject: "bot", IssuedAt: auth.NewNumericDate(now), Expires: auth.NewNumericDate(now.Add(ttl))}
		if rooms != "" {
			claims.Rooms = auth.ParseRooms(rooms)
		}
		tok, err := auth.Sign([]byte(secret), claims)
		if err != nil {
			t.Error(err)
		}
		return tok
	}
	// The first token lives two seconds; the next ones an hour.
	c := newClient(t, []string{p.url}, chatclient.WithToken(func(context.Context) (string, error) {
		if minted.Add(1) == 1 {
			return mint("", 2*time.Second), nil
		}
		return mint("", time.Hour), nil
	}))
	col := &collector{}
	sub := subscribe(t, c, "secure", col)
	seqs := s.post("secure", 20, 20)
	col.await(t, seqs[:20])
	chattest.Eventually(t, 10*time.Second, func() bool { closes, _ := col.history(); return len(closes) > 0 },
		"the expired token did not close the connection")
	seqs = append(seqs, s.post("secure", 20, 20)...)
	col.await(t, seqs)
	if closes, connects := col.history(); closes[0] != 4401 || len(connects) != 2 || minted.Load() != 2 {
		t.Errorf("closes %v, connections %v, %d tokens: want 4401, a resume, one fresh token", closes, connects, minted.Load())
	}
	select {
	case <-sub.Closed():
		t.Fatalf("the subscription ended: %v", sub.Err())
	default:
	}

	other := newClient(t, []string{p.url}, chatclient.WithToken(func(context.Context) (string, error) {
		return mint("team-*", time.Hour), nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := other.Subscribe(ctx, "secure", func(chatclient.Msg) {}); !errors.Is(err, chatclient.ErrForbidden) {
		t.Errorf("a token for team-*: %v, want ErrForbidden", err)
	}
}
