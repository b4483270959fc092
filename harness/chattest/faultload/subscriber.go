package faultload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/gorilla/websocket"
)

// SocketEnd is how and when a subscriber's socket ended.
type SocketEnd struct {
	At   time.Time
	Code int // websocket close code; 1006 when the connection dropped without one
}

// Subscriber follows one room over a websocket from seq 0 (since=0), reconnecting with
// since=<last seq seen> whenever its socket ends, and records what it saw.
type Subscriber struct {
	Name string
	Room string
	t    testing.TB
	url  func() string

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	conn        *websocket.Conn
	seqs        []uint64
	ids         map[uint64]string
	changeSeqs  map[uint64]bool           // change frames seen (issue 11)
	view        map[string]*clientMessage // every message as its frames make it, by id
	last        uint64
	dups        int
	disorder    int
	wrongRoom   int
	connects    []time.Time
	ends        []SocketEnd
	rejected    map[int]int // handshakes answered with an error status
	dialErr     error       // the last failed (re)connection attempt
	dupInfo     []string    // what each duplicate was
	resumedFrom uint64      // since of the current connection
	offline     bool
	parked      chan struct{}
	resume      chan struct{}
}

// StartSubscriber subscribes to room and returns once the first subscription is
// confirmed. url picks the base URL ("http://host:port") for each (re)connection, the
// socket is at /ws; "" means no node is up, which fails the test. The subscriber stops
// when the test ends (or Close).
func StartSubscriber(t testing.TB, name, room string, url func() string) *Subscriber {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Subscriber{Name: name, Room: room, t: t, url: url, ctx: ctx, cancel: cancel, done: make(chan struct{}),
		ids: map[uint64]string{}, changeSeqs: map[uint64]bool{}, view: map[string]*clientMessage{}, rejected: map[int]int{}, parked: make(chan struct{}, 1), resume: make(chan struct{}, 1)}
	ready := make(chan struct{})
	go s.run(ready)
	t.Cleanup(s.Close)
	select {
	case <-ready:
	case <-s.done:
		t.Fatalf("%s: did not subscribe", name)
	}
	return s
}

// Close stops the subscriber and waits for it.
func (s *Subscriber) Close() {
	s.cancel()
	<-s.done
}

func (s *Subscriber) run(ready chan struct{}) {
	defer close(s.done)
	for s.ctx.Err() == nil {
		conn, err := s.dial()
		if err != nil {
			if s.ctx.Err() == nil {
				s.t.Errorf("%s: %v", s.Name, err)
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
		s.mu.Lock()
		off := s.offline
		s.mu.Unlock()
		if off {
			s.parked <- struct{}{}
			select {
			case <-s.resume:
			case <-s.ctx.Done():
				return
			}
		}
	}
}

// dial connects with since=<last seq seen> and reads the subscribed frame.
func (s *Subscriber) dial() (*websocket.Conn, error) {
	deadline := time.Now().Add(30 * time.Second)
	var lastErr error
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		if s.ctx.Err() != nil {
			return nil, s.ctx.Err()
		}
		if attempt > 0 {
			time.Sleep(50 * time.Millisecond) // reconnect back-off
		}
		base := s.url()
		if base == "" {
			return nil, errors.New("no node up")
		}
		s.mu.Lock()
		since := s.last
		s.mu.Unlock()
		url := "ws" + strings.TrimPrefix(base, "http") + "/ws?room=" + s.Room + "&since=" + strconv.FormatUint(since, 10)
		d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
		conn, resp, err := d.DialContext(s.ctx, url, nil)
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
		if err != nil || json.Unmarshal(data, &f) != nil || f.Type != "subscribed" || f.Room != s.Room {
			conn.Close()
			lastErr = fmt.Errorf("first frame %q: %v", data, err)
			s.setDialErr(lastErr)
			continue
		}
		s.mu.Lock()
		s.conn = conn
		s.connects = append(s.connects, time.Now())
		s.resumedFrom = since
		s.mu.Unlock()
		return conn, nil
	}
	return nil, fmt.Errorf("could not (re)connect within 30s: %v", lastErr)
}

func (s *Subscriber) read(conn *websocket.Conn) {
	for {
		_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		_, data, err := conn.ReadMessage()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			end := SocketEnd{At: time.Now(), Code: websocket.CloseAbnormalClosure}
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				end.Code = ce.Code
			}
			s.mu.Lock()
			s.ends = append(s.ends, end)
			s.mu.Unlock()
			return
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			s.t.Errorf("%s: unexpected frame %q (%v)", s.Name, data, err)
			continue
		}
		switch chat.Event(f.Type) {
		case chat.EventEdited, chat.EventDeleted, chat.EventReactions:
		default:
			if f.Type != "message" {
				s.t.Errorf("%s: unexpected frame %q", s.Name, data)
				continue
			}
		}
		s.mu.Lock()
		_, seenChange := s.changeSeqs[f.Seq]
		switch {
		case f.Room != s.Room:
			s.wrongRoom++
		case f.Seq <= s.last:
			if _, seen := s.ids[f.Seq]; seen || seenChange {
				s.dups++
				s.dupInfo = append(s.dupInfo, fmt.Sprintf("seq %d on connection %d (resumed with since=%d), last seen %d",
					f.Seq, len(s.connects), s.resumedFrom, s.last))
			} else {
				s.disorder++
			}
		case f.Type != "message":
			s.last = f.Seq
			s.changeSeqs[f.Seq] = true
			apply(s.view, &f)
		default:
			s.last = f.Seq
			s.seqs = append(s.seqs, f.Seq)
			s.ids[f.Seq] = f.ID
			apply(s.view, &f)
		}
		s.mu.Unlock()
	}
}

