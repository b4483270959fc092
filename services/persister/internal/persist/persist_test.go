package persist

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
)

func TestStoresValidMessages(t *testing.T) {
	e := newEnv(t)
	in := e.start(t, testConfig(), nil)
	epoch := in.p.Epoch()

	type want struct {
		msg    chat.Message
		sentAt time.Time // zero: the stream's timestamp
	}
	var wants []want
	// As the api publishes: Nats-Msg-Id header + full payload.
	for i, text := range []string{"hello", "  <b>bold</b> & \"quoted\"  ", "multi\r\nline\ttab", "é ☃ 🎉"} {
		m := e.apiMessage(t, []string{"general", "r2"}[i%2], " alice ", text)
		wants = append(wants, want{msg: m, sentAt: m.SentAt})
	}
	// As another service might: no id at all, payload id only, header only, both.
	rawCases := []struct {
		payload map[string]any
		msgID   string
		wantID  string // "" = derived
		sentAt  time.Time
	}{
		{payload: map[string]any{"name": "bot", "message": "no id 1"}},
		{payload: map[string]any{"name": "bot", "message": "no id 2", "room": "general"}},
		{payload: map[string]any{"name": "bot", "message": "payload id", "id": "svc-1"}, wantID: "svc-1"},
		{payload: map[string]any{"name": "bot", "message": "header id"}, msgID: "svc-2", wantID: "svc-2"},
		{payload: map[string]any{"name": "bot", "message": "both ids", "id": "svc-3"}, msgID: "svc-3", wantID: "svc-3"},
		{payload: map[string]any{"name": "bot", "message": "with sent_at", "sent_at": "2026-01-02T03:04:05.678901Z"},
			sentAt: time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC)},
		{payload: map[string]any{"name": "bot", "message": "bad sent_at kept as stream time", "sent_at": "yesterday"}},
	}
	for _, c := range rawCases {
		seq := e.publish(t, raw("general", c.payload, c.msgID))
		id := c.wantID
		if id == "" {
			id = chat.DeriveID(epoch, seq)
		}
		m := chat.Message{ID: id, Room: "general", Name: "bot", Message: c.payload["message"].(string), Seq: seq}
		wants = append(wants, want{msg: m, sentAt: c.sentAt})
	}

	docs := e.waitStored(t, len(wants), 15*time.Second)
	for i, w := range wants {
		d := docs[i]
		exp := w.msg // api messages are normalized by NewMessage already
		exp.SentAt = w.sentAt
		if exp.SentAt.IsZero() {
			exp.SentAt = e.streamTime(t, exp.Seq)
		}
		if !d.Equal(exp) {
			t.Errorf("doc %d:\n got  %+v\n want %+v", i, d, exp)
		}
	}
	if got := counter(in.p.met.stored); got != len(wants) {
		t.Errorf("stored_total = %d, want %d", got, len(wants))
	}
	if got := counter(in.p.met.redeliveries) + counter(in.p.met.errors) + counter(in.p.met.deadLettered); got != 0 {
		t.Errorf("redeliveries+errors+deadletters = %d, want 0", got)
	}
}

func TestDeadLettersPoisonWithoutBlocking(t *testing.T) {
	e := newEnv(t)
	poison := []struct {
		data, msgID, reason string
	}{
		{data: `{"name":"x","message":`, reason: "bad JSON"},
		{data: `{"message":"no name"}`, reason: "name: missing"},
		{data: `{"name":"x","message":"wrong room","room":"other"}`, reason: "does not match subject room"},
		{data: `{"name":"x","message":"id mismatch","id":"a1"}`, msgID: "b2", reason: "does not match Nats-Msg-Id"},
		{data: "\xff\xfe", reason: "UTF-8"},
		{data: `{"name":"   ","message":"blank name"}`, reason: "name: must not be empty"},
	}
	// Poison first, so it lands in the same batch as the valid ones behind it.
	var validIDs []string
	var poisonSeqs []uint64
	for i, p := range poison {
		poisonSeqs = append(poisonSeqs, e.publish(t, raw("general", p.data, p.msgID)))
		m := e.apiMessage(t, "general", "v", "valid after poison "+poison[i].reason)
		validIDs = append(validIDs, m.ID)
	}
	in := e.start(t, testConfig(), nil)

	docs := e.waitStored(t, len(validIDs), 15*time.Second)
	for i, d := range docs {
		if d.ID != validIDs[i] {
			t.Errorf("doc %d id = %s, want %s", i, d.ID, validIDs[i])
		}
	}
	// The dead-letter stream holds each poison message once, byte for byte.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dl, err := e.js.Stream(ctx, chat.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := dl.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(len(poison)) {
		t.Fatalf("DEADLETTER holds %d messages, want %d", info.State.Msgs, len(poison))
	}
	for i, p := range poison {
		m, err := dl.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Data) != p.data {
			t.Errorf("dead letter %d data = %q, want %q", i, m.Data, p.data)
		}
		if got := m.Header.Get(chat.HeaderOriginalSubject); got != "chat.messages.general" {
			t.Errorf("dead letter %d subject header = %q", i, got)
		}
		if got := m.Header.Get(chat.HeaderDeadLetterReason); !strings.Contains(got, p.reason) {
			t.Errorf("dead letter %d reason = %q, want it to mention %q", i, got, p.reason)
		}
		if got := m.Header.Get(HeaderOriginalSeq); got != strconv.FormatUint(poisonSeqs[i], 10) {
			t.Errorf("dead letter %d original seq = %q, want %d", i, got, poisonSeqs[i])
		}
	}
	if got := counter(in.p.met.deadLettered); got != len(poison) {
		t.Errorf("deadletter_total = %d, want %d", got, len(poison))
	}
}

