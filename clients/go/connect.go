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
	"time"

	"github.com/gorilla/websocket"
)

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
