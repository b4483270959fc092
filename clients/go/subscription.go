package chatclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
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

// SubscribeOption configures one subscription.
type SubscribeOption func(*subOptions)

type subOptions struct {
	since         *uint64
	maxReconnects int
	onFrame       func(Frame)
	onSkipped     func(Frame)
	onEvent       func(Event)
	presence      bool
	name          string
}

// Since starts after seq: every message (and change) of the room with a higher seq is
// delivered, however old (the pushers serve old ranges from history). Without it the
// subscription starts live: with the messages after its "subscribed" frame.
func Since(seq uint64) SubscribeOption { return func(o *subOptions) { o.since = &seq } }

// MaxReconnects ends the subscription at its n+1st disconnection instead of reconnecting
// (Err then wraps ErrConnectionLost and the close); 0: at the first. Default: unlimited.
func MaxReconnects(n int) SubscribeOption { return func(o *subOptions) { o.maxReconnects = max(n, 0) } }

// OnFrame handles the frames that are not messages (see Frame). It runs on the
// subscription's goroutine, in arrival order with the message handler's calls; frames
// with a seq come once each, in seq order, like messages.
func OnFrame(f func(Frame)) SubscribeOption { return func(o *subOptions) { o.onFrame = f } }

// OnSkipped sees what the subscription received and did not deliver: a message or change
// whose seq is not above the last one delivered (sent twice, or out of order), one of
// another room, and a frame that is not valid JSON (Type ""). The contract rules these out;
// the load tool counts them to check the servers.
func OnSkipped(f func(Frame)) SubscribeOption { return func(o *subOptions) { o.onSkipped = f } }

// OnEvent sees the subscription's connections come and go (see Event). It runs on the
// subscription's goroutine (for the first connection, on the goroutine calling
// Subscribe). Calling Stop from it ends the subscription instead of reconnecting.
func OnEvent(f func(Event)) SubscribeOption { return func(o *subOptions) { o.onEvent = f } }

// Presence opts the subscription in to the room's presence and typing frames (v1.3,
// docs/contract.md; they come to OnFrame) under name ("": anonymous; with authentication
// on the server uses the token's name instead).
func Presence(name string) SubscribeOption {
	return func(o *subOptions) { o.presence, o.name = true, name }
}

// EventKind says what happened to a subscription's connection.
type EventKind int

const (
	// Connected: the server confirmed the subscription on a new connection.
	Connected EventKind = iota + 1
	// Disconnected: the connection ended (Code: the close code, 1006 when it just
	// dropped); the subscription reconnects unless it is stopping or cannot go on.
	Disconnected
	// ConnectFailed: an attempt to connect failed (Err); the next URL is tried, or the
	// same after a backoff.
	ConnectFailed
)

