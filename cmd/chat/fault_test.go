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
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/harness/chattest/faultload"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ---- summary table ----

type faultRow struct {
	fault                                      string
	acked, stored, delivered, lost, duplicated int
	// the change traffic (issue 11): changes acknowledged, change frames delivered,
	// (subscriber, message) states that differ from history
	changes, changeFrames, stateDiffers int
	notes                               string
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
		fmt.Fprintln(tw, "fault\tacked\tstored\tdelivered\tlost\tduplicated\tchanges\tchange frames\tstate differs\tnotes")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", r.fault, r.acked, r.stored, r.delivered, r.lost,
				r.duplicated, r.changes, r.changeFrames, r.stateDiffers, r.notes)
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

// url is the base URL of node i if it is up, else of the next node that is up ("": none).
func (c *cluster) url(i int) string {
	if s := c.pick(i); s != nil {
		return s.url
	}
	return ""
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
	// Writes get AckWait/2: on a loaded machine under -race FerretDB needs more than a
	// second for a batch now and then, most of all right after a restart.
	cfg.Persister.AckWait = 4 * time.Second
	cfg.Persister.RetryMin = 50 * time.Millisecond
	cfg.Persister.RetryMax = 500 * time.Millisecond
	return cfg
}

// ---- the harness ----

type harness struct {
	t      *testing.T
	fault  string
	nats   *chattest.NATS
	mongo  *chattest.Mongo
	cl     *cluster
	load   *faultload.Load
	subs   []*faultload.Subscriber
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
	var rr atomic.Int64 // posts go round-robin over the nodes that are up
	h.load = faultload.NewLoad(t, faultload.LoadOptions{
		URL:       func() string { return h.cl.url(int(rr.Add(1))) },
		KeyPrefix: strings.ToLower(strings.ReplaceAll(fault, " ", "")) + "-",
		Retry:     []int{http.StatusServiceUnavailable},
	})
	return h
}

func (h *harness) config() Config { return faultConfig(h.t, h.nats, h.mongo) }

func (h *harness) startNode(cfg Config) *system {
	s := startSystemWith(h.t, cfg)
	h.cl.add(s)
	return s
}

// standardTraffic subscribes s0 and s1 to room ra and s2 to rb on node, and starts the
// posters: the load most fault tests run under; with changes, also the change load
// (edits, deletes, reactions: issue 11).
func (h *harness) standardTraffic(node int, changes bool) {
	h.subscribe("s0", "ra", node)
	h.subscribe("s1", "ra", node)
	h.subscribe("s2", "rb", node)
	h.load.Start(h.rooms, 12*time.Millisecond)
	if changes {
		h.load.StartChanges(h.rooms, 40*time.Millisecond)
	}
}

func (h *harness) subscribe(name, room string, node int) *faultload.Subscriber {
	s := faultload.StartSubscriber(h.t, name, room, func() string { return h.cl.url(node) })
	h.subs = append(h.subs, s)
	return s
}

func (h *harness) note(format string, args ...any) {
	h.notes = append(h.notes, fmt.Sprintf(format, args...))
}

