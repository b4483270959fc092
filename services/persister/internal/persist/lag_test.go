package persist

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
)

// slowFailOnceWriter fails its first insert without writing, and delays every insert,
// so that every stored message waits at least delay after JetStream stored it.
type slowFailOnceWriter struct {
	Writer
	delay time.Duration
	calls atomic.Int32
}

func (w *slowFailOnceWriter) InsertMany(ctx context.Context, msgs []chat.Message) error {
	time.Sleep(w.delay)
	if w.calls.Add(1) == 1 {
		return errors.New("injected insert failure")
	}
	return w.Writer.InsertMany(ctx, msgs)
}

// TestLagHistogram checks chat_persister_lag_seconds: one observation per stored
// message (none for a failed insert nor for a dead-lettered payload), measured from
// JetStream's storage time.
func TestLagHistogram(t *testing.T) {
	const n = 300
	const delay = 30 * time.Millisecond
	e := newEnv(t)
	e.publish(t, raw("general", `not json`, ""))
	e.publishN(t, "general", n)
	in := e.start(t, testConfig(), &slowFailOnceWriter{Writer: e.store, delay: delay})
	e.waitStored(t, n, 20*time.Second)

	if counter(in.p.met.errors) == 0 {
		t.Fatal("the injected insert failure was not counted")
	}
	mfs, err := in.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "chat_persister_lag_seconds" {
			continue
		}
		found = true
		h := mf.GetMetric()[0].GetHistogram()
		if got := h.GetSampleCount(); got != n {
			t.Errorf("lag sample count = %d, want exactly %d", got, n)
		}
		if h.GetSampleSum() <= 0 {
			t.Errorf("lag sample sum = %v, want > 0", h.GetSampleSum())
		}
		// Every message waited at least one delayed insert after being stored.
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() < delay.Seconds() && b.GetCumulativeCount() != 0 {
				t.Errorf("%d lags <= %vs, want none below the %v insert delay",
					b.GetCumulativeCount(), b.GetUpperBound(), delay)
			}
		}
	}
	if !found {
		t.Fatal("chat_persister_lag_seconds not registered")
	}
}
