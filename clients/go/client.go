// Package chatclient is a Go client for the chat pushers' websocket (docs/contract.md,
// WebSocket): it subscribes to rooms and delivers each message exactly once, in seq
// order, across reconnects.
//
//	c, err := chatclient.New([]string{"wss://chat.example/ws"},
//		chatclient.WithToken(func(ctx context.Context) (string, error) { return idp.Token(ctx) }))
//	sub, err := c.Subscribe(ctx, "general", func(m chatclient.Msg) {
//		fmt.Println(m.Seq, m.Name, m.Message.Message)
//	}, chatclient.Since(lastSeenSeq))
//	...
//	sub.Stop() // or c.Close(), or c.Drain(ctx)
//
// Each subscription is its own websocket (GET /ws?room=<room>&since=<cursor>), read by
// its own goroutine, which also runs the handler: a slow handler holds back only its own
// room, and one that falls too far behind is closed by the pusher (1013) and resumes.
// Subscribe returns once the server confirmed the subscription (its "subscribed" frame);
// ctx bounds that, not the subscription, which lasts until Stop, Drain, Client.Close or
// an error that retrying cannot fix (see Subscription.Err).
//
// On any close or network error (1012 pusher restarting, 1013 too slow, 1011, a dropped
// connection, a pusher gone) it reconnects, trying the URLs in turn with exponential
// backoff, and resumes with since = the seq of the last event delivered: nothing is missed
// or delivered twice. A refused token (HTTP 401/403, close 4401/4403) asks the token
// function for a fresh one; without one the subscription ends with ErrUnauthorized or
// ErrForbidden.
//
// Frames: message frames are decoded into Msg (chat.Message). Every other frame is given
// to the OnFrame handler with its raw JSON: the changes of contract v1.2 ("edited",
// "deleted", "reactions" carry a seq: they are ordered and deduplicated with the messages
// and move the cursor), and frame types added later.
package chatclient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"time"
)

// Client holds the pusher URLs and the settings its subscriptions share (token, backoff,
// dialer). It opens no connection itself; each Subscribe does.
type Client struct {
	urls []string
	o    options

	tokMu sync.Mutex // held while the token function runs: concurrent refreshes share it
	tok   string
	hasTk bool

	mu     sync.Mutex
	closed bool
	subs   map[*Subscription]struct{}
}

type options struct {
	token            func(ctx context.Context) (string, error)
	minDelay         time.Duration
	maxDelay         time.Duration
	dial             func(ctx context.Context, network, addr string) (net.Conn, error)
	handshakeTimeout time.Duration
	idleTimeout      time.Duration
}

// Option configures a Client.
type Option func(*options) error

// WithToken sets the function that gives the bearer token (sent as Authorization:
// Bearer). It is called before the first connection and again whenever the server refuses
// the token (HTTP 401/403, close 4401 when it expires, 4403); it must then return another
// token, else the subscriptions end with ErrUnauthorized or ErrForbidden. One call at a
// time: subscriptions refused together share the new token.
func WithToken(f func(ctx context.Context) (string, error)) Option {
	return func(o *options) error {
		if f == nil {
			return errors.New("WithToken: nil function")
		}
		o.token = f
		return nil
	}
}

// WithBackoff sets the reconnect delays: the first wait is min, each round of failed
// attempts (every URL tried) doubles it up to max, each delay a random half to all of it
// (jitter). A connection that stayed up 5 seconds starts over at min. Default 250ms, 30s.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) error {
		if min <= 0 || max < min {
			return fmt.Errorf("WithBackoff(%v, %v): need 0 < min <= max", min, max)
		}
		o.minDelay, o.maxDelay = min, max
		return nil
	}
}

// WithDialer sets how TCP connections are made (e.g. from a given local address).
func WithDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(o *options) error {
		if dial == nil {
			return errors.New("WithDialer: nil function")
		}
		o.dial = dial
		return nil
	}
}

// WithHandshakeTimeout bounds one connection attempt: the TCP connection, the websocket
// upgrade and the server's "subscribed" frame. Default 10s.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("WithHandshakeTimeout(%v): must be > 0", d)
		}
		o.handshakeTimeout = d
		return nil
	}
}