// finish stops the posters, posts a sentinel per room, waits for MongoDB and the
// subscribers to have everything and checks the exact counts (faultload.Finish), then
// that the CHAT stream holds nothing twice.
func (h *harness) finish() {
	t := h.t
	t.Helper()
	res := faultload.Finish(t, h.store, h.load, h.rooms, h.subs)
	row := faultRow{fault: h.fault, acked: res.Acked, stored: res.Stored, delivered: res.Delivered,
		lost: res.Lost, duplicated: res.Duplicated}
	if c := res.Changes; c != nil {
		row.changes, row.changeFrames, row.stateDiffers = c.Acked, c.Frames, c.StateDiffers
		row.lost += c.StateDiffers
		h.note("changes: %s undelivered=%d", c.Outcomes, c.Undelivered)
	}
	var reconnects, closes []string
	for _, s := range h.subs {
		if n := s.Connects(); n > 1 {
			reconnects = append(reconnects, fmt.Sprintf("%s:%d", s.Name, n-1))
		}
		if codes := s.CloseCodes(); len(codes) > 0 {
			closes = append(closes, fmt.Sprintf("%s:%v", s.Name, codes))
		}
	}
	// JetStream: nothing published twice (a retry after a 503 that had been stored).
	if h.checkStream {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := h.js.Stream(ctx, chat.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		// Messages only: changes (chat.messages.<room>.<id>) may be published again by a
		// retried request, which is a new change, not a duplicate.
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(chat.SubjectPrefix+"*"))
		if err != nil {
			t.Fatal(err)
		}
		var msgs uint64
		for _, n := range info.State.Subjects {
			msgs += n
		}
		if want := uint64(res.Acked + h.poison); msgs != want {
			t.Errorf("CHAT stream holds %d messages, want %d (acknowledged %d + poison %d)", msgs, want, res.Acked, h.poison)
		}
	}
	if h.report != nil {
		h.note("%s", h.report())
	}
	h.note("503s=%d neterrs=%d", h.load.Failed(http.StatusServiceUnavailable), h.load.Failed(0))
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
	h.load.Start(h.rooms, 12*time.Millisecond)
	h.load.StartChanges(h.rooms, 40*time.Millisecond)
	h.load.WaitMore(200, 20*time.Second)
	h.cl.kill(0)
	h.load.WaitMore(200, 20*time.Second)
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
	h.standardTraffic(0, true)
	h.load.WaitMore(150, 20*time.Second)
	h.mongo.Stop()
	h.load.WaitMore(400, 20*time.Second) // a few seconds of traffic with MongoDB down
	// ...at least until the persister noticed (a write waits up to the driver's server
	// selection timeout for MongoDB to come back before it fails).
	chattest.Eventually(t, 30*time.Second, func() bool {
		v := metricValue(t, h.cl.pick(0).url, "chat_persister_errors_total")
		return v != "0" && v != "?"
	}, "the persister saw no write error while MongoDB was down")
	h.mongo.Start()
	h.load.WaitMore(150, 20*time.Second)
	errs := metricValue(t, h.cl.pick(0).url, "chat_persister_errors_total")
	h.note("persister_errors=%s", errs)
	h.finish()
	if errs == "0" || errs == "?" {
		t.Errorf("the persister saw no write error: MongoDB was not down while messages flowed")
	}
	if n := h.load.Failed(http.StatusServiceUnavailable); n != 0 {
		t.Errorf("%d posts answered 503 during a MongoDB outage", n)
	}
	for _, s := range h.subs {
		if s.Connects() != 1 {
			t.Errorf("%s: connected %d times; the MongoDB outage must not affect subscribers", s.Name, s.Connects())
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
	h.standardTraffic(0, true)
	h.load.WaitMore(150, 20*time.Second)
	before := h.load.Failed(http.StatusServiceUnavailable)
	h.nats.Stop()
	// About two seconds of clients retrying against a node without NATS.
	chattest.Eventually(t, 15*time.Second, func() bool { return h.load.Failed(http.StatusServiceUnavailable) >= before+150 },
		"the api did not answer 503 while NATS was down")
	h.nats.Start()
	h.load.WaitMore(300, 25*time.Second)
	h.finish()
	if h.load.Failed(http.StatusServiceUnavailable) == 0 {
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
	h.load.Start(h.rooms, 12*time.Millisecond)
	h.load.StartChanges(h.rooms, 40*time.Millisecond)
	h.load.WaitMore(150, 20*time.Second)
	h.cl.kill(0)
	h.load.WaitMore(200, 20*time.Second)
	h.finish()
	for _, s := range []*faultload.Subscriber{a0, a1} {
		if codes := s.CloseCodes(); s.Connects() != 2 || len(codes) != 1 || codes[0] != 1012 {
			t.Errorf("%s: connects %d, close codes %v; want one 1012 and one reconnect", s.Name, s.Connects(), codes)
		}
	}
	if b0 := h.subs[2]; b0.Connects() != 1 {
		t.Errorf("b0 reconnected %d times", b0.Connects()-1)
	}
}

// TestFaultResumeOlderThanStream: the stream keeps only 100 messages and changes and the pusher's
// window 5 per room. A client goes offline while far more than 100 events arrive, then
// resumes with since=<old seq>: it gets MongoDB's part, then the stream's, then the
// window and live messages, exactly once. Such a resume relies on the persister having
// stored the range that left the stream (the test waits for MongoDB first; a persister
// lagging more than the stream's window behind would lose messages, by design of a
// bounded stream).
func TestFaultResumeOlderThanStream(t *testing.T) {
	h := newHarness(t, "resume older than stream")
	h.checkStream = false
	cfg := h.config()
	cfg.API.Stream.MaxMsgs = 100
	cfg.Persister.Stream.MaxMsgs = 100
	cfg.Pusher.Stream.MaxMsgs = 100
	cfg.Pusher.Window = 5
	node := h.startNode(cfg)
	s0 := h.subscribe("s0", "ra", 0)
	h.subscribe("s1", "ra", 0)
	h.subscribe("s2", "rb", 0)
	h.load.Start(h.rooms, 20*time.Millisecond)
	// Changes too: s0 resumes to messages and changes older than the stream (MongoDB's
	// current state), then the stream's changes. Like the messages, they must be stored
	// before the stream drops them (a persister more than the stream's 100 events behind
	// loses them: a bounded stream's limit, see README).
	h.load.StartChanges(h.rooms, 80*time.Millisecond)
	h.load.WaitMore(60, 20*time.Second)
	since := s0.GoOffline()
	if since == 0 {
		t.Fatal("s0 saw nothing before going offline")
	}
	h.load.WaitMore(300, 30*time.Second)

	// What s0 missed so far must be in MongoDB, and its beginning gone from the stream.
	var missed []faultload.Ack
	for _, a := range h.load.Snapshot() {
		if a.Room == "ra" && a.Seq > since {
			missed = append(missed, a)
		}
	}
	ctx := context.Background()
	chattest.Eventually(t, 20*time.Second, func() bool {
		msgs, err := h.store.Range(ctx, "ra", since, missed[len(missed)-1].Seq+1, 100000)
		if err != nil {
			return false
		}
		have := map[uint64]bool{}
		for _, m := range msgs {
			have[m.Seq] = true
		}
		for _, a := range missed {
			if !have[a.Seq] {
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
	if info.State.FirstSeq <= missed[0].Seq {
		t.Fatalf("stream still holds seq %d (first %d): the resume would not reach MongoDB", missed[0].Seq, info.State.FirstSeq)
	}
	h.note("since=%d missed=%d stream_first=%d", since, len(missed), info.State.FirstSeq)
	s0.ComeBack()
	h.load.WaitMore(100, 20*time.Second)
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
	h.standardTraffic(0, true)
	h.load.WaitMore(50, 20*time.Second)

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
			h.load.Record(faultload.Ack{ID: msg.Header.Get(chat.HeaderMsgID), Room: room, Text: p.Message, Seq: pa.Sequence})
		} else {
			h.poison++
			poison[string(msg.Data)+"|"+msg.Subject]++
		}
	}
	h.load.WaitMore(50, 20*time.Second)
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
