package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"
)

// drainSub is a websocket subscriber that records every message seq of its room and how
// its connection ended.
type drainSub struct {
	mu    sync.Mutex
	seqs  []uint64
	code  int // close code the server sent (0: none yet)
	ended chan struct{}
}

func (d *drainSub) run(t *testing.T, url string) {
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Errorf("dial %s: %v", url, err)
		close(d.ended)
		return
	}
	ready := make(chan struct{})
	go func() {
		defer close(d.ended)
		defer conn.Close()
		for {
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, data, err := conn.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					d.mu.Lock()
					d.code = ce.Code
					d.mu.Unlock()
				}
				return
			}
			var f struct {
				Type string `json:"type"`
				Seq  uint64 `json:"seq"`
			}
			_ = json.Unmarshal(data, &f)
			switch f.Type {
			case "subscribed":
				close(ready)
			case "message":
				d.mu.Lock()
				d.seqs = append(d.seqs, f.Seq)
				d.mu.Unlock()
			}
		}
	}()
	select {
	case <-ready:
	case <-d.ended:
		t.Errorf("subscriber on %s ended before subscribing", url)
	case <-time.After(10 * time.Second):
		t.Errorf("subscriber on %s: no subscribed frame", url)
	}
}

func (d *drainSub) snapshot() ([]uint64, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]uint64(nil), d.seqs...), d.code
}

