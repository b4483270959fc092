package session

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// These tests cover what an idle connection keeps and how it wakes up: one goroutine (the
// reader, parked shallow), a writer started only when there is something to send (a
// frame, a ping, a close), and a read buffer of our own that the reader checks before
// parking.

func idleConfig() testConfig {
	return testConfig{Window: 64, QueueSize: 256, ReplayBatch: 16, PingInterval: time.Hour,
		PongTimeout: time.Hour, WriteTimeout: 5 * time.Second, MaxSubs: 8}
}

// clientFrame is a masked client text frame (mask key 0, so the payload reads as is).
func clientFrame(payload string) []byte { return clientFrameOp(0x81, payload) }

// clientFrameOp is a masked client frame with first byte b0 (FIN, RSV, opcode).
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

// dialRaw opens a websocket whose underlying TCP connection the test can write to directly.
func dialRaw(t *testing.T, wsURL string) (*websocket.Conn, net.Conn) {
	t.Helper()
	u, err := url.Parse(wsURL)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	conn, _, err := websocket.NewClient(nc, u, nil, 1024, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	return conn, nc
}

// Several frames in one TCP write land in the read buffer together: the reader must serve
// them all without waiting for more bytes from the socket.
func TestPipelinedCommands(t *testing.T) {
	_, wsURL := inlineHub(t, idleConfig())
	conn, nc := dialRaw(t, wsURL)
	var batch []byte
	for _, r := range []string{"a", "b", "c"} {
		batch = append(batch, clientFrame(`{"type":"subscribe","room":"`+r+`"}`)...)
	}
	if _, err := nc.Write(batch); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"a", "b", "c"} {
		wantFrame(t, conn, "subscribed", r)
	}
}

// A command larger than the read buffer is read past it.
func TestCommandLargerThanReadBuffer(t *testing.T) {
	_, wsURL := inlineHub(t, idleConfig())
	conn, nc := dialRaw(t, wsURL)
	big := `{"type":"subscribe","room":"big","pad":"` + strings.Repeat("x", 3*288) + `"}` // 288: transport's readBufferSize
	if _, err := nc.Write(append(clientFrame(big), clientFrame(`{"type":"subscribe","room":"after"}`)...)); err != nil {
		t.Fatal(err)
	}
	wantFrame(t, conn, "subscribed", "big")
	wantFrame(t, conn, "subscribed", "after")
}

// An idle client gets pings from a timer-started writer, and a client that stops
// answering them is dropped after PongTimeout.
func TestIdlePingsAndPongTimeout(t *testing.T) {
	cfg := idleConfig()
	cfg.PingInterval, cfg.PongTimeout = 50*time.Millisecond, 300*time.Millisecond
	_, wsURL := inlineHub(t, cfg)

	// Answering (the default ping handler pongs while we read): pings keep coming and the
	// connection outlives several pong timeouts.
	conn := dialSubscribed(t, wsURL, "r")
	pings := make(chan struct{}, 100)
	conn.SetPingHandler(func(data string) error {
		pings <- struct{}{}
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	readErr := make(chan error, 1)
	go func() {
		_, _, err := conn.ReadMessage()
		readErr <- err
	}()
	deadline := time.After(10 * time.Second)
	for n := 0; n < 20; n++ { // 20 pings ≈ 1 s ≈ 3 pong timeouts
		select {
		case <-pings:
		case err := <-readErr:
			t.Fatalf("connection ended after %d pings: %v", n, err)
		case <-deadline:
			t.Fatalf("only %d pings in 10 s", n)
		}
	}

	// Silent (never reads, so never pongs): the server closes the connection.
	_, nc := dialRaw(t, wsURL)
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	for {
		if _, err := nc.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("a client that never answered pings was not dropped")
			}
			break // closed by the server
		}
	}
}

// An idle connection holds no goroutine on Linux (its reader parks it in the idle
// poller), one elsewhere (the reader): the writer exists only while it has work.
func TestIdleConnectionHoldsNoGoroutine(t *testing.T) {
	h, wsURL := inlineHub(t, idleConfig())
	const n = 50
	base := runtime.NumGoroutine()
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		conns[i] = dialSubscribed(t, wsURL, "r") // the subscribed frame started each writer once
	}
	want := base + 1 + 2 // the idle poller, and slack for the test server's own goroutines
	if runtime.GOOS != "linux" {
		want += n // the readers
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines for %d idle connections (base %d), want at most %d", runtime.NumGoroutine(), n, base, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// And they still work: a message reaches every one of them.
	publishRange(h, "r", 1, 1, "hello")
	for _, c := range conns {
		expectSeqs(t, c, 1, 1, "hello")
	}
}

// Pongs, whole, split over writes or between commands, are consumed without disturbing the
// commands around them, and they keep a quiet connection alive (they extend the read
// deadline); a pong that breaks the protocol closes the connection with 1002.
func TestPongsBetweenCommands(t *testing.T) {
	cfg := idleConfig()
	cfg.PongTimeout = 400 * time.Millisecond
	_, wsURL := inlineHub(t, cfg)
	conn, nc := dialRaw(t, wsURL)
	write := func(b []byte) {
		t.Helper()
		if _, err := nc.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	pong := clientFrameOp(0x8a, "keepalive")
	var b []byte
	b = append(b, pong...)
	b = append(b, clientFrame(`{"type":"subscribe","room":"a"}`)...)
	b = append(b, pong...)
	b = append(b, pong...)
	b = append(b, clientFrame(`{"type":"subscribe","room":"b"}`)...)
	write(b)
	wantFrame(t, conn, "subscribed", "a")
	wantFrame(t, conn, "subscribed", "b")

	// Unsolicited pongs, each split in two writes, for three pong timeouts: the
	// connection stays open, and a command after them is served.
	for end := time.Now().Add(3 * cfg.PongTimeout); time.Now().Before(end); {
		write(pong[:3])
		time.Sleep(20 * time.Millisecond)
		write(pong[3:])
		time.Sleep(80 * time.Millisecond)
	}
	write(clientFrame(`{"type":"subscribe","room":"c"}`))
	wantFrame(t, conn, "subscribed", "c")

	// An unmasked pong is a protocol error the library reports.
	write([]byte{0x8a, 0x00})
	wantClose(t, conn, websocket.CloseProtocolError)
}

// A client that floods pings and never reads ends up with its pong replies blocked on a
// full socket. The room's fan-out must not wait behind such a write: another client in the
// room keeps getting messages without a stall.
func TestPingFloodDoesNotStallRoom(t *testing.T) {
	h, wsURL := inlineHub(t, idleConfig())
	good := dialSubscribed(t, wsURL, "r")
	_, bad := dialRaw(t, wsURL+"?room=r")
	ping := clientFrameOp(0x89, strings.Repeat("p", 125))
	flood := bytes.Repeat(ping, 1000)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = bad.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := bad.Write(flood); err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					return // closed by the server
				}
			}
		}
	}()
	_ = good.SetReadDeadline(time.Now().Add(20 * time.Second))
	var worst time.Duration
	for seq := uint64(1); seq <= 150; seq++ {
		start := time.Now()
		publishRange(h, "r", seq, seq, "m")
		expectSeqs(t, good, seq, seq, "m")
		worst = max(worst, time.Since(start))
		time.Sleep(10 * time.Millisecond)
	}
	if worst > 500*time.Millisecond {
		t.Fatalf("a delivery took %v while another client flooded pings", worst)
	}
}
