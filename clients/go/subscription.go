package chatclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/gorilla/websocket"
)

// stableAfter is how long a connection must stay up for the backoff to start over.
const stableAfter = 5 * time.Second

// drainTimeout bounds the wait for the server's answer to a Drain's close.
const drainTimeout = 5 * time.Second

// maxFrame bounds one server frame (a message is at most 4,096 code points of text).
const maxFrame = 1 << 20

// Subscription is one room followed over one websocket at a time.
type Subscription struct {
	c    *Client
	room string
	o    subOptions

	handler func(Msg)
	ch      chan<- Msg

	cursor atomic.Uint64 // the seq of the last event delivered (or since, or the first subscribed seq)
	hasCur atomic.Bool
	epoch  atomic.Pointer[string]
	next   int    // the URL to try first; run goroutine only
	fails  int    // unstable connections and failed rounds since the last stable connection; run goroutine only
	tok    string // the token the current connection was made with; run goroutine only

	reconnects int // run goroutine only

	ctx      context.Context // ends at Stop
	cancel   context.CancelFunc
	stopped  chan struct{} // closed by Stop: no more deliveries
	stopOnce sync.Once
	draining atomic.Bool
	closed   chan struct{} // closed when the run goroutine has returned

	mu   sync.Mutex
	conn *websocket.Conn // the connection being read, nil between connections
	err  error           // why the subscription ended

	wmu sync.Mutex // one writer of data frames at a time (Typing)
}

// Subscribe subscribes to room and calls handler with each message, once, in seq order,
// on the subscription's goroutine (it may run before Subscribe returns). A handler that
// blocks holds back only this room: the pusher closes a subscriber that falls too far
// behind (1013), and the subscription resumes where the handler is.
//
// It returns once the server confirmed the subscription; ctx bounds that wait (the URLs
// are tried in turn, with backoff, until one subscribes), not the subscription.
func (c *Client) Subscribe(ctx context.Context, room string, handler func(Msg), opts ...SubscribeOption) (*Subscription, error) {
	if handler == nil {
		return nil, errors.New("chatclient: nil handler")
	}
	return c.subscribe(ctx, room, handler, nil, opts)
}

// SubscribeChan is Subscribe delivering to ch: each send waits for ch (so a full channel
// holds back the room, as a slow handler does) or for the subscription to stop. ch is not
// closed; Closed tells when nothing more will be sent.
func (c *Client) SubscribeChan(ctx context.Context, room string, ch chan<- Msg, opts ...SubscribeOption) (*Subscription, error) {
	if ch == nil {
		return nil, errors.New("chatclient: nil channel")
	}
	return c.subscribe(ctx, room, nil, ch, opts)
}

func (c *Client) subscribe(ctx context.Context, room string, handler func(Msg), ch chan<- Msg, opts []SubscribeOption) (*Subscription, error) {
	if err := chat.ValidRoom(room); err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrInvalidRoom, room, err)
	}
	s := &Subscription{c: c, room: room, handler: handler, ch: ch, stopped: make(chan struct{}), closed: make(chan struct{})}
	s.o.maxReconnects = -1
	for _, opt := range opts {
		opt(&s.o)
	}
	if s.o.since != nil {
		s.cursor.Store(*s.o.since)
		s.hasCur.Store(true)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := c.add(s); err != nil {
		s.cancel()
		return nil, err
	}
	// The first connection: bounded by ctx (and ended by a Stop meanwhile).
	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	conn, err := s.connect(cctx)
	stop()
	cancel()
	if err != nil {
		c.remove(s)
		s.cancel()
		if s.isStopped() { // Client.Close meanwhile
			err = ErrClosed
		}
		return nil, fmt.Errorf("chatclient: subscribe %s: %w", room, err)
	}
	go s.run(conn)
	return s, nil
}

// Room is the subscription's room.
func (s *Subscription) Room() string { return s.room }

// LastSeq is the subscription's cursor: the seq of the last message (or change) delivered,
// else the Since it started from, else the stream's seq when it first subscribed. A
// reconnection resumes after it; a later Subscribe can resume from it with Since.
func (s *Subscription) LastSeq() uint64 { return s.cursor.Load() }