// WithIdleTimeout drops (and resumes) a connection on which nothing arrived, not even a
// ping, for this long. The pushers ping every 25s by default (CHAT_PING_INTERVAL). Default
// 90s.
func WithIdleTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("WithIdleTimeout(%v): must be > 0", d)
		}
		o.idleTimeout = d
		return nil
	}
}

// New makes a client for the pushers at urls, tried in turn: ws:// or wss:// URLs of
// /ws, or http(s):// base URLs (the path /ws is then added). It connects nothing yet.
func New(urls []string, opts ...Option) (*Client, error) {
	c := &Client{subs: map[*Subscription]struct{}{}, o: options{minDelay: 250 * time.Millisecond, maxDelay: 30 * time.Second,
		dial: (&net.Dialer{Timeout: 10 * time.Second}).DialContext, handshakeTimeout: 10 * time.Second, idleTimeout: 90 * time.Second}}
	if len(urls) == 0 {
		return nil, errors.New("chatclient: no pusher URL")
	}
	for _, raw := range urls {
		u, err := wsURL(raw)
		if err != nil {
			return nil, fmt.Errorf("chatclient: %w", err)
		}
		c.urls = append(c.urls, u)
	}
	for _, opt := range opts {
		if err := opt(&c.o); err != nil {
			return nil, fmt.Errorf("chatclient: %w", err)
		}
	}
	return c, nil
}

// wsURL normalizes a pusher URL: http(s) becomes ws(s), an empty path /ws.
func wsURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("pusher URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("pusher URL %q: scheme must be ws, wss, http or https", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("pusher URL %q: no host", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/ws"
	}
	u.Fragment = ""
	return u.String(), nil
}

// Close stops every subscription (as Subscription.Stop) and makes later Subscribe calls
// fail with ErrClosed. It does not wait for the handlers: each subscription's Closed
// channel tells when it is done.
func (c *Client) Close() {
	for _, s := range c.shut() {
		s.Stop()
	}
}

// Drain drains every subscription (as Subscription.Drain), makes later Subscribe calls
// fail with ErrClosed and waits until all of them are done or ctx ends. Do not call it
// from a handler (it would wait for itself).
func (c *Client) Drain(ctx context.Context) error {
	subs := c.shut()
	for _, s := range subs {
		s.Drain()
	}
	for _, s := range subs {
		select {
		case <-s.Closed():
		case <-ctx.Done():
			return fmt.Errorf("chatclient: drain: %w", ctx.Err())
		}
	}
	return nil
}

func (c *Client) shut() []*Subscription {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	subs := make([]*Subscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	return subs
}

func (c *Client) add(s *Subscription) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.subs[s] = struct{}{}
	return nil
}

func (c *Client) remove(s *Subscription) {
	c.mu.Lock()
	delete(c.subs, s)
	c.mu.Unlock()
}

// token is the token to connect with: "" without WithToken; the cached one, or a first
// one from the token function.
func (c *Client) token(ctx context.Context) (string, error) {
	if c.o.token == nil {
		return "", nil
	}
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	if c.hasTk {
		return c.tok, nil
	}
	t, err := c.o.token(ctx)
	if err != nil {
		return "", fmt.Errorf("%w: token function: %w", ErrUnauthorized, err)
	}
	if t == "" {
		return "", fmt.Errorf("%w: the token function gave no token", ErrUnauthorized)
	}
	c.tok, c.hasTk = t, true
	return t, nil
}

// refresh returns a token other than refused: one another subscription already got, or a
// new one from the token function. ok is false when there is none.
func (c *Client) refresh(ctx context.Context, refused string) (tok string, ok bool) {
	if c.o.token == nil {
		return "", false
	}
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	if c.hasTk && c.tok != refused {
		return c.tok, true
	}
	t, err := c.o.token(ctx)
	if err != nil || t == "" || t == refused {
		return "", false
	}
	c.tok, c.hasTk = t, true
	return t, true
}

// delay is the wait before the round of attempts after n failed ones.
func (c *Client) delay(n int) time.Duration {
	d := c.o.minDelay
	for i := 0; i < n && d < c.o.maxDelay; i++ {
		d *= 2
	}
	d = min(d, c.o.maxDelay)
	return d/2 + rand.N(d/2+1)
}
