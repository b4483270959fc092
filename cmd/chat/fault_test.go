package main

// Fault tests: a steady stream of idempotent posts (retried with the same
// Idempotency-Key until acknowledged, as real clients do) and several websocket
// subscribers run while a fault is injected and healed; then every acknowledged message
// must be in MongoDB exactly once and every subscriber must have seen every message of its
// room exactly once, in seq order. Counts are exact. A summary table is printed after the
// run (TestMain).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/chattest"
	"github.com/chatrt/chat/pkg/history"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ---- summary table ----

type faultRow struct {
	fault                                      string
	acked, stored, delivered, lost, duplicated int
	notes                                      string
}

var summary struct {
	sync.Mutex
	rows []faultRow
}

func TestMain(m *testing.M) {
	code := m.Run()
	summary.Lock()
	rows := summary.rows
	summary.Unlock()
	if len(rows) > 0 {
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "\nFAULT SUMMARY")
		fmt.Fprintln(tw, "fault\tacked\tstored\tdelivered\tlost\tduplicated\tnotes")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", r.fault, r.acked, r.stored, r.delivered, r.lost, r.duplicated, r.notes)
		}
		_ = tw.Flush()
	}
	os.Exit(code)
}

// ---- nodes ----

// cluster is a set of all-in-one systems ("nodes") sharing one NATS and one MongoDB.
type cluster struct {
	mu    sync.Mutex
	nodes []*system
	down  []bool
}

func (c *cluster) add(s *system) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes = append(c.nodes, s)
	c.down = append(c.down, false)
}

// pick returns node i if it is up, else the next node that is up (nil: none).
func (c *cluster) pick(i int) *system {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.nodes {
		j := (i + k) % len(c.nodes)
		if !c.down[j] {
			return c.nodes[j]
		}
	}
	return nil
}

// kill takes node i out of rotation, then stops it (context cancel: a clean shutdown).
func (c *cluster) kill(i int) {
	c.mu.Lock()
	c.down[i] = true
	s := c.nodes[i]
	c.mu.Unlock()
	s.stop()
}

// faultConfig is a node on the external servers, with fast redelivery and no rate limit.
func faultConfig(t *testing.T, n *chattest.NATS, m *chattest.Mongo) Config {
	cfg := testConfig(t)
	cfg.NATSURL = n.URL()
	cfg.MongoURI = m.URI()
	cfg.API.RateLimit = 0
	cfg.Persister.AckWait = 2 * time.Second
	cfg.Persister.RetryMin = 50 * time.Millisecond
	cfg.Persister.RetryMax = 500 * time.Millisecond
	return cfg
}

// ---- posting clients ----

type ack struct {
	id   string // "" for a direct publish without id (derived by the services)
	room string
	text string
	seq  uint64
}

// load posts to every room at a steady pace, each post retried with the same
// Idempotency-Key (503, network error) until it is acknowledged with 201.
type load struct {
	t      *testing.T
	cl     *cluster
	prefix string
	client *http.Client
	rr     atomic.Int64

	mu       sync.Mutex
	acks     []ack
	s503     int
	netErrs  int
	sentinel map[string]uint64

	stop chan struct{}
	wg   sync.WaitGroup
}

func newLoad(t *testing.T, cl *cluster, prefix string) *load {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	l := &load{t: t, cl: cl, prefix: prefix, client: &http.Client{Transport: tr, Timeout: 15 * time.Second},
		stop: make(chan struct{}), sentinel: map[string]uint64{}}
	t.Cleanup(tr.CloseIdleConnections)
	return l
}

// start runs one poster per room, each posting once per every.
func (l *load) start(rooms []string, every time.Duration) {
	for _, room := range rooms {
		l.wg.Add(1)
		go l.poster(room, every)
	}
}

func (l *load) poster(room string, every time.Duration) {
	defer l.wg.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		if _, ok := l.postUntilAcked(room, fmt.Sprintf("%s-%s-%d", l.prefix, room, i)); !ok {
			return
		}
	}
}

