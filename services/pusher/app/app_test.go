package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"github.com/chatrt/chat/services/pusher/app"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

type env struct {
	t     *testing.T
	nats  *chattest.NATS
	mongo *chattest.Mongo
	js    jetstream.JetStream
	pub   *chat.Poster
	store *history.Store
}

func newEnv(t *testing.T, opts chat.StreamOptions) *env {
	t.Helper()
	e := &env{t: t, nats: chattest.StartNATS(t), mongo: chattest.StartMongo(t)}
	_, e.js = e.nats.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := chat.EnsureStreams(ctx, e.js, opts); err != nil {
		t.Fatal(err)
	}
	e.pub = chat.NewPoster(e.js)
	e.store = history.New(e.mongo.Connect(t))
	return e
}

func defaultConfig() app.Config {
	return app.Config{Stream: chat.DefaultStreamOptions(), ShutdownTimeout: 5 * time.Second, Window: 1024, QueueSize: 4096,
		ReplayBatch: 64, PingInterval: 5 * time.Second, PongTimeout: 20 * time.Second, WriteTimeout: 5 * time.Second,
		MaxSubscriptions: 8, CloseSpread: 0}
}

type node struct {
	url    string
	cancel context.CancelFunc
	done   chan error
	app    *app.App
}

// startPusher runs a pusher node against the env's servers and returns its ws URL.
func (e *env) startPusher(cfg app.Config) *node {
	e.t.Helper()
	nc, _ := e.nats.Connect(e.t)
	cfg.Stream = chat.DefaultStreamOptions()
	a, err := app.New(context.Background(), cfg, app.Deps{NATS: nc, Mongo: e.mongo.Connect(e.t), Metrics: prometheus.NewRegistry(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		e.t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws", cancel: cancel, done: make(chan error, 1), app: a}
	go func() { n.done <- a.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		<-n.done
		srv.Close()
	})
	return n
}

func (e *env) publish(room string, n int) []chat.Message {
	e.t.Helper()
	var out []chat.Message
	for i := 0; i < n; i++ {
		m, _, err := e.pub.Post(context.Background(), chat.Post{Room: room, Name: "n", Message: fmt.Sprintf("%s-%d", room, i)})
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

type frame struct {
	Epoch string `json:"epoch"`
	Type  string `json:"type"`
	Room  string `json:"room"`
	Seq   uint64 `json:"seq"`
	ID    string `json:"id"`
	Error string `json:"error"`
	Msg   string `json:"message"`
}

type client struct {
	t    *testing.T
	conn *websocket.Conn
}

func dial(t *testing.T, url string) *client {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", url, err, resp)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn}
}

func (c *client) next() frame {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		c.t.Fatalf("frame %s: %v", data, err)
	}
	return f
}

// messages reads n message frames and checks they are exactly want, in order.
func (c *client) expect(want []chat.Message) {
	c.t.Helper()
	for i, w := range want {
		f := c.next()
		if f.Type != "message" || f.Seq != w.Seq || f.ID != w.ID || f.Msg != w.Message {
			c.t.Fatalf("frame %d = %+v, want message seq %d id %s", i, f, w.Seq, w.ID)
		}
	}
}

func (c *client) send(v string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(v)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) closeCode() int {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.conn.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		if err != nil {
			c.t.Fatalf("want a close frame, got %v", err)
		}
	}
}

func TestLiveAndResumeFromWindow(t *testing.T) {
	e := newEnv(t, chat.DefaultStreamOptions())
	before := e.publish("r", 3) // before the node starts: not in its window
	n := e.startPusher(defaultConfig())

	live := dial(t, n.url+"?room=r")
	if f := live.next(); f.Type != "subscribed" || f.Room != "r" || f.Seq != before[2].Seq {
		t.Fatalf("subscribed frame = %+v, want seq %d", f, before[2].Seq)
	}
	msgs := e.publish("r", 5)
	e.publish("other", 2)
	live.expect(msgs)

	// Resume from inside the window, and from before the node started (backlog).
	mid := dial(t, fmt.Sprintf("%s?room=r&since=%d", n.url, msgs[1].Seq))
	if f := mid.next(); f.Type != "subscribed" {
		t.Fatalf("got %+v", f)
	}
	mid.expect(msgs[2:])
	old := dial(t, fmt.Sprintf("%s?room=r&since=%d", n.url, before[0].Seq))
	old.next()
	old.expect(append(before[1:], msgs...))

	more := e.publish("r", 3)
	for _, c := range []*client{live, mid, old} {
		c.expect(more)
	}
	// since beyond the latest seq: live from now.
	ahead := dial(t, n.url+"?room=r&since=999999")
	ahead.next()
	last := e.publish("r", 1)
	ahead.expect(last)
}

func TestResumeAcrossMongoStreamAndLiveWhilePublishing(t *testing.T) {
	opts := chat.DefaultStreamOptions()
	opts.MaxMsgs = 20 // a small stream window: older messages only in MongoDB
	e := newEnv(t, opts)
	all := e.publish("r", 50)
	// The persister's job, done here directly: everything is in MongoDB.
	if err := e.store.InsertMany(context.Background(), all); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.Window = 4
	cfg.ReplayBatch = 7
	n := e.startPusher(cfg)

	// Keep publishing while clients resume: the replay→live seam must be exact.
	var wg sync.WaitGroup
	var live []chat.Message
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 40; i++ {
			m, _, err := e.pub.Post(context.Background(), chat.Post{Room: "r", Name: "n", Message: fmt.Sprint("live-", i)})
			if err != nil {
				t.Error(err)
				return
			}
			live = append(live, m)
		}
	}()
	c := dial(t, n.url+"?room=r&since=3")
	if f := c.next(); f.Type != "subscribed" {
		t.Fatalf("got %+v", f)
	}
	wg.Wait()
	want := append(append([]chat.Message{}, all[3:]...), live...)
	c.expect(want)
}

func TestCommandsAndBadInput(t *testing.T) {
	e := newEnv(t, chat.DefaultStreamOptions())
	n := e.startPusher(defaultConfig())
	httpURL := "http" + strings.TrimPrefix(n.url, "ws")
	for _, q := range []string{"?room=bad.room", "?room=", "?room=r&since=-1", "?room=r&since=x", "?since=3"} {
		resp, err := http.Get(httpURL + q)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || body["error"] == "" {
			t.Errorf("GET /ws%s = %d %v, want 400 with an error", q, resp.StatusCode, body)
		}
	}

	c := dial(t, n.url)
	c.send(`{"type":"subscribe","room":"a"}`)
	if f := c.next(); f.Type != "subscribed" || f.Room != "a" {
		t.Fatalf("got %+v", f)
	}
	for cmd, want := range map[string]string{
		`{"type":"subscribe","room":"a"}`:     "already subscribed",
		`{"type":"dance","room":"a"}`:         "unknown type",
		`{"type":"subscribe","room":"a b"}`:   "room:",
		`{"type":"subscribe","room":7}`:       "room: must be a string",
		`{"type":"unsubscribe","room":"zzz"}`: "not subscribed",
	} {
		c.send(cmd)
		if f := c.next(); f.Type != "error" || !strings.Contains(f.Error, want) {
			t.Errorf("%s -> %+v, want error containing %q", cmd, f, want)
		}
	}
	c.send(`{"type":"subscribe","room":"b","since":0}`)
	if f := c.next(); f.Type != "subscribed" || f.Room != "b" {
		t.Fatalf("got %+v", f)
	}
	c.send(`{"type":"unsubscribe","room":"a"}`)
	// Commands are handled in order: the answer to the next one means the unsubscribe is
	// done (a message of a published before that could still come, and would be fine).
	c.send(`{"type":"unsubscribe","room":"zzz"}`)
	if f := c.next(); f.Type != "error" || !strings.Contains(f.Error, "not subscribed") {
		t.Fatalf("got %+v", f)
	}
	msgs := e.publish("a", 1)
	bm := e.publish("b", 1)
	c.expect(bm) // nothing from a after the unsubscribe
	_ = msgs

	bin := dial(t, n.url)
	_ = bin.conn.WriteMessage(websocket.BinaryMessage, []byte{1, 2})
	if code := bin.closeCode(); code != 1008 {
		t.Errorf("binary frame: close %d, want 1008", code)
	}
	junk := dial(t, n.url)
	junk.send("hello")
	if code := junk.closeCode(); code != 1008 {
		t.Errorf("non-JSON frame: close %d, want 1008", code)
	}
	big := dial(t, n.url)
	big.send(`{"type":"subscribe","room":"` + strings.Repeat("x", 5000) + `"}`)
	if code := big.closeCode(); code != 1009 {
		t.Errorf("oversized frame: close %d, want 1009", code)
	}
}

func TestSlowClientEvictedWithoutSlowingOthers(t *testing.T) {
	e := newEnv(t, chat.DefaultStreamOptions())
	cfg := defaultConfig()
	cfg.Window = 8
	// The fast client reads all the time, but its frames wait in its queue for the
	// writer, which a busy client gets once per flush interval: at the ~5,000 posts/s of
	// this test, 128 frames were 25 ms of writer delay, which GC and the scheduler (NATS,
	// JetStream and the pusher share this process's two cores) sometimes exceeded, and the
	// fast client was evicted (3 runs in 15). 1024 frames (4 MB) is 200 ms; the slow client
	// still overflows it well within the 16 MB: a socket nobody reads holds its initial
	// receive buffer (128 KB) and at most tcp_wmem's 4 MB (Linux's defaults, and here).
	cfg.QueueSize = 1024
	// The slow client reads nothing until the end; its close frame then still has to get
	// through behind what the kernel buffered, so give that write time.
	cfg.WriteTimeout = time.Minute
	// Not reading, it answers no ping either: on a loaded machine the 4,000 posts took
	// longer than the default 20 s pong timeout, which then dropped the slow client (a
	// reset, not 1013) before its queue overflowed. The eviction is what is tested here.
	cfg.PongTimeout = 2 * time.Minute
	n := e.startPusher(cfg)
	slow := dial(t, n.url+"?room=r") // never reads until the end
	fast := dial(t, n.url+"?room=r")
	fast.next()
	big := strings.Repeat("x", 4000)
	const total = 4000 // 16 MB: more than loopback socket buffers hold
	sent := make(chan chat.Message, total)
	go func() {
		defer close(sent)
		for i := 0; i < total; i++ {
			m, _, err := e.pub.Post(context.Background(), chat.Post{Room: "r", Name: "n", Message: big})
			if err != nil {
				t.Error(err)
				return
			}
			sent <- m
		}
	}()
	// The fast client reads while messages flow and gets every one of them, in order.
	i := 0
	for w := range sent {
		if f := fast.next(); f.Seq != w.Seq {
			t.Fatalf("fast client frame %d: seq %d, want %d", i, f.Seq, w.Seq)
		}
		i++
	}
	if i != total {
		t.Fatalf("published %d", i)
	}
	if code := slow.closeCode(); code != 1013 {
		t.Fatalf("slow client closed with %d, want 1013", code)
	}
}

func TestShutdownClosesClientsWith1012(t *testing.T) {
	e := newEnv(t, chat.DefaultStreamOptions())
	n := e.startPusher(defaultConfig())
	c := dial(t, n.url+"?room=r")
	c.next()
	if err := n.app.Ready(context.Background()); err != nil {
		t.Fatalf("Ready = %v, want nil", err)
	}
	n.cancel()
	if code := c.closeCode(); code != 1012 {
		t.Fatalf("close %d, want 1012", code)
	}
	if err := n.app.Ready(context.Background()); err == nil || err.Error() != "draining" {
		t.Fatalf("Ready while draining = %v, want draining", err)
	}
	select {
	case err := <-n.done:
		n.done <- err // for the cleanup
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after shutdown")
	}
}

// TestStreamRecreated: the stream is lost; the node recreates it continuing after what
// MongoDB holds, closes its clients with 1012, and a client resuming with since gets the
// new messages, the new epoch in its subscribed frame, and no old seq reused.
func TestStreamRecreated(t *testing.T) {
	e := newEnv(t, chat.DefaultStreamOptions())
	cfg := defaultConfig()
	cfg.StreamWatch = 50 * time.Millisecond
	n := e.startPusher(cfg)
	c := dial(t, n.url+"?room=r")
	sub := c.next()
	if sub.Type != "subscribed" || sub.Epoch == "" {
		t.Fatalf("subscribed frame %+v has no epoch", sub)
	}
	old := e.publish("r", 5)
	c.expect(old)
	if err := e.store.InsertMany(context.Background(), old[:3]); err != nil { // the persister stored 3 of 5
		t.Fatal(err)
	}

	if err := e.js.DeleteStream(context.Background(), chat.StreamName); err != nil {
		t.Fatal(err)
	}
	if code := c.closeCode(); code != 1012 {
		t.Fatalf("close %d, want 1012 after the stream was recreated", code)
	}
	var info *jetstream.StreamInfo
	chattest.Eventually(t, 10*time.Second, func() bool {
		s, err := e.js.Stream(context.Background(), chat.StreamName)
		if err != nil {
			return false
		}
		info = s.CachedInfo()
		return true
	}, "the stream was not recreated")
	if want := old[2].Seq + 1 + history.SeqMargin; info.Config.FirstSeq != want {
		t.Fatalf("recreated stream starts at %d, want %d (after what MongoDB holds)", info.Config.FirstSeq, want)
	}

	c = dial(t, fmt.Sprintf("%s?room=r&since=%d", n.url, old[4].Seq))
	if f := c.next(); f.Type != "subscribed" || f.Epoch == sub.Epoch || f.Epoch != chat.EpochID(info.Created) {
		t.Fatalf("subscribed after recreation %+v, old epoch %s", f, sub.Epoch)
	}
	fresh := e.publish("r", 3)
	if fresh[0].Seq <= old[4].Seq {
		t.Fatalf("new seq %d reuses the old range (last old %d)", fresh[0].Seq, old[4].Seq)
	}
	c.expect(fresh)
	// A message without an id gets one derived from the new epoch.
	ack, err := e.js.Publish(context.Background(), chat.Subject("r"), []byte(`{"name":"svc","message":"no id"}`))
	if err != nil {
		t.Fatal(err)
	}
	if f := c.next(); f.Seq != ack.Sequence || f.ID != chat.DeriveID(info.Created, ack.Sequence) {
		t.Fatalf("got %+v, want seq %d with an id of the new epoch", f, ack.Sequence)
	}
}
