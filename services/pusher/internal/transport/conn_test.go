package transport

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clientFrameOp is a masked client frame with first byte b0 (FIN, RSV, opcode), mask key
// 0 so the payload reads as is.
func clientFrameOp(b0 byte, payload string) []byte {
	var b bytes.Buffer
	b.WriteByte(b0)
	switch n := len(payload); {
	case n < 126:
		b.WriteByte(0x80 | byte(n))
	default:
		b.WriteByte(0x80 | 126)
		_ = binary.Write(&b, binary.BigEndian, uint16(n))
	}
	b.Write([]byte{0, 0, 0, 0})
	b.WriteString(payload)
	return b.Bytes()
}

// upgraded serves one upgrade and returns the server's Conn and the client's raw TCP
// connection (after the handshake).
func upgraded(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	got := make(chan *Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, 5*time.Second)
		if err != nil {
			t.Errorf("upgrade: %v", err)
		}
		got <- c
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse("ws" + strings.TrimPrefix(srv.URL, "http") + "/ws")
	nc, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if _, _, err := websocket.NewClient(nc, u, nil, 1024, 1024); err != nil {
		t.Fatal(err)
	}
	c := <-got
	if c == nil {
		t.FailNow()
	}
	t.Cleanup(func() { c.Close(0, "", nil) })
	return c, nc
}

// The reader's shallow wait (awaitMessage) looks at our read buffer, so the websocket
// library must read through it. gorilla/websocket reuses the hijacked bufio.Reader when it
// is larger than 256 bytes and Upgrader.ReadBufferSize is 0 (server.go, v1.5.3); this
// fails if a release stops doing so (the reader would then wait on the socket while the
// library holds a pipelined frame).
func TestLibraryReadsThroughOurBuffer(t *testing.T) {
	c, nc := upgraded(t)
	if c.s.br == nil {
		t.Fatal("no read buffer of ours")
	}
	two := append(clientFrameOp(0x81, `{"n":1}`), clientFrameOp(0x81, `{"n":2}`)...)
	if _, err := nc.Write(two); err != nil { // one loopback write: both frames arrive together
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, p, err := c.ReadMessage(); err != nil || string(p) != `{"n":1}` {
		t.Fatalf("first message %q %v", p, err)
	}
	if c.s.br.Buffered() == 0 {
		t.Fatal("the second frame is not in our read buffer: the library reads through a buffer of its own")
	}
	if _, p, err := c.ReadMessage(); err != nil || string(p) != `{"n":2}` {
		t.Fatalf("second message %q %v", p, err)
	}
}

func TestPongLen(t *testing.T) {
	pong := clientFrameOp(0x8a, "abc") // 2 + 4 + 3 bytes
	for _, tc := range []struct {
		name string
		b    []byte
		want int
	}{
		{"empty", nil, 0},
		{"first byte", pong[:1], 0},
		{"header", pong[:2], 0},
		{"all but one", pong[:len(pong)-1], 0},
		{"whole", pong, len(pong)},
		{"whole and more", append(append([]byte{}, pong...), clientFrameOp(0x81, "x")...), len(pong)},
		{"empty pong", clientFrameOp(0x8a, ""), 6},
		{"text", clientFrameOp(0x81, "{}"), -1},
		{"ping", clientFrameOp(0x89, ""), -1},
		{"close", clientFrameOp(0x88, ""), -1},
		{"pong without FIN", clientFrameOp(0x0a, ""), -1},
		{"pong with RSV1", clientFrameOp(0xca, ""), -1},
		{"unmasked pong", []byte{0x8a, 0x00}, -1},
		{"pong with a 16-bit length", []byte{0x8a, 0x80 | 126, 0, 200}, -1},
	} {
		if got := pongLen(tc.b); got != tc.want {
			t.Errorf("%s: pongLen = %d, want %d", tc.name, got, tc.want)
		}
	}
}
