package session

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"testing"
	"time"

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
			var v map[string]string
			if err := json.Unmarshal(framePayload(t, errorFrame(reason, req.room)), &v); err != nil || v["type"] != "error" || v["error"] != reason {
				t.Fatalf("error frame for %q: %v %v", reason, v, err)
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

// framePayload is the payload of a complete unmasked server text frame.
func framePayload(t *testing.T, b []byte) []byte {
	t.Helper()
	if len(b) < 2 || b[0] != 0x81 || b[1]&0x80 != 0 {
		t.Fatalf("not an unmasked final text frame: % x", b[:min(len(b), 10)])
	}
	n, h := uint64(b[1]), 2
	switch n {
	case 126:
		n, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		n, h = binary.BigEndian.Uint64(b[2:]), 10
	}
	if uint64(len(b)-h) != n {
		t.Fatalf("frame says %d payload bytes, has %d", n, len(b)-h)
	}
	return b[h:]
}

// FuzzClientBytes: whatever bytes a client sends after the handshake (frames, pongs,
// fragments, garbage), the server neither crashes nor hangs: once the client stops
// sending, the server ends the connection.
func FuzzClientBytes(f *testing.F) {
	pong := clientFrameOp(0x8a, "p")
	sub := clientFrame(`{"type":"subscribe","room":"a"}`)
	for _, seed := range [][]byte{
		sub, pong, append(append([]byte{}, pong...), sub...), pong[:3], {0x8a, 0x00}, {0x8a, 0xfe, 0, 200},
		clientFrameOp(0x89, "ping"), clientFrameOp(0x88, ""), clientFrameOp(0x82, "bin"), clientFrameOp(0x01, "frag"),
		append(clientFrameOp(0x01, `{"type":`), clientFrameOp(0x80, `"subscribe","room":"b"}`)...), {0xff, 0xff, 0xff},
	} {
		f.Add(seed)
	}
	cfg := idleConfig()
	cfg.PongTimeout = 5 * time.Second
	_, wsURL := testServer(f, cfg, nil, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, nc := dialRaw(t, wsURL)
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(data); err != nil {
			return // the server closed first
		}
		_ = nc.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, nc); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server still held the connection 10 s after the client stopped sending % x", data[:min(len(data), 32)])
			}
		}
	})
}