// TestDrainExactCounts: SIGTERM (context cancel) while posters and subscribers are busy.
// The node stops within its shutdown timeout; every post answered 201 is in the stream and
// in MongoDB exactly once and nothing else is (refused posts publish nothing); the
// persister has acked everything; every subscriber is closed with 1012 and, resuming on
// another node with since=<last seq>, ends with every acknowledged message exactly once,
// in order.
func TestDrainExactCounts(t *testing.T) {
	n := chattest.StartNATS(t)
	m := chattest.StartMongo(t)
	cfg := faultConfig(t, n, m)
	cfg.Pusher.CloseSpread = 300 * time.Millisecond
	cfg.ShutdownTimeout = 10 * time.Second
	nodeA := startSystemWith(t, cfg)
	const room = "drain"
	wsURL := func(base, query string) string { return "ws" + strings.TrimPrefix(base, "http") + "/ws" + query }

	subs := make([]*drainSub, 3)
	for i := range subs {
		subs[i] = &drainSub{ended: make(chan struct{})}
		subs[i].run(t, wsURL(nodeA.url, "?room="+room))
	}

	// Posters: each post answered 201 is recorded; 503s and connection errors are not.
	var (
		mu       sync.Mutex
		acked    = map[string]uint64{} // id -> seq
		refused  int
		netErrs  int
		stopPost = make(chan struct{})
		wg       sync.WaitGroup
	)
	client := &http.Client{Timeout: 20 * time.Second}
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stopPost:
					return
				default:
				}
				body := fmt.Sprintf(`{"name":"p%d","message":"m%d"}`, p, i)
				resp, err := client.Post(nodeA.url+"/rooms/"+room+"/messages", "application/json", strings.NewReader(body))
				if err != nil {
					mu.Lock()
					netErrs++
					mu.Unlock()
					time.Sleep(5 * time.Millisecond)
					continue
				}
				var msg chat.Message
				decErr := json.NewDecoder(resp.Body).Decode(&msg)
				resp.Body.Close()
				mu.Lock()
				switch {
				case resp.StatusCode == http.StatusCreated && decErr == nil:
					acked[msg.ID] = msg.Seq
				case resp.StatusCode == http.StatusServiceUnavailable:
					refused++
				default:
					t.Errorf("post answered %d (%v)", resp.StatusCode, decErr)
				}
				mu.Unlock()
			}
		}()
	}
	// Let some traffic flow, then SIGTERM while it still flows.
	chattest.Eventually(t, 20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 100 }, "posts not flowing")
	start := time.Now()
	nodeA.cancel()
	nodeA.cancel = nil
	var stopErr error
	select {
	case stopErr = <-nodeA.done:
	case <-time.After(cfg.ShutdownTimeout + 5*time.Second):
		t.Fatal("node did not stop within its shutdown timeout")
	}
	took := time.Since(start)
	close(stopPost)
	wg.Wait()
	if stopErr != nil {
		t.Fatalf("node stopped with %v", stopErr)
	}
	if took > cfg.ShutdownTimeout {
		t.Fatalf("shutdown took %v, timeout %v", took, cfg.ShutdownTimeout)
	}
	t.Logf("shutdown took %v; acked %d, refused (503) %d, connection errors %d", took, len(acked), refused, netErrs)

	// Every subscriber was told to reconnect elsewhere.
	for i, s := range subs {
		select {
		case <-s.ended:
		case <-time.After(10 * time.Second):
			t.Fatalf("subscriber %d still connected", i)
		}
		if _, code := s.snapshot(); code != 1012 {
			t.Fatalf("subscriber %d closed with %d, want 1012", i, code)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The stream holds exactly the acknowledged posts.
	_, js := n.Connect(t)
	stream, err := js.Stream(ctx, chat.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(chat.Subject(room)))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Subjects[chat.Subject(room)]; got != uint64(len(acked)) {
		t.Fatalf("stream has %d messages in %s, %d were acknowledged", got, room, len(acked))
	}
	// The persister finished its batch and acked it: nothing delivered is left unacked.
	// (In the all-in-one the api may still publish its last in-flight posts after the
	// persister stopped pulling; those stay in the stream for the next persister.)
	cons, err := stream.Consumer(ctx, "persister")
	if err != nil {
		t.Fatal(err)
	}
	// The server takes acks off its own queue (nats-server's consumer processes inbound
	// acks on a goroutine of its own): the persister's last acks, flushed before its
	// connection closed, can still be in there under load. An unacked message stays
	// pending until it is redelivered (AckWait 4 s, and no persister pulls now), so 2 s of
	// looking cannot mistake one for acked.
	var ci *jetstream.ConsumerInfo
	chattest.Eventually(t, 2*time.Second, func() bool {
		ci, err = cons.Info(ctx)
		return err == nil && ci.NumAckPending == 0
	}, "persister left messages unacked after the drain: %v", chattest.Later(func() string {
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%d ack pending", ci.NumAckPending)
	}))
	t.Logf("left in the stream for the next persister: %d", ci.NumPending)

	// Another node takes over: MongoDB ends with every acknowledged message exactly once.
	nodeB := startSystemWith(t, cfg)
	store := history.New(m.Connect(t))
	readAll := func() []chat.Message {
		var all []chat.Message
		var after uint64
		for {
			page, err := store.After(ctx, room, after, 200)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, page...)
			if len(page) < 200 {
				return all
			}
			after = page[len(page)-1].Seq
		}
	}
	var all []chat.Message
	chattest.EventuallyEvery(t, 20*time.Second, 250*time.Millisecond, func() bool { all = readAll(); return len(all) >= len(acked) }, "MongoDB does not have every acknowledged message")
	if all = readAll(); len(all) != len(acked) {
		t.Fatalf("MongoDB has %d messages, %d were acknowledged", len(all), len(acked))
	}
	for _, msg := range all {
		if seq, ok := acked[msg.ID]; !ok || seq != msg.Seq {
			t.Fatalf("stored %s seq %d was not acknowledged as such", msg.ID, msg.Seq)
		}
	}

	// Subscribers resume on the other node and end with every acknowledged message once.
	var last uint64
	for _, seq := range acked {
		last = max(last, seq)
	}
	for i, s := range subs {
		got, _ := s.snapshot()
		since := uint64(0)
		if len(got) > 0 {
			since = got[len(got)-1]
		}
		r := &drainSub{ended: make(chan struct{})}
		r.run(t, wsURL(nodeB.url, fmt.Sprintf("?room=%s&since=%d", room, since)))
		chattest.Eventually(t, 20*time.Second, func() bool {
			more, _ := r.snapshot()
			return len(more) > 0 && more[len(more)-1] == last || since == last
		}, "subscriber %d did not catch up after resuming", i)
		more, _ := r.snapshot()
		all := append(got, more...)
		if len(all) != len(acked) {
			t.Fatalf("subscriber %d received %d messages (%d before the drain), %d were acknowledged", i, len(all), len(got), len(acked))
		}
		seen := map[uint64]bool{}
		for k, seq := range all {
			if seen[seq] || (k > 0 && seq <= all[k-1]) {
				t.Fatalf("subscriber %d: seq %d duplicated or out of order", i, seq)
			}
			seen[seq] = true
		}
		for _, seq := range acked {
			if !seen[seq] {
				t.Fatalf("subscriber %d never received acknowledged seq %d", i, seq)
			}
		}
	}
}
