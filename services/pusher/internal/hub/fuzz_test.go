package hub

import (
	"encoding/json"
	"testing"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/gorilla/websocket"
)

// FuzzCommand: any client frame either closes the socket with 1008 (not a JSON object),
// becomes a valid subscribe/unsubscribe, or gets an error frame that is valid JSON.
func FuzzCommand(f *testing.F) {
	for _, s := range []string{`{"type":"subscribe","room":"general"}`, `{"type":"subscribe","room":"r","since":5}`,
		`{"type":"unsubscribe","room":"r"}`, `{"type":"subscribe","room":"r","since":-1}`, `{"type":"subscribe","room":"r","since":1e3}`,
		`{"type":"subscribe","room":"r","since":"5"}`, `{"type":"subscribe","room":5}`, `{"type":"x"}`, `{}`, `[]`, `null`, ``, `{"type":"auth","token":"t"}`,
		`{"type":"subscribe","room":"bad room"}`, "{\"type\":\"\xff\"}", `{"type":"subscribe","room":"r","since":18446744073709551616}`} {
		f.Add(websocket.TextMessage, []byte(s))
	}
	f.Add(websocket.BinaryMessage, []byte(`{}`))
	f.Fuzz(func(t *testing.T, typ int, data []byte) {
		cmd, code, reason := decodeFrame(typ, data)
		if code != 0 {
			if code != ClosePolicy || reason == "" || cmd != nil {
				t.Fatalf("close %d %q", code, reason)
			}
			return
		}
		req, reason := parseCommand(cmd)
		if reason != "" {
			pm := errorFrame(reason, req.room)
			if pm == nil {
				t.Fatal("no error frame")
			}
			return
		}
		if req.typ != "subscribe" && req.typ != "unsubscribe" {
			t.Fatalf("type %q accepted", req.typ)
		}
		if chat.ValidRoom(req.room) != nil {
			t.Fatalf("room %q accepted", req.room)
		}
		if req.since != nil {
			var n uint64
			if json.Unmarshal(cmd.Since, &n) != nil || n != *req.since {
				t.Fatalf("since %s parsed as %d", cmd.Since, *req.since)
			}
		}
	})
}