// halt stops the posters after their current post is acknowledged.
func (l *load) halt() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) postUntilAcked(room, key string) (ack, bool) {
	body := `{"name":"load","message":"` + key + `"}` // keys are [A-Za-z0-9-]
	deadline := time.Now().Add(45 * time.Second)
	for attempt := 0; ; attempt++ {
		if time.Now().After(deadline) {
			l.t.Errorf("%s: not acknowledged within 45s", key)
			return ack{}, false
		}
		if attempt > 0 {
			time.Sleep(25 * time.Millisecond) // client retry back-off
		}
		node := l.cl.pick(int(l.rr.Add(1)))
		if node == nil {
			l.t.Errorf("%s: no node up", key)
			return ack{}, false
		}
		req, _ := http.NewRequest(http.MethodPost, node.url+"/rooms/"+room+"/messages", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := l.client.Do(req)
		if err != nil {
			l.mu.Lock()
			l.netErrs++
			l.mu.Unlock()
			continue
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			l.mu.Lock()
			l.netErrs++
			l.mu.Unlock()
			continue
		case resp.StatusCode == http.StatusServiceUnavailable:
			l.mu.Lock()
			l.s503++
			l.mu.Unlock()
			continue
		case resp.StatusCode != http.StatusCreated:
			l.t.Errorf("%s: POST answered %d %s", key, resp.StatusCode, data)
			return ack{}, false
		}
		var m struct {
			ID, Room, Message string
			Seq               uint64
		}
		if err := json.Unmarshal(data, &m); err != nil || m.ID != key || m.Room != room || m.Message != key || m.Seq == 0 {
			l.t.Errorf("%s: 201 with body %s (%v)", key, data, err)
			return ack{}, false
		}
		a := ack{id: key, room: room, text: key, seq: m.Seq}
		l.record(a)
		return a, true
	}
}

func (l *load) record(a ack) {
	l.mu.Lock()
	l.acks = append(l.acks, a)
	l.mu.Unlock()
}

func (l *load) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

func (l *load) count503() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s503
}

func (l *load) snapshot() []ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ack(nil), l.acks...)
}

// waitMore waits until n more posts than now are acknowledged.
func (l *load) waitMore(n int, timeout time.Duration) {
	l.t.Helper()
	want := l.acked() + n
	chattest.Eventually(l.t, timeout, func() bool { return l.acked() >= want }, "acknowledged %d posts, want %d", l.acked(), want)
}

// ---- websocket subscribers ----

// subscriber follows one room from seq 0 (since=0), reconnecting with since=<last seq
// seen> to a node that is up whenever its socket ends.
type subscriber struct {
	t    *testing.T
	name string
	room string
	cl   *cluster
	pref int // preferred node

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	conn       *websocket.Conn
	seqs       []uint64
	ids        map[uint64]string
	last       uint64
	dups       int
	disorder   int
	wrongRoom  int
	connects   int
	closeCodes []int
	offline    bool
	parked     chan struct{}
	resume     chan struct{}
}

func startSubscriber(t *testing.T, cl *cluster, name, room string, pref int) *subscriber {
	ctx, cancel := context.WithCancel(context.Background())
	s := &subscriber{t: t, name: name, room: room, cl: cl, pref: pref, ctx: ctx, cancel: cancel,
		done: make(chan struct{}), ids: map[uint64]string{}, parked: make(chan struct{}, 1), resume: make(chan struct{}, 1)}
	ready := make(chan struct{})
	go s.run(ready)
	t.Cleanup(func() { s.cancel(); <-s.done })
	select {
	case <-ready:
	case <-s.done:
		t.Fatalf("%s: did not subscribe", name)
	}
	return s
}

func (s *subscriber) run(ready chan struct{}) {
	defer close(s.done)
	for s.ctx.Err() == nil {
		conn, err := s.dial()
		if err != nil {
			if s.ctx.Err() == nil {
				s.t.Errorf("%s: %v", s.name, err)
			}
			return
		}
		if ready != nil {
			close(ready)
			ready = nil
		}
		stop := context.AfterFunc(s.ctx, func() { conn.Close() })
		s.read(conn)
		stop()
		conn.Close()
		s.mu.Lock()
		off := s.offline
		s.mu.Unlock()
		if off {
			s.parked <- struct{}{}
			select {
			case <-s.resume:
			case <-s.ctx.Done():
				return
			}
		}
	}
}

