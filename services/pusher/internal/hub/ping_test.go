package hub

import (
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// pingLog records when a client's writer sent each ping.
type pingLog struct {
	mu    sync.Mutex
	pings []time.Time
	got   chan struct{}
}

func (p *pingLog) TryWrite(frame []byte, _ time.Time) int { return len(frame) }
func (p *pingLog) Pending() bool                          { return false }
func (p *pingLog) WriteMany(_ [][]byte, ping bool) error {
	if ping {
		p.mu.Lock()
		p.pings = append(p.pings, time.Now())
		p.mu.Unlock()
		select {
		case p.got <- struct{}{}:
		default:
		}
	}
	return nil
}
func (p *pingLog) Close(int, string, <-chan struct{}) {}

// TestPingsEveryIntervalFromOneWheel: every client of the hub gets its pings from the
// hub's one ping wheel, each after a random half to whole interval at first and then
// one interval apart: never early, late by a tick (interval/32) plus scheduling slack.
// A closed client gets no more pings and leaves the wheel.
func TestPingsEveryIntervalFromOneWheel(t *testing.T) {
	const interval = 160 * time.Millisecond
	h := New(Config{Window: 8, QueueSize: 64, ReplayBatch: 8, PingInterval: interval, MaxSubs: 4, FlushInterval: -1},
		0, time.Now(), nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	const n = 50
	logs := make([]*pingLog, n)
	clients := make([]*Client, n)
	joined := time.Now()
	for i := range logs {
		logs[i] = &pingLog{got: make(chan struct{}, 1)}
		c, ok := h.Join(logs[i])
		if !ok {
			t.Fatal("join refused")
		}
		clients[i] = c
	}
	for _, l := range logs { // wait for 4 pings each
		for {
			l.mu.Lock()
			k := len(l.pings)
			l.mu.Unlock()
			if k >= 4 {
				break
			}
			select {
			case <-l.got:
			case <-time.After(10 * time.Second):
				t.Fatalf("%d pings after 10s", k)
			}
		}
	}
	slack := interval/pingSlots + 60*time.Millisecond // a tick, plus a loaded -race machine
	for i, l := range logs {
		l.mu.Lock()
		pings := append([]time.Time(nil), l.pings...)
		l.mu.Unlock()
		if first := pings[0].Sub(joined); first < interval/2 || first > interval+slack {
			t.Errorf("client %d: first ping after %v, want %v to %v", i, first, interval/2, interval)
		}
		for k := 1; k < len(pings); k++ {
			// Each ping is scheduled when the previous one was written, a little after
			// pings[k-1] was recorded: allow a millisecond early for that.
			if gap := pings[k].Sub(pings[k-1]); gap < interval-time.Millisecond || gap > interval+slack {
				t.Errorf("client %d: pings %d, %d %v apart, want %v (+%v)", i, k-1, k, gap, interval, slack)
			}
		}
	}
	for _, c := range clients {
		c.Close(CloseServiceRestart, "bye")
		<-c.Done()
	}
	h.pings.mu.Lock()
	left := h.pings.count
	h.pings.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d closed clients still in the ping wheel", left)
	}
}
