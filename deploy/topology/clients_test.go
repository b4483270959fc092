package topology_test

// Clients of the topology, all through nginx: posters that retry with the same
// Idempotency-Key until acknowledged, and websocket subscribers that resume with
// since=<last seq> whenever their socket ends. They record what the checks in
// scenario_test.go count.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chattest"
	"github.com/gorilla/websocket"
)

type ack struct {
	id, room string
	seq      uint64
}

// load posts to its rooms through nginx at a steady pace, each post retried with the
// same Idempotency-Key after a 502/503/504 or a network error until it gets its 201.
type load struct {
	t      *testing.T
	base   string
	prefix string
	client *http.Client

	mu       sync.Mutex
	acks     []ack
	statuses map[int]int // failed attempts by status (0: network error)
	// longestRetry is the longest time one post took from its first failed attempt to
	// its 201: how long clients saw the service unavailable.
	longestRetry time.Duration
	lastAck      time.Time
	longestPause time.Duration // longest time between two consecutive acks

	stop chan struct{}
	wg   sync.WaitGroup
}

func newLoad(t *testing.T, base, prefix string) *load {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	t.Cleanup(tr.CloseIdleConnections)
	return &load{t: t, base: base, prefix: prefix, client: &http.Client{Transport: tr, Timeout: 15 * time.Second},
		statuses: map[int]int{}, stop: make(chan struct{})}
}

func (l *load) start(rooms []string, every time.Duration) {
	for _, room := range rooms {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				if _, ok := l.post(room, fmt.Sprintf("%s-%d", room, i)); !ok {
					return
				}
			}
		}()
	}
}

// halt stops the posters after their current post is acknowledged.
func (l *load) halt() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) post(room, key string) (ack, bool) {
	body := `{"name":"load","message":"` + key + `"}`
	start := time.Now()
	var firstFail time.Time
	for attempt := 0; ; attempt++ {
		if time.Since(start) > 45*time.Second {
			l.t.Errorf("%s: not acknowledged within 45s", key)
			return ack{}, false
		}
		if attempt > 0 {
			time.Sleep(25 * time.Millisecond) // client back-off
		}
		req, _ := http.NewRequest(http.MethodPost, l.base+"/rooms/"+room+"/messages", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := l.client.Do(req)
		var data []byte
		if err == nil {
			data, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		status := 0
		if err == nil {
			status = resp.StatusCode
		}
		switch status {
		case 0, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			l.mu.Lock()
			l.statuses[status]++
			l.mu.Unlock()
			if firstFail.IsZero() {
				firstFail = time.Now()
			}
			continue
		case http.StatusCreated:
		default:
			l.t.Errorf("%s: POST answered %d %s", key, status, data)
			return ack{}, false
		}
		var m struct {
			ID, Room, Message string
			Seq               uint64
		}
		if err := json.Unmarshal(data, &m); err != nil || m.ID != key || m.Room != room || m.Message != key || m.Seq == 0 {
			l.t.Errorf("%s: 201 with body %s (%v)", key, data, err)
			return ack{}, false
		}
		a := ack{id: key, room: room, seq: m.Seq}
		now := time.Now()
		l.mu.Lock()
		l.acks = append(l.acks, a)
		if !l.lastAck.IsZero() {
			l.longestPause = max(l.longestPause, now.Sub(l.lastAck))
		}
		l.lastAck = now
		if !firstFail.IsZero() {
			l.longestRetry = max(l.longestRetry, now.Sub(firstFail))
		}
		l.mu.Unlock()
		return a, true
	}
}

func (l *load) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

func (l *load) snapshot() []ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ack(nil), l.acks...)
}

// failures is "502=3 503=10 neterr=2" (empty when none).
func (l *load) failures() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for _, code := range []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, 0} {
		if n := l.statuses[code]; n > 0 {
			name := strconv.Itoa(code)
			if code == 0 {
				name = "neterr"
			}
			parts = append(parts, fmt.Sprintf("%s=%d", name, n))
		}
	}
	return strings.Join(parts, " ")
}

// waitMore waits until n more posts than now are acknowledged.
func (l *load) waitMore(n int, timeout time.Duration) {
	l.t.Helper()
	want := l.acked() + n
	chattest.Eventually(l.t, timeout, func() bool { return l.acked() >= want }, "acknowledged %d posts, want %d", l.acked(), want)
}

// socketEnd is how and when a subscriber's socket ended.
type socketEnd struct {
	at   time.Time
	code int // websocket close code; 1006 when the connection dropped without one
}

// subscriber follows one room through nginx from seq 0, reconnecting with
// since=<last seq seen> whenever its socket ends.
type subscriber struct {
	t     *testing.T
	name  string
	room  string
	wsURL string

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	seqs        []uint64
	ids         map[uint64]string
	last        uint64
	dups        int
	disorder    int
	wrongRoom   int
	connects    []time.Time
	ends        []socketEnd
	rejected    map[int]int // handshakes answered with an error status (draining pusher, no upstream)
	dialErr     error       // the last failed (re)connection attempt
	dupInfo     []string    // what each duplicate was
	resumedFrom uint64      // since of the current connection
}