func TestMongoOutageLosesNothing(t *testing.T) {
	e := newEnv(t)
	in := e.start(t, testConfig(), nil)

	e.publishN(t, "general", 200)
	chattest.Eventually(t, 15*time.Second, func() bool { return e.count(t) == 200 }, "first 200 stored")

	e.mongo.Stop()
	e.publishN(t, "general", 300)
	// The persister must have tried and failed at least once while MongoDB was down.
	chattest.Eventually(t, 15*time.Second, func() bool { return counter(in.p.met.errors) > 0 }, "a failed write")
	e.mongo.Start()

	e.waitStored(t, 500, 30*time.Second)
	if counter(in.p.met.redeliveries) == 0 {
		t.Error("no redeliveries counted after a failed write")
	}
}

// crashWriter writes the first batch, then "kills" its persister before the acks: it
// waits for the dead letter of that batch, closes the replica's NATS connection and only
// then returns.
type crashWriter struct {
	Writer
	once  sync.Once
	crash func()
}

func (w *crashWriter) InsertMany(ctx context.Context, msgs []chat.Message) error {
	err := w.Writer.InsertMany(ctx, msgs)
	w.once.Do(w.crash)
	return err
}

func TestCrashBeforeAckStoresOnce(t *testing.T) {
	e := newEnv(t)
	e.publish(t, raw("general", `not json`, ""))
	e.publishN(t, "general", 50)

	var a *instance
	w := &crashWriter{Writer: e.store}
	w.crash = func() {
		chattest.Eventually(t, 10*time.Second, func() bool { return dlCount(t, e) == 1 }, "dead letter of the first batch")
		a.nc.Close()
	}
	ready := make(chan struct{})
	w2 := &gateWriter{Writer: w, ready: ready}
	a = e.start(t, testConfig(), w2)
	close(ready)
	chattest.Eventually(t, 10*time.Second, func() bool { return a.nc.IsClosed() }, "replica A crashed")
	a.stop(t)
	if e.settled(t) {
		t.Fatal("crashed replica acked its batch")
	}

	e.publishN(t, "general", 50)
	b := e.start(t, testConfig(), nil)
	e.waitStored(t, 100, 20*time.Second)
	if counter(b.p.met.redeliveries) == 0 {
		t.Error("replica B saw no redeliveries")
	}
	if n := dlCount(t, e); n != 1 {
		t.Errorf("DEADLETTER holds %d messages after redelivery, want 1", n)
	}
}

// gateWriter holds writes until ready is closed (so a test can finish setting up).
type gateWriter struct {
	Writer
	ready chan struct{}
}

func (w *gateWriter) InsertMany(ctx context.Context, msgs []chat.Message) error {
	<-w.ready
	return w.Writer.InsertMany(ctx, msgs)
}

func dlCount(t *testing.T, e *env) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, chat.DeadLetterStream)
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

// cancelWriter cancels its persister's Run in the middle of the first write.
type cancelWriter struct {
	Writer
	once   sync.Once
	cancel func()
	calls  atomic.Int32
}

func (w *cancelWriter) InsertMany(ctx context.Context, msgs []chat.Message) error {
	w.calls.Add(1)
	w.once.Do(w.cancel)
	return w.Writer.InsertMany(ctx, msgs)
}

