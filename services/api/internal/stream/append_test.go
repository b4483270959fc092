package stream

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fakeAppender is an Appender whose subjects are answered by a test responder instead of
// a stream (no stream exists), so that acks can be withheld or shaped.
func fakeAppender(t *testing.T, timeout time.Duration, respond func(n int32, m *nats.Msg)) (*Appender, *atomic.Int32) {
	t.Helper()
	n := chattest.StartNATS(t)
	nc, _ := n.Connect(t)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4), jetstream.WithPublishAsyncTimeout(timeout))
	if err != nil {
		t.Fatal(err)
	}
	var count atomic.Int32
	rc, _ := n.Connect(t) // the responder has its own connection
	sub, err := rc.Subscribe(chat.SubjectWildcard, func(m *nats.Msg) { respond(count.Add(1), m) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := rc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &Appender{nc: nc, js: js, timeout: timeout}, &count
}

func message(t *testing.T) chat.Message {
	t.Helper()
	m, err := chat.NewMessage(chat.Post{Name: "a", Message: "b", ID: "key-1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestNoAckInTimeIsUnavailable(t *testing.T) {
	p, count := fakeAppender(t, 300*time.Millisecond, func(int32, *nats.Msg) {})
	start := time.Now()
	_, _, err := p.Append(context.Background(), message(t), "")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Fatalf("gave up after %v, want about 300ms", d)
	}
	if count.Load() != 1 {
		t.Fatalf("published %d times, want 1", count.Load())
	}
	chattest.Eventually(t, 2*time.Second, func() bool { return p.js.PublishAsyncPending() == 0 }, "timed-out publish still holds a window slot")
}

func TestDuplicateInProcessIsRetried(t *testing.T) {
	p, count := fakeAppender(t, 2*time.Second, func(n int32, m *nats.Msg) {
		if m.Header.Get(chat.HeaderMsgID) != "key-1" {
			t.Errorf("Nats-Msg-Id %q", m.Header.Get(chat.HeaderMsgID))
		}
		if n == 1 {
			_ = m.Respond([]byte(`{"error":{"code":409,"err_code":10158,"description":"duplicate message id is in process"}}`))
			return
		}
		_ = m.Respond([]byte(`{"stream":"CHAT","seq":7}`))
	})
	got, dup, err := p.Append(context.Background(), message(t), "")
	if err != nil || dup || got.Seq != 7 || got.ID != "key-1" {
		t.Fatalf("got %+v dup=%v err=%v", got, dup, err)
	}
	if count.Load() != 2 {
		t.Fatalf("published %d times, want 2", count.Load())
	}
}

func TestOtherAPIErrorIsUnavailable(t *testing.T) {
	p, _ := fakeAppender(t, 2*time.Second, func(_ int32, m *nats.Msg) {
		_ = m.Respond([]byte(`{"error":{"code":503,"err_code":10077,"description":"resource limits exceeded for account"}}`))
	})
	if _, _, err := p.Append(context.Background(), message(t), ""); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", err)
	}
}

func TestDisconnectedPublishesNothing(t *testing.T) {
	p, count := fakeAppender(t, 2*time.Second, func(_ int32, m *nats.Msg) { _ = m.Respond([]byte(`{"stream":"CHAT","seq":1}`)) })
	p.nc.Close()
	if _, _, err := p.Append(context.Background(), message(t), ""); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", err)
	}
	if count.Load() != 0 {
		t.Fatal("published while disconnected")
	}
}
