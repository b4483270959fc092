package persist

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// env is one test's servers and client connections.
type env struct {
	nats  *chattest.NATS
	mongo *chattest.Mongo
	nc    *nats.Conn
	js    jetstream.JetStream
	mc    *mongo.Client
	store *history.Store
	// seqReuse allows two documents with the same seq (a recreated stream).
	seqReuse bool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{nats: chattest.StartNATS(t), mongo: chattest.StartMongo(t)}
	e.nc, e.js = e.nats.Connect(t)
	e.mc = e.mongo.Connect(t)
	e.store = history.New(e.mc)
	e.nats.EnsureStreams(t, e.js)
	return e
}

// testConfig is tuned for fast redeliveries.
func testConfig() Config {
	return Config{
		Stream:          chat.DefaultStreamOptions(),
		BatchSize:       100,
		AckWait:         2 * time.Second,
		RetryMin:        20 * time.Millisecond,
		RetryMax:        400 * time.Millisecond,
		PendingInterval: 100 * time.Millisecond,
		ShutdownTimeout: 10 * time.Second,
	}
}

// instance is one running persister replica with its own NATS connection.
type instance struct {
	p      *Persister
	nc     *nats.Conn
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func (e *env) start(t *testing.T, cfg Config, w Writer) *instance {
	t.Helper()
	if w == nil {
		w = e.store
	}
	nc, _ := e.nats.Connect(t)
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := New(ctx, cfg, nc, w, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	in := &instance{p: p, nc: nc, reg: reg, cancel: rcancel, done: make(chan error, 1)}
	go func() { in.done <- p.Run(rctx) }()
	t.Cleanup(func() { in.stop(t) })
	return in
}

// stop cancels Run and waits for it to return (nil expected).
func (in *instance) stop(t *testing.T) {
	t.Helper()
	in.cancel()
	select {
	case err, ok := <-in.done:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(in.done)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return 20s after cancel")
	}
}

func counter(c prometheus.Collector) int { return int(testutil.ToFloat64(c)) }

// publish publishes msg and returns its stream sequence.
func (e *env) publish(t *testing.T, msg *nats.Msg) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := e.js.PublishMsg(ctx, msg)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if ack.Duplicate {
		t.Fatalf("publish seq %d: unexpected duplicate", ack.Sequence)
	}
	return ack.Sequence
}

// raw builds a message as another service might publish it.
func raw(room string, payload any, msgID string) *nats.Msg {
	m := nats.NewMsg(chat.Subject(room))
	switch p := payload.(type) {
	case string:
		m.Data = []byte(p)
	default:
		b, err := json.Marshal(p)
		if err != nil {
			panic(err)
		}
		m.Data = b
	}
	if msgID != "" {
		m.Header.Set(chat.HeaderMsgID, msgID)
	}
	return m
}

// apiMessage publishes a message the way the api does and returns it with its seq.
func (e *env) apiMessage(t *testing.T, room, name, text string) chat.Message {
	t.Helper()
	m, err := chat.NewMessage(chat.Post{Room: room, Name: name, Message: text}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m.Seq = e.publish(t, m.NATSMsg(""))
	return m
}

// docs returns every stored document, by seq.
func (e *env) docs(t *testing.T) []chat.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cur, err := e.mc.Database(history.Database).Collection(history.Collection).Find(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var raw []struct {
		ID      string    `bson:"_id"`
		Room    string    `bson:"room"`
		Name    string    `bson:"name"`
		Message string    `bson:"message"`
		SentAt  time.Time `bson:"sent_at"`
		Seq     int64     `bson:"seq"`
	}
	if err := cur.All(ctx, &raw); err != nil {
		t.Fatal(err)
	}
	out := make([]chat.Message, len(raw))
	for i, d := range raw {
		out[i] = chat.Message{ID: d.ID, Room: d.Room, Name: d.Name, Message: d.Message,
			SentAt: chat.NormalizeTime(d.SentAt), Seq: uint64(d.Seq)}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

func (e *env) count(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := e.mc.Database(history.Database).Collection(history.Collection).CountDocuments(ctx, bson.D{})
	if err != nil {
		return -1 // e.g. while MongoDB is stopped
	}
	return int(n)
}

// settled reports whether the consumer has delivered and settled every message.
func (e *env) settled(t *testing.T) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, chat.StreamName, ConsumerName)
	if err != nil {
		return false
	}
	info, err := c.Info(ctx)
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}

// waitStored waits until exactly n documents are stored and the consumer has settled
// everything, then checks that the count is still exactly n and that no seq is stored
// twice.
func (e *env) waitStored(t *testing.T, n int, timeout time.Duration) []chat.Message {
	t.Helper()
	chattest.Eventually(t, timeout, func() bool { return e.count(t) >= n && e.settled(t) },
		"want %d documents stored and consumer settled; have %d", n, e.count(t))
	docs := e.docs(t)
	if len(docs) != n {
		t.Fatalf("stored %d documents, want exactly %d", len(docs), n)
	}
	for i := 1; i < len(docs) && !e.seqReuse; i++ {
		if docs[i].Seq == docs[i-1].Seq {
			t.Fatalf("seq %d stored twice (ids %s, %s)", docs[i].Seq, docs[i-1].ID, docs[i].ID)
		}
	}
	return docs
}

func (e *env) streamTime(t *testing.T, seq uint64) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, chat.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	return chat.NormalizeTime(m.Time)
}

// publishN publishes n api-like messages to room concurrently (bounded by async acks)
// and returns their ids.
func (e *env) publishN(t *testing.T, room string, n int) []string {
	t.Helper()
	ids := make([]string, 0, n)
	futures := make([]jetstream.PubAckFuture, 0, n)
	for i := range n {
		m, err := chat.NewMessage(chat.Post{Room: room, Name: "bulk", Message: fmt.Sprintf("message %d", i)}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		f, err := e.js.PublishMsgAsync(m.NATSMsg(""))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatalf("publish: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("publish ack timeout")
		}
	}
	return ids
}