func (k EventKind) String() string {
	switch k {
	case Connected:
		return "connected"
	case Disconnected:
		return "disconnected"
	case ConnectFailed:
		return "connect failed"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is a change of a subscription's connection.
type Event struct {
	Kind EventKind
	URL  string // the pusher
	// Connected: Resumed says a since was sent (Since, then the cursor), Subscribed what
	// the server answered.
	Resumed    bool
	Since      uint64
	Subscribed Subscribed
	// Disconnected: Code is the close code (1006: no close frame); Err says more.
	Code int
	Err  error
}

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

// connect tries the URLs in turn, starting with s.next, with a backoff between rounds,
// until one subscribes, ctx ends, or the server refuses in a way retrying cannot fix.
func (s *Subscription) connect(ctx context.Context) (*websocket.Conn, error) {
	var last error
	refreshed := false // one fresh token per refusal: a fresh token refused again ends it
	for {
		for k := 0; k < len(s.c.urls); k++ {
			i := (s.next + k) % len(s.c.urls)
			tok, err := s.c.token(ctx)
			if err != nil {
				return nil, err
			}
			conn, err := s.attempt(ctx, s.c.urls[i], tok)
			if err == nil {
				s.next, s.tok = i, tok
				return conn, nil
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
			}
			var ae *authError
			switch {
			case errors.As(err, &ae):
				if refreshed {
					return nil, ae.sentinel()
				}
				if err := s.refreshAfter(ctx, ae, tok); err != nil {
					return nil, err
				}
				refreshed = true
				k-- // the same URL with the new token
				continue
			case errors.Is(err, ErrRejected):
				return nil, err
			}
			last = err
			s.event(Event{Kind: ConnectFailed, URL: s.c.urls[i], Err: err})
		}
		if !sleep(ctx, s.c.delay(s.fails)) {
			return nil, fmt.Errorf("%w (last attempt: %v)", ctx.Err(), last)
		}
		s.fails++
	}
}

// refreshAfter gets a token other than refused after a refusal (HTTP 401/403, close
// 4401/4403), or returns the error the subscription ends with.
func (s *Subscription) refreshAfter(ctx context.Context, refusal *authError, refused string) error {
	if _, ok := s.c.refresh(ctx, refused); ok {
		return nil
	}
	return refusal.sentinel()
}

// authError is a refused token: HTTP 401/403, close 4401/4403 or a "forbidden" frame.
type authError struct {
	code   int
	reason string
}

func (e *authError) Error() string { return fmt.Sprintf("refused (%d): %s", e.code, e.reason) }

func (e *authError) sentinel() error {
	if e.code == http.StatusForbidden || e.code == 4403 {
		return fmt.Errorf("%w: %s", ErrForbidden, e.reason)
	}
	return fmt.Errorf("%w: %s", ErrUnauthorized, e.reason)
}

// attempt makes one connection to u and waits for its "subscribed" frame.
func (s *Subscription) attempt(ctx context.Context, u, tok string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.c.o.handshakeTimeout)
	defer cancel()
	pu, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	q := pu.Query()
	q.Set("room", s.room)
	if s.o.presence {
		q.Set("presence", "1")
		if s.o.name != "" {
			q.Set("name", s.o.name)
		}
	}
	resumed := s.hasCur.Load()
	since := s.cursor.Load()
	if resumed {
		q.Set("since", strconv.FormatUint(since, 10))
	}
	pu.RawQuery = q.Encode()
	var h http.Header
	if tok != "" {
		h = http.Header{"Authorization": {"Bearer " + tok}}
	}
	d := websocket.Dialer{NetDialContext: s.c.o.dial, HandshakeTimeout: s.c.o.handshakeTimeout,
		ReadBufferSize: 4096, WriteBufferSize: 512}
	conn, resp, err := d.DialContext(ctx, pu.String(), h)
	if err != nil {
		if resp == nil {
			return nil, fmt.Errorf("dial %s: %w", u, err)
		}
		he := &HTTPError{Status: resp.StatusCode, Reason: errorReason(resp)}
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return nil, &authError{code: resp.StatusCode, reason: he.Reason}
		case http.StatusBadRequest:
			return nil, fmt.Errorf("%w: %s: %w", ErrRejected, u, he)
		}
		return nil, fmt.Errorf("%s: %w", u, he)
	}
	conn.SetReadLimit(maxFrame)
	// The first frame is the subscription's answer.
	deadline, _ := ctx.Deadline()
	_ = conn.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	_, data, err := conn.ReadMessage()
	stop()
	if err != nil {
		conn.Close()
		var ce *websocket.CloseError
		if errors.As(err, &ce) && (ce.Code == 4401 || ce.Code == 4403) {
			return nil, &authError{code: ce.Code, reason: ce.Text}
		}
		return nil, fmt.Errorf("%s: waiting for subscribed: %w", u, err)
	}
	f, ok := decodeFrame(data)
	switch {
	case ok && f.Type == "subscribed" && f.Room == s.room:
	case ok && f.Type == "error" && f.Error == "forbidden":
		conn.Close()
		return nil, &authError{code: http.StatusForbidden, reason: "room " + s.room + " not allowed"}
	case ok && f.Type == "error":
		// The room was refused on this pusher (e.g. too many rooms): another, or later.
		conn.Close()
		return nil, fmt.Errorf("%s: subscribe refused: %s", u, f.Error)
	default:
		conn.Close()
		return nil, fmt.Errorf("%s: first frame %.100q, want subscribed to %s", u, data, s.room)
	}
	if !s.hasCur.Load() {
		s.cursor.Store(f.Seq) // live: a reconnection resumes after the stream's seq at the subscription
		s.hasCur.Store(true)
	}
	epoch := f.Epoch
	s.epoch.Store(&epoch)
	s.mu.Lock()
	if s.isStopped() {
		s.mu.Unlock()
		conn.Close()
		return nil, context.Canceled
	}
	s.conn = conn
	s.mu.Unlock()
	if s.draining.Load() { // Drain while connecting
		sendClose(conn)
	}
	s.event(Event{Kind: Connected, URL: u, Resumed: resumed, Since: since, Subscribed: Subscribed{Seq: f.Seq, Epoch: f.Epoch}})
	return conn, nil
}

