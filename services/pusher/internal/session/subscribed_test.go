package session

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/gorilla/websocket"
)

// The stream acknowledged seqs up to 10 before the subscribe, but this node's feed has not
// handled them yet (its head is 0): the subscribed frame carries the stream's latest seq
// (10), and live delivery starts right after it: 1..10 are history, not pushed; 11 is.
func TestSubscribedSeqIsTheStreamsLatest(t *testing.T) {
	h, reg, url := testHub(t, 10)
	conn, _, err := websocket.DefaultDialer.Dial(url+"?room=r", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := conn.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Type string `json:"type"`
		Seq  uint64 `json:"seq"`
	}
	if err := json.Unmarshal(data, &f); err != nil || f.Type != "subscribed" || f.Seq != 10 {
		t.Fatalf("first frame %s, want subscribed with seq 10 (the stream's latest, not the node's head %d)", data, h.Head())
	}
	waitSubscribed(t, reg)
	for seq := uint64(1); seq <= 11; seq++ {
		h.Fanout(&chat.Message{ID: "m", Room: "r", Name: "n", Message: "x", Seq: seq})
	}
	if got := readSeqs(t, conn, 1); got[0] != 11 {
		t.Fatalf("first pushed seq %d, want 11 (seqs <= the subscribed seq are read from history)", got[0])
	}
}
