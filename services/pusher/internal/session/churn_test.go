package session

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// Connection churn leaves nothing behind: connects that subscribe (some resuming with
// since), read their subscribed frame and leave, half with a clean close, half by
// dropping the TCP connection, end with the node's goroutines and live heap back at
// their baseline and no client registered. CHAT_CHURN_N sets the count (default 2,000;
// the README's figure is from 100,000).
func TestChurnLeavesNothingBehind(t *testing.T) {
	n := 2000
	if s := os.Getenv("CHAT_CHURN_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	h, url := testServer(t, testConfig{Window: 64, QueueSize: 256, ReplayBatch: 16, PingInterval: time.Hour,
		PongTimeout: time.Minute, WriteTimeout: 5 * time.Second, MaxSubs: 8}, nil, reg)
	const rooms = 16
	connect := func(i int) error {
		q := fmt.Sprintf("?room=c-%d", i%rooms)
		if i%3 == 0 {
			q += "&since=0"
		}
		c, _, err := websocket.DefaultDialer.Dial(url+q, nil)
		if err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, _, err := c.ReadMessage(); err != nil {
			c.Close()
			return fmt.Errorf("subscribed frame: %w", err)
		}
		if i%2 == 0 {
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			_, _, _ = c.ReadMessage() // the server's answer
		}
		return c.NetConn().Close() // odd: abrupt, no close frame
	}
	churn := func(count int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1)); i <= count; i = int(next.Add(1)) {
					if err := connect(i); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	settled := func() (int, uint64) {
		deadline := time.Now().Add(20 * time.Second)
		for h.Connections() > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapAlloc
	}
	churn(200) // warm up: pools, the rooms, the server's buffers
	g0, heap0 := settled()
	start := time.Now()
	churn(n)
	elapsed := time.Since(start)
	if t.Failed() {
		return
	}
	// The goroutines of the last connections may still be ending: wait for the count.
	deadline := time.Now().Add(20 * time.Second)
	g1, heap1 := settled()
	for g1 > g0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		g1, heap1 = settled()
	}
	t.Logf("%d connections in %v: goroutines %d -> %d, live heap %d -> %d KiB, %d connections, %d rooms",
		n, elapsed.Round(time.Millisecond), g0, g1, heap0>>10, heap1>>10, h.Connections(), h.Rooms())
	if c := h.Connections(); c != 0 {
		t.Fatalf("%d connections still registered", c)
	}
	if s := metric(t, reg, "chat_pusher_subscriptions"); s != 0 {
		t.Fatalf("%v subscriptions still counted", s)
	}
	if g1 > g0 {
		t.Fatalf("goroutines %d after, %d before", g1, g0)
	}
	if int64(heap1)-int64(heap0) > 512<<10 {
		t.Fatalf("live heap grew by %d bytes", int64(heap1)-int64(heap0))
	}
	if r := h.Rooms(); r > rooms {
		t.Fatalf("%d rooms", r)
	}
}