// GoOffline closes the socket from the client side and keeps the client away until
// ComeBack. It returns the last seq the client saw.
func (s *Subscriber) GoOffline() uint64 {
	s.t.Helper()
	s.mu.Lock()
	s.offline = true
	conn := s.conn
	s.mu.Unlock()
	conn.Close()
	select {
	case <-s.parked:
	case <-time.After(10 * time.Second):
		s.t.Fatalf("%s: reader did not stop", s.Name)
	}
	return s.LastSeq()
}

// ComeBack lets a client that went offline reconnect (since=<last seq seen>).
func (s *Subscriber) ComeBack() {
	s.mu.Lock()
	s.offline = false
	s.mu.Unlock()
	s.resume <- struct{}{}
}

// LastSeq is the highest seq received.
func (s *Subscriber) LastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Connects is how many times the subscriber connected (1: never reconnected).
func (s *Subscriber) Connects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.connects)
}

// Ends lists how the sockets ended (not counting the ones Close ended).
func (s *Subscriber) Ends() []SocketEnd {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SocketEnd(nil), s.ends...)
}

// CloseCodes lists the close codes of the sockets the server closed with a close frame
// (a dropped connection, 1006, is not one).
func (s *Subscriber) CloseCodes() []int {
	var codes []int
	for _, e := range s.Ends() {
		if e.Code != websocket.CloseAbnormalClosure {
			codes = append(codes, e.Code)
		}
	}
	return codes
}

// EndsSince lists the socket ends at or after t.
func (s *Subscriber) EndsSince(t time.Time) []SocketEnd {
	var out []SocketEnd
	for _, e := range s.Ends() {
		if !e.At.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

// Rejected counts the handshakes answered with an error status, by status.
func (s *Subscriber) Rejected() map[int]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]int, len(s.rejected))
	for code, n := range s.rejected {
		out[code] = n
	}
	return out
}

// ConnectedSince is the first (re)connection at or after t (zero: none yet).
func (s *Subscriber) ConnectedSince(t time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.connects {
		if !c.Before(t) {
			return c
		}
	}
	return time.Time{}
}

func (s *Subscriber) setDialErr(err error) {
	s.mu.Lock()
	s.dialErr = err
	s.mu.Unlock()
}

// ReconnectedSince reports whether the subscriber connected again at or after t, else
// why not (its last dial error) for the test's message.
func (s *Subscriber) ReconnectedSince(t time.Time) (bool, string) {
	if !s.ConnectedSince(t).IsZero() {
		return true, ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return false, fmt.Sprint(s.dialErr)
}