func TestGracefulStopMidBatchFinishesIt(t *testing.T) {
	e := newEnv(t)
	e.publishN(t, "general", 300)

	ready := make(chan struct{})
	var a *instance
	w := &cancelWriter{Writer: e.store, cancel: func() { a.cancel() }}
	// AckWait (and with it the write timeout, AckWait/2) generous: on a loaded machine a
	// 1 s write timeout expired mid-batch, A then rightly left the batch to be redelivered,
	// and B counted that redelivery as if A had dropped messages at a clean stop.
	cfg := testConfig()
	cfg.AckWait = 20 * time.Second
	a = e.start(t, cfg, &gateWriter{Writer: w, ready: ready})
	close(ready)
	select {
	case err := <-a.done:
		close(a.done)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after its context was cancelled mid-write")
	}
	if w.calls.Load() == 0 {
		t.Fatal("no write happened")
	}
	// Everything A received was written and acked before Run returned: B gets no
	// redelivery, and the consumer has nothing outstanding.
	stored := e.count(t)
	if stored <= 0 || stored > 300 {
		t.Fatalf("after stop: %d stored", stored)
	}
	if counter(a.p.met.stored) != stored {
		t.Errorf("A stored_total = %d, documents = %d", counter(a.p.met.stored), stored)
	}
	e.publishN(t, "general", 100)
	b := e.start(t, testConfig(), nil)
	e.waitStored(t, 400, 20*time.Second)
	if n := counter(b.p.met.redeliveries); n != 0 {
		t.Errorf("B saw %d redeliveries: A left unacked messages behind", n)
	}
	if got := counter(b.p.met.stored); got != 400-stored {
		t.Errorf("B stored_total = %d, want %d", got, 400-stored)
	}
}

func TestReplicasShareTheConsumer(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.BatchSize = 50
	a := e.start(t, cfg, nil)
	b := e.start(t, cfg, nil)
	var wg sync.WaitGroup
	for _, room := range []string{"r1", "r2", "r3", "r4"} {
		wg.Go(func() { e.publishN(t, room, 500) })
	}
	wg.Wait()
	e.waitStored(t, 2000, 30*time.Second)
	sa, sb := counter(a.p.met.stored), counter(b.p.met.stored)
	if sa+sb != 2000 {
		t.Errorf("stored_total A %d + B %d != 2000", sa, sb)
	}
	if sa == 0 || sb == 0 {
		t.Logf("one replica stored nothing (A %d, B %d)", sa, sb)
	}
	if n := counter(a.p.met.redeliveries) + counter(b.p.met.redeliveries); n != 0 {
		t.Errorf("%d redeliveries", n)
	}
}

func TestSameIDOutsideDuplicateWindowStoredOnce(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.Stream.Duplicates = 100 * time.Millisecond
	e.start(t, cfg, nil)

	m, err := chat.NewMessage(chat.Post{Room: "general", Name: "n", Message: "twice", ID: "same-id"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	first := e.publish(t, m.NATSMsg(""))
	var second uint64
	chattest.Eventually(t, 10*time.Second, func() bool {
		ack, err := e.js.PublishMsg(context.Background(), m.NATSMsg(""))
		if err != nil || ack.Duplicate {
			return false
		}
		second = ack.Sequence
		return true
	}, "republish outside the duplicate window")
	if second == first {
		t.Fatal("second publish was deduplicated")
	}
	docs := e.waitStored(t, 1, 15*time.Second)
	if docs[0].ID != "same-id" || docs[0].Seq != first {
		t.Errorf("stored %s seq %d, want same-id seq %d (first wins)", docs[0].ID, docs[0].Seq, first)
	}
}

func TestStreamRecreatedGetsNewEpoch(t *testing.T) {
	e := newEnv(t)
	e.seqReuse = true
	in := e.start(t, testConfig(), nil)
	old := in.p.Epoch()
	seq := e.publish(t, raw("general", map[string]any{"name": "a", "message": "old stream"}, ""))
	e.waitStored(t, 1, 15*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.js.DeleteStream(ctx, chat.StreamName); err != nil {
		t.Fatal(err)
	}
	// The persister notices its consumer is gone and recreates stream and consumer.
	chattest.Eventually(t, 15*time.Second, func() bool { return !in.p.Epoch().Equal(old) }, "new epoch")
	seq2 := e.publish(t, raw("general", map[string]any{"name": "a", "message": "new stream"}, ""))
	if seq2 != seq {
		t.Fatalf("new stream seq = %d, want %d (a reused seq is the point of this test)", seq2, seq)
	}
	docs := e.waitStored(t, 2, 15*time.Second)
	ids := map[string]bool{docs[0].ID: true, docs[1].ID: true}
	if !ids[chat.DeriveID(old, seq)] || !ids[chat.DeriveID(in.p.Epoch(), seq)] {
		t.Errorf("ids %v, want derived from both epochs", ids)
	}
}