// dial connects to a node that is up with since=<last seq seen> and reads the subscribed
// frame.
func (s *subscriber) dial() (*websocket.Conn, error) {
	deadline := time.Now().Add(30 * time.Second)
	var lastErr error
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		if s.ctx.Err() != nil {
			return nil, s.ctx.Err()
		}
		if attempt > 0 {
			time.Sleep(50 * time.Millisecond) // reconnect back-off
		}
		node := s.cl.pick(s.pref)
		if node == nil {
			return nil, errors.New("no node up")
		}
		s.mu.Lock()
		since := s.last
		s.mu.Unlock()
		url := "ws" + strings.TrimPrefix(node.url, "http") + "/ws?room=" + s.room + "&since=" + strconv.FormatUint(since, 10)
		d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
		conn, resp, err := d.DialContext(s.ctx, url, nil)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			lastErr = err
			continue
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, data, err := conn.ReadMessage()
		var f struct{ Type, Room string }
		if err != nil || json.Unmarshal(data, &f) != nil || f.Type != "subscribed" || f.Room != s.room {
			conn.Close()
			lastErr = fmt.Errorf("first frame %q: %v", data, err)
			continue
		}
		s.mu.Lock()
		s.conn = conn
		s.connects++
		s.mu.Unlock()
		return conn, nil
	}
	return nil, fmt.Errorf("could not (re)connect within 30s: %v", lastErr)
}

func (s *subscriber) read(conn *websocket.Conn) {
	for {
		_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		_, data, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				s.mu.Lock()
				s.closeCodes = append(s.closeCodes, ce.Code)
				s.mu.Unlock()
			}
			return
		}
		var f struct {
			Type, Room, ID, Error string
			Seq                   uint64
		}
		if err := json.Unmarshal(data, &f); err != nil {
			s.t.Errorf("%s: frame %q: %v", s.name, data, err)
			return
		}
		if f.Type != "message" {
			s.t.Errorf("%s: unexpected frame %s", s.name, data)
			continue
		}
		s.mu.Lock()
		switch {
		case f.Room != s.room:
			s.wrongRoom++
		case f.Seq <= s.last:
			if _, seen := s.ids[f.Seq]; seen {
				s.dups++
			} else {
				s.disorder++
			}
		default:
			s.last = f.Seq
			s.seqs = append(s.seqs, f.Seq)
			s.ids[f.Seq] = f.ID
		}
		s.mu.Unlock()
	}
}