func startSubscriber(t *testing.T, base, name, room string) *subscriber {
	ctx, cancel := context.WithCancel(context.Background())
	s := &subscriber{t: t, name: name, room: room, wsURL: "ws" + strings.TrimPrefix(base, "http") + "/ws",
		ctx: ctx, cancel: cancel, done: make(chan struct{}), ids: map[uint64]string{}, rejected: map[int]int{}}
	ready := make(chan struct{})
	go s.run(ready)
	t.Cleanup(s.close)
	select {
	case <-ready:
	case <-s.done:
		t.Fatalf("%s: did not subscribe", name)
	}
	return s
}

func (s *subscriber) close() {
	s.cancel()
	<-s.done
}

func (s *subscriber) run(ready chan struct{}) {
	defer close(s.done)
	for s.ctx.Err() == nil {
		conn, err := s.dial()
		if err != nil {
			if s.ctx.Err() == nil {
				s.t.Errorf("%s: %v", s.name, err)
			}
			return
		}
		if ready != nil {
			close(ready)
			ready = nil
		}
		stop := context.AfterFunc(s.ctx, func() { conn.Close() })
		s.read(conn)
		stop()
		conn.Close()
	}
}

func (s *subscriber) dial() (*websocket.Conn, error) {
	deadline := time.Now().Add(30 * time.Second)
	var lastErr error
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		if s.ctx.Err() != nil {
			return nil, s.ctx.Err()
		}
		if attempt > 0 {
			time.Sleep(50 * time.Millisecond) // reconnect back-off
		}
		s.mu.Lock()
		since := s.last
		s.mu.Unlock()
		d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
		conn, resp, err := d.DialContext(s.ctx, s.wsURL+"?room="+s.room+"&since="+strconv.FormatUint(since, 10), nil)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			if resp != nil {
				s.mu.Lock()
				s.rejected[resp.StatusCode]++
				s.mu.Unlock()
				err = fmt.Errorf("%w (status %d)", err, resp.StatusCode)
			}
			lastErr = err
			s.setDialErr(err)
			continue
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, data, err := conn.ReadMessage()
		var f struct{ Type, Room string }
		if err != nil || json.Unmarshal(data, &f) != nil || f.Type != "subscribed" || f.Room != s.room {
			conn.Close()
			lastErr = fmt.Errorf("first frame %q: %v", data, err)
			s.setDialErr(lastErr)
			continue
		}
		s.mu.Lock()
		s.connects = append(s.connects, time.Now())
		s.resumedFrom = since
		s.mu.Unlock()
		return conn, nil
	}
	return nil, fmt.Errorf("could not (re)connect within 30s: %v", lastErr)
}

func (s *subscriber) read(conn *websocket.Conn) {
	for {
		_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		_, data, err := conn.ReadMessage()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			end := socketEnd{at: time.Now(), code: websocket.CloseAbnormalClosure}
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				end.code = ce.Code
			}
			s.mu.Lock()
			s.ends = append(s.ends, end)
			s.mu.Unlock()
			return
		}
		var f struct {
			Type, Room, ID string
			Seq            uint64
		}
		if err := json.Unmarshal(data, &f); err != nil || f.Type != "message" {
			s.t.Errorf("%s: unexpected frame %q (%v)", s.name, data, err)
			continue
		}
		s.mu.Lock()
		switch {
		case f.Room != s.room:
			s.wrongRoom++
		case f.Seq <= s.last:
			if _, seen := s.ids[f.Seq]; seen {
				s.dups++
				s.dupInfo = append(s.dupInfo, fmt.Sprintf("seq %d on connection %d (resumed with since=%d), last seen %d",
					f.Seq, len(s.connects), s.resumedFrom, s.last))
			} else {
				s.disorder++
			}
		default:
			s.last = f.Seq
			s.seqs = append(s.seqs, f.Seq)
			s.ids[f.Seq] = f.ID
		}
		s.mu.Unlock()
	}
}

func (s *subscriber) lastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// endsSince lists the socket ends at or after t.
func (s *subscriber) endsSince(t time.Time) []socketEnd {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []socketEnd
	for _, e := range s.ends {
		if !e.at.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

// connectedSince is the first (re)connection at or after t (zero: none yet).
func (s *subscriber) connectedSince(t time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.connects {
		if !c.Before(t) {
			return c
		}
	}
	return time.Time{}
}

func (s *subscriber) setDialErr(err error) {
	s.mu.Lock()
	s.dialErr = err
	s.mu.Unlock()
}

// reconnectedSince reports whether the subscriber connected again at or after t, else
// why not (its last dial error) for the test's message.
func (s *subscriber) reconnectedSince(t time.Time) (bool, string) {
	if !s.connectedSince(t).IsZero() {
		return true, ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return false, fmt.Sprint(s.dialErr)
}