func errorReason(resp *http.Response) string {
	defer resp.Body.Close()
	var body struct {
		Error string `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if json.Unmarshal(b, &body) == nil && body.Error != "" {
		return body.Error
	}
	return http.StatusText(resp.StatusCode)
}

// read delivers conn's frames until it ends; it returns the URL it was connected to, the
// close code (1006 without a close frame) and the error.
func (s *Subscription) read(conn *websocket.Conn) (u string, code int, err error) {
	defer func() {
		s.mu.Lock()
		s.conn = nil
		s.mu.Unlock()
		conn.Close()
	}()
	u = s.c.urls[s.next]
	idle := s.c.o.idleTimeout
	extend := func() { _ = conn.SetReadDeadline(time.Now().Add(idle)) }
	conn.SetPingHandler(func(data string) error {
		extend()
		// A failed pong is not this reader's error: a broken connection fails the read.
		_ = conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		return nil
	})
	for {
		extend()
		_, data, err := conn.ReadMessage()
		if err != nil {
			code := websocket.CloseAbnormalClosure
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
				err = &CloseError{Code: ce.Code, Text: ce.Text}
				if code == websocket.ClosePolicyViolation || code == websocket.CloseMessageTooBig {
					err = fmt.Errorf("%w: %w", ErrRejected, err)
				}
			}
			return u, code, err
		}
		if s.isStopped() {
			return u, 0, nil
		}
		s.dispatch(data)
	}
}

// dispatch hands one frame to the handlers.
func (s *Subscription) dispatch(data []byte) {
	f, ok := decodeFrame(data)
	switch {
	case !ok:
		s.skipped(Frame{Data: data})
	case f.Type == "message":
		if f.Room != s.room || f.Seq <= s.cursor.Load() {
			s.skipped(f.frame(data))
			return
		}
		s.cursor.Store(f.Seq)
		s.deliver(f.msg(data))
	case f.ordered():
		if f.Room != s.room || f.Seq <= s.cursor.Load() {
			s.skipped(f.frame(data))
			return
		}
		s.cursor.Store(f.Seq)
		if s.o.onFrame != nil {
			s.o.onFrame(f.frame(data))
		}
	default:
		if f.Type == "subscribed" && f.Room == s.room {
			epoch := f.Epoch
			s.epoch.Store(&epoch)
		}
		if s.o.onFrame != nil {
			s.o.onFrame(f.frame(data))
		}
	}
}

func (s *Subscription) skipped(f Frame) {
	if s.o.onSkipped != nil {
		s.o.onSkipped(f)
	}
}

func (s *Subscription) deliver(m Msg) {
	if s.handler != nil {
		s.handler(m)
		return
	}
	select {
	case s.ch <- m:
	case <-s.stopped:
	}
}