// goOffline closes the socket from the client side and keeps the client away until
// comeBack. It returns the last seq the client saw.
func (s *subscriber) goOffline() uint64 {
	s.t.Helper()
	s.mu.Lock()
	s.offline = true
	conn := s.conn
	s.mu.Unlock()
	conn.Close()
	select {
	case <-s.parked:
	case <-time.After(10 * time.Second):
		s.t.Fatalf("%s: reader did not stop", s.name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *subscriber) comeBack() {
	s.mu.Lock()
	s.offline = false
	s.mu.Unlock()
	s.resume <- struct{}{}
}

func (s *subscriber) lastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// ---- the harness ----

type harness struct {
	t      *testing.T
	fault  string
	nats   *chattest.NATS
	mongo  *chattest.Mongo
	cl     *cluster
	load   *load
	subs   []*subscriber
	rooms  []string
	store  *history.Store
	js     jetstream.JetStream
	poison int // invalid payloads published directly (expected in DEADLETTER)
	// checkStream: the CHAT stream must hold exactly the acknowledged messages plus the
	// poison ones (off when the stream is bounded below the test's volume).
	checkStream bool
	notes       []string
	// report, if set, adds a note once everything is stored and delivered.
	report func() string
}

func newHarness(t *testing.T, fault string) *harness {
	n := chattest.StartNATS(t)
	m := chattest.StartMongo(t)
	_, js := n.Connect(t)
	h := &harness{t: t, fault: fault, nats: n, mongo: m, cl: &cluster{}, rooms: []string{"ra", "rb"},
		store: history.New(m.Connect(t)), js: js, checkStream: true}
	h.load = newLoad(t, h.cl, strings.ToLower(strings.ReplaceAll(fault, " ", "")))
	return h
}

func (h *harness) config() Config { return faultConfig(h.t, h.nats, h.mongo) }

func (h *harness) startNode(cfg Config) *system {
	s := startSystemWith(h.t, cfg)
	h.cl.add(s)
	return s
}

func (h *harness) subscribe(name, room string, node int) *subscriber {
	s := startSubscriber(h.t, h.cl, name, room, node)
	h.subs = append(h.subs, s)
	return s
}

func (h *harness) note(format string, args ...any) {
	h.notes = append(h.notes, fmt.Sprintf(format, args...))
}

// readRoom pages through a room's history in MongoDB with Store.After.
func (h *harness) readRoom(ctx context.Context, room string) ([]chat.Message, error) {
	var out []chat.Message
	var after uint64
	for range 10000 {
		page, err := h.store.After(ctx, room, after, 200)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < 200 {
			return out, nil
		}
		after = page[len(page)-1].Seq
	}
	return nil, errors.New("too many pages")
}

// finish stops the posters, posts a sentinel per room (anything duplicated to a
// subscriber would arrive before it), waits for MongoDB and the subscribers to have
// everything, and checks the exact counts.
func (h *harness) finish() {
	t := h.t
	t.Helper()
	h.load.halt()
	sentinel := map[string]uint64{}
	for _, room := range h.rooms {
		a, ok := h.load.postUntilAcked(room, h.load.prefix+"-"+room+"-end")
		if !ok {
			t.FailNow()
		}
		sentinel[room] = a.seq
	}
	acks := h.load.snapshot()
	perRoom := map[string]int{}
	for _, a := range acks {
		perRoom[a.room]++
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// MongoDB: wait until each room holds at least its acknowledged messages.
	stored := map[string][]chat.Message{}
	chattest.Eventually(t, 20*time.Second, func() bool {
		for _, room := range h.rooms {
			n, err := h.store.Count(ctx, room)
			if err != nil || int(n) < perRoom[room] {
				return false
			}
		}
		return true
	}, "MongoDB does not hold every acknowledged message")
	for _, room := range h.rooms {
		msgs, err := h.readRoom(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := h.store.Count(ctx, room); err != nil || int(n) != len(msgs) {
			t.Errorf("room %s: Count %d (%v) but paging read %d", room, n, err, len(msgs))
		}
		stored[room] = msgs
	}
	// Subscribers: wait until each saw its room's sentinel.
	for _, s := range h.subs {
		want := sentinel[s.room]
		chattest.Eventually(t, 20*time.Second, func() bool { return s.lastSeq() >= want },
			"%s saw up to seq %d, want %d", s.name, s.lastSeq(), want)
	}
	for _, s := range h.subs {
		s.cancel()
		<-s.done
	}

	row := faultRow{fault: h.fault, acked: len(acks)}
	// Every acknowledged message stored once, with its id, room and text; nothing else.
	bySeq := map[uint64]chat.Message{}
	texts := map[string]int{}
	for _, room := range h.rooms {
		for _, m := range stored[room] {
			row.stored++
			if _, dup := bySeq[m.Seq]; dup {
				row.duplicated++
				t.Errorf("seq %d stored twice", m.Seq)
			}
			bySeq[m.Seq] = m
			texts[m.Message]++
		}
	}
	for text, n := range texts {
		if n > 1 {
			row.duplicated += n - 1
			t.Errorf("message %q stored %d times", text, n)
		}
	}
	ackedSeq := map[uint64]bool{}
	for _, a := range acks {
		ackedSeq[a.seq] = true
		m, ok := bySeq[a.seq]
		switch {
		case !ok:
			row.lost++
			t.Errorf("acknowledged %s (seq %d, room %s) is not in MongoDB", a.text, a.seq, a.room)
		case (a.id != "" && m.ID != a.id) || m.Room != a.room || m.Message != a.text:
			t.Errorf("seq %d: stored %+v, acknowledged %+v", a.seq, m, a)
		}
	}
	for seq, m := range bySeq {
		if !ackedSeq[seq] {
			row.duplicated++
			t.Errorf("stored but never acknowledged: seq %d %q", seq, m.Message)
		}
	}
	// Every subscriber saw exactly its room's stored messages, in seq order, once.
	var reconnects, closes []string
	for _, s := range h.subs {
		s.mu.Lock()
		row.delivered += len(s.seqs) + s.dups
		row.duplicated += s.dups
		if s.dups > 0 || s.disorder > 0 || s.wrongRoom > 0 {
			t.Errorf("%s: %d duplicates, %d out of order, %d of another room", s.name, s.dups, s.disorder, s.wrongRoom)
		}
		want := stored[s.room]
		for _, m := range want {
			id, ok := s.ids[m.Seq]
			if !ok {
				row.lost++
				t.Errorf("%s: never received seq %d (%s)", s.name, m.Seq, m.Message)
			} else if id != m.ID {
				t.Errorf("%s: seq %d pushed with id %q, stored with %q", s.name, m.Seq, id, m.ID)
			}
		}
		if len(s.seqs) != len(want) {
			t.Errorf("%s: received %d messages, room %s has %d", s.name, len(s.seqs), s.room, len(want))
		}
		if s.connects > 1 {
			reconnects = append(reconnects, fmt.Sprintf("%s:%d", s.name, s.connects-1))
		}
		if len(s.closeCodes) > 0 {
			closes = append(closes, fmt.Sprintf("%s:%v", s.name, s.closeCodes))
		}
		s.mu.Unlock()
	}
	// JetStream: nothing published twice (a retry after a 503 that had been stored).
	if h.checkStream {
		st, err := h.js.Stream(ctx, chat.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := uint64(len(acks) + h.poison); info.State.Msgs != want {
			t.Errorf("CHAT stream holds %d messages, want %d (acknowledged %d + poison %d)", info.State.Msgs, want, len(acks), h.poison)
		}
	}
	if h.report != nil {
		h.note("%s", h.report())
	}
	h.load.mu.Lock()
	h.note("503s=%d neterrs=%d", h.load.s503, h.load.netErrs)
	h.load.mu.Unlock()
	if len(reconnects) > 0 {
		h.note("reconnects=%s", strings.Join(reconnects, ","))
	}
	if len(closes) > 0 {
		h.note("closes=%s", strings.Join(closes, ","))
	}
	row.notes = strings.Join(h.notes, " ")
	t.Logf("%s: acked=%d stored=%d delivered=%d lost=%d duplicated=%d %s",
		row.fault, row.acked, row.stored, row.delivered, row.lost, row.duplicated, row.notes)
	summary.Lock()
	summary.rows = append(summary.rows, row)
	summary.Unlock()
}

// ---- the faults ----

// TestFaultPersisterStopped: two nodes share the durable persister consumer; node A is
// stopped while posts flow, with a drain timeout so short that its in-flight batch and
// buffered messages are abandoned (as in a crash mid-batch). Node B's persister gets them
// redelivered after AckWait and stores them; duplicates of a batch A did write are
// ignored.
func TestFaultPersisterStopped(t *testing.T) {
	h := newHarness(t, "persister stopped")
	cfgA := h.config()
	cfgA.Persister.ShutdownTimeout = time.Millisecond
	h.startNode(cfgA)
	h.startNode(h.config())
	h.subscribe("b0", "ra", 1)
	h.subscribe("b1", "ra", 1)
	h.subscribe("b2", "rb", 1)
	h.load.start(h.rooms, 12*time.Millisecond)
	h.load.waitMore(200, 20*time.Second)
	h.cl.kill(0)
	h.load.waitMore(200, 20*time.Second)
	// Messages A had received but not acked come back to B after AckWait.
	h.report = func() string {
		return "b_redeliveries=" + metricValue(t, h.cl.pick(1).url, "chat_persister_redeliveries_total")
	}
	h.finish()
	st, err := h.js.Stream(context.Background(), chat.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.Consumer(context.Background(), "persister")
	if err != nil {
		t.Fatal(err)
	}
	chattest.Eventually(t, 10*time.Second, func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, "persister consumer still has pending messages")
}

// TestFaultMongoOutage: MongoDB stops for a few seconds while posts flow. Posts keep
// being acknowledged (the api does not need MongoDB to publish), subscribers keep
// receiving on the same socket, and the persister stores the backlog once MongoDB is back.
func TestFaultMongoOutage(t *testing.T) {
	h := newHarness(t, "mongodb outage")
	h.startNode(h.config())
	h.subscribe("s0", "ra", 0)
	h.subscribe("s1", "ra", 0)
	h.subscribe("s2", "rb", 0)
	h.load.start(h.rooms, 12*time.Millisecond)
	h.load.waitMore(150, 20*time.Second)
	h.mongo.Stop()
	h.load.waitMore(400, 20*time.Second) // a few seconds of traffic with MongoDB down
	h.mongo.Start()
	h.load.waitMore(150, 20*time.Second)
	errs := metricValue(t, h.cl.pick(0).url, "chat_persister_errors_total")
	h.note("persister_errors=%s", errs)
	h.finish()
	if errs == "0" || errs == "?" {
		t.Errorf("the persister saw no write error: MongoDB was not down while messages flowed")
	}
	if n := h.load.count503(); n != 0 {
		t.Errorf("%d posts answered 503 during a MongoDB outage", n)
	}
	for _, s := range h.subs {
		if s.connects != 1 {
			t.Errorf("%s: connected %d times; the MongoDB outage must not affect subscribers", s.name, s.connects)
		}
	}
}

// TestFaultNATSRestart: the NATS server stops and restarts with the same store. The api
// answers 503 meanwhile and clients retry with the same key; no 201 is ever given for a
// message that is not stored; the pushers' ordered consumers heal and subscribers get
// everything once (resuming with since if their socket ended).
func TestFaultNATSRestart(t *testing.T) {
	h := newHarness(t, "nats restart")
	h.startNode(h.config())
	h.subscribe("s0", "ra", 0)
	h.subscribe("s1", "ra", 0)
	h.subscribe("s2", "rb", 0)
	h.load.start(h.rooms, 12*time.Millisecond)
	h.load.waitMore(150, 20*time.Second)
	before := h.load.count503()
	h.nats.Stop()
	// About two seconds of clients retrying against a node without NATS.
	chattest.Eventually(t, 15*time.Second, func() bool { return h.load.count503() >= before+150 },
		"the api did not answer 503 while NATS was down")
	h.nats.Start()
	h.load.waitMore(300, 25*time.Second)
	h.finish()
	if h.load.count503() == 0 {
		t.Error("no 503 during the NATS outage")
	}
}

// TestFaultPusherStopped: node A (with two subscribers) stops; its clients get close 1012,
// reconnect to node B with since=<last seq> and get everything exactly once.
func TestFaultPusherStopped(t *testing.T) {
	h := newHarness(t, "pusher stopped")
	h.startNode(h.config())
	h.startNode(h.config())
	a0 := h.subscribe("a0", "ra", 0)
	a1 := h.subscribe("a1", "rb", 0)
	h.subscribe("b0", "ra", 1)
	h.load.start(h.rooms, 12*time.Millisecond)
	h.load.waitMore(150, 20*time.Second)
	h.cl.kill(0)
	h.load.waitMore(200, 20*time.Second)
	h.finish()
	for _, s := range []*subscriber{a0, a1} {
		if s.connects != 2 || len(s.closeCodes) != 1 || s.closeCodes[0] != 1012 {
			t.Errorf("%s: connects %d, close codes %v; want one 1012 and one reconnect", s.name, s.connects, s.closeCodes)
		}
	}
	if b0 := h.subs[2]; b0.connects != 1 {
		t.Errorf("b0 reconnected %d times", b0.connects-1)
	}
}

// TestFaultResumeOlderThanStream: the stream keeps only 50 messages and the pusher's
// window 5 per room. A client goes offline while far more than 50 messages arrive, then
// resumes with since=<old seq>: it gets MongoDB's part, then the stream's, then the
// window and live messages, exactly once. Such a resume relies on the persister having
// stored the range that left the stream (the test waits for MongoDB first; a persister
// lagging more than the stream's window behind would lose messages, by design of a
// bounded stream).
func TestFaultResumeOlderThanStream(t *testing.T) {
	h := newHarness(t, "resume older than stream")
	h.checkStream = false
	cfg := h.config()
	cfg.API.Stream.MaxMsgs = 50
	cfg.Persister.Stream.MaxMsgs = 50
	cfg.Pusher.Stream.MaxMsgs = 50
	cfg.Pusher.Window = 5
	node := h.startNode(cfg)
	s0 := h.subscribe("s0", "ra", 0)
	h.subscribe("s1", "ra", 0)
	h.subscribe("s2", "rb", 0)
	h.load.start(h.rooms, 20*time.Millisecond)
	h.load.waitMore(60, 20*time.Second)
	since := s0.goOffline()
	if since == 0 {
		t.Fatal("s0 saw nothing before going offline")
	}
	h.load.waitMore(200, 20*time.Second)

	// What s0 missed so far must be in MongoDB, and its beginning gone from the stream.
	var missed []ack
	for _, a := range h.load.snapshot() {
		if a.room == "ra" && a.seq > since {
			missed = append(missed, a)
		}
	}
	ctx := context.Background()
	chattest.Eventually(t, 20*time.Second, func() bool {
		msgs, err := h.store.Range(ctx, "ra", since, missed[len(missed)-1].seq+1, 100000)
		if err != nil {
			return false
		}
		have := map[uint64]bool{}
		for _, m := range msgs {
			have[m.Seq] = true
		}
		for _, a := range missed {
			if !have[a.seq] {
				return false
			}
		}
		return true
	}, "MongoDB does not hold the %d messages s0 missed", len(missed))
	st, err := h.js.Stream(ctx, chat.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.FirstSeq <= missed[0].seq {
		t.Fatalf("stream still holds seq %d (first %d): the resume would not reach MongoDB", missed[0].seq, info.State.FirstSeq)
	}
	h.note("since=%d missed=%d stream_first=%d", since, len(missed), info.State.FirstSeq)
	s0.comeBack()
	h.load.waitMore(100, 20*time.Second)
	h.finish()
	if !strings.Contains(metricsText(t, node.url), `chat_pusher_replays_total{source="backlog"}`) {
		t.Error("the resume was not served from the backlog")
	}
}

// metricValue is the value of an unlabelled metric ("?" if absent).
func metricValue(t *testing.T, base, name string) string {
	t.Helper()
	for _, line := range strings.Split(metricsText(t, base), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return "?"
}

func metricsText(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestFaultPoisonMessages: another service publishes straight to the stream, valid
// messages (with and without Nats-Msg-Id) interleaved with invalid ones (bad JSON, room
// mismatch, missing field, id mismatch). The invalid ones are dead-lettered exactly once
// each and never pushed; everything valid flows.
func TestFaultPoisonMessages(t *testing.T) {
	h := newHarness(t, "poison messages")
	h.startNode(h.config())
	h.subscribe("s0", "ra", 0)
	h.subscribe("s1", "ra", 0)
	h.subscribe("s2", "rb", 0)
	h.load.start(h.rooms, 12*time.Millisecond)
	h.load.waitMore(50, 20*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	poison := map[string]int{} // payload -> times published
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := range 40 {
		<-tick.C
		room := h.rooms[i%2]
		msg := nats.NewMsg(chat.Subject(room))
		valid := true
		switch i % 8 {
		case 0, 2: // valid with an id
			msg.Header.Set(chat.HeaderMsgID, fmt.Sprintf("direct-%d", i))
			msg.Data = fmt.Appendf(nil, `{"name":"svc","message":"direct-%d"}`, i)
		case 4, 6: // valid without id (derived)
			msg.Data = fmt.Appendf(nil, `{"name":"svc","message":"noid-%d"}`, i)
		case 1:
			msg.Data = fmt.Appendf(nil, `{"name":"svc","message":"broken-%d"`, i)
			valid = false
		case 3:
			msg.Data = fmt.Appendf(nil, `{"name":"svc","message":"mismatch-%d","room":"elsewhere"}`, i)
			valid = false
		case 5:
			msg.Data = fmt.Appendf(nil, `{"name":"svc","text":"nomessage-%d"}`, i)
			valid = false
		case 7:
			msg.Header.Set(chat.HeaderMsgID, fmt.Sprintf("hdr-%d", i))
			msg.Data = fmt.Appendf(nil, `{"id":"body-%d","name":"svc","message":"idmismatch-%d"}`, i, i)
			valid = false
		}
		pa, err := h.js.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		if valid {
			var p struct{ Message string }
			_ = json.Unmarshal(msg.Data, &p)
			h.load.record(ack{id: msg.Header.Get(chat.HeaderMsgID), room: room, text: p.Message, seq: pa.Sequence})
		} else {
			h.poison++
			poison[string(msg.Data)+"|"+msg.Subject]++
		}
	}
	h.load.waitMore(50, 20*time.Second)
	h.finish()

	dl, err := h.js.Stream(ctx, chat.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	var info *jetstream.StreamInfo
	chattest.Eventually(t, 10*time.Second, func() bool {
		info, err = dl.Info(ctx)
		return err == nil && info.State.Msgs >= uint64(h.poison)
	}, "dead-letter stream holds fewer than %d messages", h.poison)
	if info.State.Msgs != uint64(h.poison) {
		t.Errorf("dead-letter stream holds %d messages, want %d", info.State.Msgs, h.poison)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		raw, err := dl.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		key := string(raw.Data) + "|" + raw.Header.Get(chat.HeaderOriginalSubject)
		if poison[key] == 0 || raw.Header.Get(chat.HeaderDeadLetterReason) == "" {
			t.Errorf("unexpected dead letter %q %v", raw.Data, raw.Header)
			continue
		}
		poison[key]--
	}
	summary.Lock()
	r := &summary.rows[len(summary.rows)-1]
	r.notes += fmt.Sprintf(" deadletters=%d/%d", info.State.Msgs, h.poison)
	summary.Unlock()
}
