package session

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/services/pusher/internal/hub"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// fixedBacklog is a stream that holds nothing older than the hub's window and whose last
// seq is fixed.
type fixedBacklog struct{ last uint64 }

func (b fixedBacklog) Fetch(_ context.Context, _ string, _, upTo uint64, _ int) ([]chat.Message, uint64, error) {
	return nil, upTo, nil
}
func (b fixedBacklog) LastSeq(context.Context) (uint64, error) { return b.last, nil }

func testHub(t *testing.T, last uint64) (*hub.Hub, *prometheus.Registry, string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	h, url := testServer(t, testConfig{Window: 64, QueueSize: 256, ReplayBatch: 8, PingInterval: time.Minute, PongTimeout: time.Minute,
		WriteTimeout: 5 * time.Second, MaxSubs: 4}, fixedBacklog{last: last}, reg)
	return h, reg, strings.TrimSuffix(url, "/ws")
}

func readSeqs(t *testing.T, conn *websocket.Conn, n int) []uint64 {
	t.Helper()
	var seqs []uint64
	for len(seqs) < n {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, data, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("after %v: %v", seqs, err)
		}
		var f struct {
			Type string `json:"type"`
			Seq  uint64 `json:"seq"`
		}
		_ = json.Unmarshal(data, &f)
		if f.Type == "message" {
			seqs = append(seqs, f.Seq)
		}
	}
	return seqs
}

// A client that saw seq 5 on a node whose feed is ahead resumes on a node whose feed is
// still at 0: it must get 6..10 once, not 1..5 again.
func TestResumeOnLaggingNodeSendsNothingTwice(t *testing.T) {
	h, reg, url := testHub(t, 10)
	conn, _, err := websocket.DefaultDialer.Dial(url+"?room=r&since=5", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitSubscribed(t, reg)
	for seq := uint64(1); seq <= 10; seq++ {
		h.Fanout(&chat.Message{ID: "m", Room: "r", Name: "n", Message: "x", Seq: seq})
	}
	got := readSeqs(t, conn, 5)
	for i, seq := range got {
		if seq != uint64(6+i) {
			t.Fatalf("got seqs %v, want 6..10", got)
		}
	}
}

// A cursor beyond the stream's last seq means live from now.
func TestSinceBeyondStreamIsLiveFromNow(t *testing.T) {
	h, reg, url := testHub(t, 3)
	conn, _, err := websocket.DefaultDialer.Dial(url+"?room=r&since=100", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitSubscribed(t, reg)
	h.Fanout(&chat.Message{ID: "m", Room: "r", Name: "n", Message: "x", Seq: 4})
	if got := readSeqs(t, conn, 1); got[0] != 4 {
		t.Fatalf("got %v, want [4]", got)
	}
}

// waitSubscribed waits until the hub has the one subscription (to room r).
func waitSubscribed(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if metric(t, reg, "chat_pusher_subscriptions") == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("client never subscribed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
