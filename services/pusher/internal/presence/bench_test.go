package presence

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/services/pusher/internal/hub"
)

// countTransport is a socket whose writes vanish, counted: writes (what would be system
// calls) and frames (a direct write may carry several).
type countTransport struct{ frames, writes *atomic.Int64 }

func (t countTransport) TryWrite(frame []byte, _ time.Time) int {
	t.writes.Add(1)
	for f := frame; len(f) > 0; { // count the frames: 2-byte headers below 126 bytes, else 4
		n, h := int(f[1]&0x7f), 2
		if n == 126 {
			n, h = int(f[2])<<8|int(f[3]), 4
		}
		f = f[h+n:]
		t.frames.Add(1)
	}
	return len(frame)
}
func (t countTransport) Pending() bool { return false }
func (t countTransport) WriteMany(fs [][]byte, _ bool) error {
	t.writes.Add(1)
	t.frames.Add(int64(len(fs)))
	return nil
}
func (t countTransport) Close(int, string, <-chan struct{}) {}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBigRoomPresence is the load on one node, in process (no sockets: the
// hub's and the presence's own cost): a room of 2,000 subscribers receiving 50 messages a
// second, plus, with presence, every subscriber watching presence, 100 joins/leaves a
// second and typing from 50 members (each every 2 s: 25 notices a second). One op is one
// second of that load; cpu-ms/s is the process's CPU per second of it (NATS's embedded
// server included), frames/s what the subscribers received.
//
//	go test -run XXX -bench BigRoomPresence -benchtime 5x ./services/pusher/internal/presence/
func BenchmarkBigRoomPresence(b *testing.B) {
	for _, withPresence := range []bool{false, true} {
		b.Run(fmt.Sprintf("presence=%v", withPresence), func(b *testing.B) { bigRoom(b, withPresence) })
	}
}

func bigRoom(b *testing.B, withPresence bool) {
	n := chattest.StartNATS(b)
	nc, _ := n.Connect(b)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := hub.Config{Window: 1024, QueueSize: 8192, ReplayBatch: 64, PingInterval: time.Hour, MaxSubs: 4}
	if withPresence {
		tr := New(nc, Config{}, log)
		go func() { _ = tr.Run(ctx) }()
		cfg.Presence = tr
	}
	h := hub.New(cfg, 0, time.Now(), nil, nil, log)
	var frames, writes atomic.Int64
	const subs, room = 2000, "big"
	clients := make([]*hub.Client, subs)
	for i := range clients {
		c, _ := h.Join(countTransport{&frames, &writes})
		clients[i] = c
		if err := h.SubscribeAs(c, room, nil, hub.Member{Name: fmt.Sprintf("m%d", i%500), Watch: withPresence}); err != nil {
			b.Fatal(err)
		}
	}
	churn := make([]*hub.Client, 50)
	for i := range churn {
		churn[i], _ = h.Join(countTransport{&frames, &writes})
	}
	var seq uint64
	b.ResetTimer()
	frames.Store(0)
	writes.Store(0)
	cpu0, wall0 := cpuTime(), time.Now()
	for range b.N {
		msgs, joins, typing := time.NewTicker(20*time.Millisecond), time.NewTicker(10*time.Millisecond), time.NewTicker(40*time.Millisecond)
		end := time.After(time.Second)
		k, j := 0, 0
	second:
		for {
			select {
			case <-end:
				break second
			case now := <-msgs.C:
				seq++
				h.Fanout(&chat.Message{ID: fmt.Sprint(seq), Room: room, Name: "n", Message: "hello", SentAt: now, Seq: seq})
			case <-joins.C:
				if !withPresence {
					continue
				}
				c := churn[j%len(churn)]
				if j/len(churn)%2 == 0 {
					_ = h.SubscribeAs(c, room, nil, hub.Member{Name: fmt.Sprintf("churn%d", j%len(churn))})
				} else {
					_ = h.Unsubscribe(c, room)
				}
				j++
			case now := <-typing.C:
				if withPresence {
					_ = h.Typing(clients[k%50], room, now)
					k++
				}
			}
		}
		msgs.Stop()
		joins.Stop()
		typing.Stop()
	}
	secs := time.Since(wall0).Seconds()
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/secs, "cpu-ms/s")
	b.ReportMetric(float64(frames.Load())/secs, "frames/s")
	b.ReportMetric(float64(writes.Load())/secs, "writes/s")
	b.ReportMetric(0, "ns/op")
	for _, c := range append(clients, churn...) {
		c.Close(hub.CloseServiceRestart, "")
	}
}