// Epoch is the stream epoch the server named in the latest "subscribed" frame.
func (s *Subscription) Epoch() string {
	if e := s.epoch.Load(); e != nil {
		return *e
	}
	return ""
}

// Stop ends the subscription now: its websocket is closed (1000), a call of the handler
// under way finishes, and no other follows. It does not wait (Closed tells when it is
// done), so a handler may call it.
func (s *Subscription) Stop() {
	s.stopOnce.Do(func() {
		close(s.stopped)
		s.cancel()
		s.mu.Lock()
		conn := s.conn
		s.mu.Unlock()
		if conn != nil {
			sendClose(conn)
			_ = conn.Close()
		}
	})
}

// Drain ends the subscription after what the server already sent: it closes the websocket
// (1000) and goes on delivering until the server's close answers it; after 5 seconds it
// stops (as Stop). It does not wait (Closed tells when it is done).
func (s *Subscription) Drain() {
	if !s.draining.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(drainTimeout, s.Stop)
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn == nil {
		s.Stop() // between connections: nothing is in flight
		return
	}
	sendClose(conn)
}

// Typing tells the room's other subscribers that opted in to presence that this one is
// typing ({"type":"typing","room"} on the current connection). The server forwards at
// most one every 2 s per subscription and drops the rest; it forwards none of an
// anonymous subscription. ErrNotConnected between connections.
func (s *Subscription) Typing() error {
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn == nil || s.isStopped() {
		return ErrNotConnected
	}
	b, _ := json.Marshal(struct {
		Type string `json:"type"`
		Room string `json:"room"`
	}{"typing", s.room})
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("chatclient: typing: %w", err)
	}
	return nil
}

func sendClose(conn *websocket.Conn) {
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(time.Second))
}

// Closed is closed when the subscription has ended and its handler will not be called
// again.
func (s *Subscription) Closed() <-chan struct{} { return s.closed }

// Err is why the subscription ended, once Closed is: nil after Stop, Drain or
// Client.Close; otherwise an error wrapping ErrUnauthorized, ErrForbidden, ErrRejected or
// ErrConnectionLost.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Subscription) isStopped() bool {
	select {
	case <-s.stopped:
		return true
	default:
		return false
	}
}

func (s *Subscription) event(e Event) {
	if s.o.onEvent != nil {
		s.o.onEvent(e)
	}
}

// run reads conn, then reconnects and reads again, until the subscription stops or cannot
// go on.
func (s *Subscription) run(conn *websocket.Conn) {
	defer close(s.closed)
	defer s.c.remove(s)
	defer s.cancel()
	for {
		up := time.Now()
		url, code, err := s.read(conn)
		if time.Since(up) >= stableAfter {
			s.fails = 0
		} else {
			s.fails++ // a connection that keeps ending at once backs off too
		}
		if s.isStopped() || s.draining.Load() {
			return
		}
		s.event(Event{Kind: Disconnected, URL: url, Code: code, Err: err})
		if errors.Is(err, ErrRejected) {
			s.end(err)
			return
		}
		if s.o.maxReconnects >= 0 && s.reconnects >= s.o.maxReconnects {
			s.end(fmt.Errorf("%w: %w", ErrConnectionLost, err))
			return
		}
		s.reconnects++
		if code == websocket.CloseServiceRestart {
			s.next = (s.next + 1) % len(s.c.urls) // that pusher is going away: start with the next one
		}
		if code == 4401 || code == 4403 {
			var ce *CloseError
			errors.As(err, &ce)
			if err := s.refreshAfter(s.ctx, &authError{code: code, reason: ce.Text}, s.tok); err != nil {
				s.end(err)
				return
			}
		}
		if !sleep(s.ctx, s.c.delay(s.fails)) {
			return
		}
		conn, err = s.connect(s.ctx)
		if err != nil {
			if s.ctx.Err() == nil {
				s.end(err)
			}
			return
		}
	}
}

func (s *Subscription) end(err error) {
	s.mu.Lock()
	s.err = fmt.Errorf("chatclient: subscription %s: %w", s.room, err)
	s.mu.Unlock()
	s.Stop()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
