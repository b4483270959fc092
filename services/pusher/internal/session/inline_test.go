package session

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/services/pusher/internal/hub"
	"github.com/gorilla/websocket"
)

// These tests cover the fan-out's two delivery paths: a non-blocking write straight from
// Fanout to a quiet client, and the queue + writer for busy or slow ones (with partial
// writes whose tail the writer completes).

func inlineHub(t testing.TB, cfg testConfig) (*hub.Hub, string) {
	t.Helper()
	return testServer(t, cfg, nil, nil)
}

func dialSubscribed(t *testing.T, url, room string) *websocket.Conn {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(url+"?room="+room, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, data, err := conn.ReadMessage(); err != nil || !strings.Contains(string(data), `"subscribed"`) {
		t.Fatalf("subscribed frame: %q %v", data, err)
	}
	return conn
}

// expectSeqs reads messages first..last (seqs) in order, exactly once each.
func expectSeqs(t *testing.T, conn *websocket.Conn, first, last uint64, text string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for want := first; want <= last; want++ {
		_, data, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for seq %d: %v", want, err)
		}
		var m chat.Message
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("frame %.80q: %v", data, err)
		}
		if m.Seq != want || m.Message != text {
			t.Fatalf("got seq %d (%d bytes of text), want seq %d", m.Seq, len(m.Message), want)
		}
	}
}

func publishRange(h *hub.Hub, room string, first, last uint64, text string) {
	for seq := first; seq <= last; seq++ {
		h.Fanout(&chat.Message{ID: "m" + string(rune('a'+seq%26)), Room: room, Name: "n", Message: text, SentAt: time.Now(), Seq: seq})
	}
}

// A client idle for longer than the write timeout still gets the next message: the
// non-blocking write must not trip over an expired write deadline.
func TestInlineDeliveryAfterIdle(t *testing.T) {
	h, url := inlineHub(t, testConfig{Window: 64, QueueSize: 256, ReplayBatch: 16, PingInterval: time.Hour,
		PongTimeout: time.Hour, WriteTimeout: 100 * time.Millisecond, MaxSubs: 4})
	conn := dialSubscribed(t, url, "idle")
	publishRange(h, "idle", 1, 1, "first")
	expectSeqs(t, conn, 1, 1, "first")
	time.Sleep(300 * time.Millisecond) // longer than WriteTimeout: the deadline set by the last flush has passed
	for seq := uint64(2); seq <= 4; seq++ {
		publishRange(h, "idle", seq, seq, "after idle")
		expectSeqs(t, conn, seq, seq, "after idle")
		time.Sleep(150 * time.Millisecond)
	}
}

// A client that stops reading fills its socket: writes go partial, then to the queue; once
// it reads again it gets every frame intact, in order, exactly once.
func TestDeliveryPartialWritesInOrder(t *testing.T) {
	h, url := inlineHub(t, testConfig{Window: 64, QueueSize: 4096, ReplayBatch: 16, PingInterval: time.Hour,
		PongTimeout: time.Hour, WriteTimeout: 10 * time.Second, MaxSubs: 4, FlushInterval: 2 * time.Millisecond})
	conn := dialSubscribed(t, url, "slow")
	text := strings.Repeat("x", 3000) // 600 frames of ~3 KB: far more than the socket buffers hold
	for seq := uint64(1); seq <= 600; seq++ {
		publishRange(h, "slow", seq, seq, text)
		if seq%50 == 0 {
			time.Sleep(5 * time.Millisecond) // let some go out inline between bursts
		}
	}
	expectSeqs(t, conn, 1, 600, text)
}

// Quiet and busy clients in one room both get everything in order: a quiet one through
// non-blocking writes, a busy one (within the flush interval) through the queue.
func TestDeliveryMixedPaths(t *testing.T) {
	h, url := inlineHub(t, testConfig{Window: 64, QueueSize: 4096, ReplayBatch: 16, PingInterval: time.Hour,
		PongTimeout: time.Hour, WriteTimeout: 10 * time.Second, MaxSubs: 4, FlushInterval: 2 * time.Millisecond})
	a, b := dialSubscribed(t, url, "mixed"), dialSubscribed(t, url, "mixed")
	for seq := uint64(1); seq <= 300; seq++ {
		publishRange(h, "mixed", seq, seq, "m")
		if seq%7 == 0 {
			time.Sleep(3 * time.Millisecond) // beyond the flush interval: the next one goes inline
		}
	}
	expectSeqs(t, a, 1, 300, "m")
	expectSeqs(t, b, 1, 300, "m")
}
