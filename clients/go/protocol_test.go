package chatclient

// The protocol as the client sees it, against a scripted websocket server: pure units of
// how frames, closes and refusals are handled (the tests against the real services are
// in system_test.go).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// script serves one connection: n counts them from 0.
type script func(t *testing.T, n int, w http.ResponseWriter, r *http.Request)

type fakeServer struct {
	t   *testing.T
	srv *httptest.Server
	url string

	mu   sync.Mutex
	n    int
	reqs []*http.Request
}

func newFake(t *testing.T, s script) *fakeServer {
	t.Helper()
	f := &fakeServer{t: t}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		n := f.n
		f.n++
		f.reqs = append(f.reqs, r)
		f.mu.Unlock()
		s(t, n, w, r)
	}))
	t.Cleanup(f.srv.Close)
	f.url = "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/ws"
	return f
}

func (f *fakeServer) requests() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.reqs...)
}

var upgrader = websocket.Upgrader{}

func upgrade(t *testing.T, w http.ResponseWriter, r *http.Request) *websocket.Conn {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		t.Errorf("upgrade: %v", err)
		return nil
	}
	return conn
}

func send(conn *websocket.Conn, frames ...string) {
	for _, f := range frames {
		_ = conn.WriteMessage(websocket.TextMessage, []byte(f))
	}
}

func closeWith(conn *websocket.Conn, code int, text string) {
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
	conn.Close()
}

// hold reads until the client goes (answering its close).
func hold(conn *websocket.Conn) {
	for {
		if _, _, err := conn.ReadMessage(); err != nil {
			conn.Close()
			return
		}
	}
}

func msg(room string, seq int) string {
	return fmt.Sprintf(`{"type":"message","id":"m%d","room":%q,"name":"n","message":"text %d","sent_at":"2026-12-04T12:00:00.123Z","seq":%d}`,
		seq, room, seq, seq)
}

// recorder collects what a subscription hands out.
type recorder struct {
	mu      sync.Mutex
	msgs    []Msg
	frames  []Frame
	skipped []Frame
	events  []Event
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) handler(m Msg) { r.mu.Lock(); r.msgs = append(r.msgs, m); r.mu.Unlock(); r.poke() }

func (r *recorder) opts() []SubscribeOption {
	return []SubscribeOption{
		OnFrame(func(f Frame) { r.mu.Lock(); r.frames = append(r.frames, f); r.mu.Unlock(); r.poke() }),
		OnSkipped(func(f Frame) { r.mu.Lock(); r.skipped = append(r.skipped, f); r.mu.Unlock(); r.poke() }),
		OnEvent(func(e Event) { r.mu.Lock(); r.events = append(r.events, e); r.mu.Unlock(); r.poke() }),
	}
}

// wait waits until cond holds (checked under r.mu) or fails after 10s.
func (r *recorder) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("waiting for %s: msgs %v, frames %v, skipped %v, events %v", what, seqs(r.msgs), r.frames, r.skipped, r.events)
		}
	}
}

func seqs(ms []Msg) []uint64 {
	var out []uint64
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

func fastClient(t *testing.T, urls []string, opts ...Option) *Client {
	t.Helper()
	c, err := New(urls, append([]Option{WithBackoff(5*time.Millisecond, 50*time.Millisecond), WithHandshakeTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestFramesOnceInOrder: messages and changes (frames with a seq) are delivered once each
// in seq order and move the cursor; what is sent twice, out of order, for another room or
// is not JSON is skipped (and shown to OnSkipped); frames without a seq go to OnFrame; a
// 1012 close resumes with since = the last seq delivered.
func TestFramesOnceInOrder(t *testing.T) {
	f := newFake(t, func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
		conn := upgrade(t, w, r)
		if conn == nil {
			return
		}
		switch n {
		case 0:
			send(conn, `{"type":"subscribed","room":"r","seq":9,"epoch":"e1"}`,
				msg("r", 10), msg("r", 10),
				`{"type":"edited","room":"r","id":"m10","seq":11,"message":"new","edited_at":"2026-12-04T12:00:01.000Z"}`,
				`{"type":"typing","room":"r","name":"ann"}`,
				msg("r", 9), `hello`, msg("other", 30), `{"type":"error","error":"rate limited"}`,
				`{"type":"message","id":"m12","room":"r","name":"","message":"","sent_at":"2026-12-04T12:00:00.123Z","edited_at":"2026-12-04T12:00:02.000Z","deleted":true,"reactions":{"👍":2},"seq":12}`,
				`{"type":"edited","room":"r","id":"m10","seq":11,"message":"again"}`)
			closeWith(conn, websocket.CloseServiceRestart, "restarting")
		default:
			send(conn, `{"type":"subscribed","room":"r","seq":12,"epoch":"e1"}`, msg("r", 12), msg("r", 13))
			hold(conn)
		}
	})
	rec := newRecorder()
	c := fastClient(t, []string{f.url})
	sub, err := c.Subscribe(ctx10(t), "r", rec.handler, rec.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "seq 13", func() bool { return len(rec.msgs) == 3 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := fmt.Sprint(seqs(rec.msgs)); got != "[10 12 13]" {
		t.Errorf("delivered %s, want [10 12 13]", got)
	}
	m := rec.msgs[0]
	if m.ID != "m10" || m.Room != "r" || m.Name != "n" || m.Message.Message != "text 10" ||
		m.SentAt != time.Date(2026, 12, 4, 12, 0, 0, 123e6, time.UTC) || string(m.Raw) != msg("r", 10) {
		t.Errorf("message decoded as %+v", m)
	}
	if d := rec.msgs[1]; !d.Deleted || d.EditedAt.IsZero() || !strings.Contains(string(d.Raw), `"reactions":{"👍":2}`) {
		t.Errorf("a message in its current state decoded as %+v", d)
	}
	var frames []string
	for _, fr := range rec.frames {
		frames = append(frames, fmt.Sprintf("%s/%d", fr.Type, fr.Seq))
	}
	if got := strings.Join(frames, " "); got != "edited/11 typing/0 error/0" {
		t.Errorf("frames %s, want edited/11 typing/0 error/0", got)
	}
	var skipped []string
	for _, fr := range rec.skipped {
		skipped = append(skipped, fmt.Sprintf("%s/%s/%d", fr.Type, fr.Room, fr.Seq))
	}
	if got := strings.Join(skipped, " "); got != "message/r/10 message/r/9 //0 message/other/30 edited/r/11 message/r/12" {
		t.Errorf("skipped %s", got)
	}
	var events []string
	for _, e := range rec.events {
		events = append(events, fmt.Sprintf("%s:%v:%d:%d", e.Kind, e.Resumed, e.Since, e.Code))
	}
	if got := strings.Join(events, " "); got != "connected:false:0:0 disconnected:false:0:1012 connected:true:12:0" {
		t.Errorf("events %s", got)
	}
	reqs := f.requests()
	if len(reqs) != 2 || reqs[0].URL.Query().Has("since") || reqs[1].URL.Query().Get("since") != "12" || reqs[1].URL.Query().Get("room") != "r" {
		t.Errorf("requests %v", reqs)
	}
	if sub.LastSeq() != 13 || sub.Epoch() != "e1" {
		t.Errorf("LastSeq %d, Epoch %q", sub.LastSeq(), sub.Epoch())
	}
}

// TestLiveResumesAfterSubscribedSeq: a subscription without Since that loses its
// connection before any message resumes after the stream's seq of its subscribed frame
// (nothing published meanwhile is missed); one with Since(0) sends since=0.
func TestLiveResumesAfterSubscribedSeq(t *testing.T) {
	f := newFake(t, func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
		conn := upgrade(t, w, r)
		if conn == nil {
			return
		}
		send(conn, `{"type":"subscribed","room":"r","seq":42,"epoch":"e"}`)
		if n == 0 {
			closeWith(conn, websocket.CloseTryAgainLater, "too slow")
			return
		}
		hold(conn)
	})
	rec := newRecorder()
	c := fastClient(t, []string{f.url})
	sub, err := c.Subscribe(ctx10(t), "r", rec.handler, rec.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "a second connection", func() bool { return len(rec.events) == 3 })
	if got := f.requests()[1].URL.Query().Get("since"); got != "42" || sub.LastSeq() != 42 {
		t.Errorf("resumed with since=%q, LastSeq %d; want 42", got, sub.LastSeq())
	}
	if e := rec.events[1]; e.Kind != Disconnected || e.Code != 1013 {
		t.Errorf("event %+v, want disconnected 1013", e)
	}
	if _, err := c.Subscribe(ctx10(t), "r", func(Msg) {}, Since(0)); err != nil {
		t.Fatal(err)
	}
	if got := f.requests()[2].URL.Query(); got.Get("since") != "0" {
		t.Errorf("Since(0) sent %v", got)
	}
}

// TestTokenRefresh: the token goes in the Authorization header; a 401 at the upgrade and a
// 4401 close (expired) ask the token function again and connect with the new token,
// resuming with since; a token function with nothing new ends the subscription with
// ErrUnauthorized.
func TestTokenRefresh(t *testing.T) {
	f := newFake(t, func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Authorization") {
		case "Bearer t1":
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"token expired"}`))
		case "Bearer t2":
			conn := upgrade(t, w, r)
			send(conn, `{"type":"subscribed","room":"r","seq":1}`, msg("r", 2))
			closeWith(conn, 4401, "token expired")
		case "Bearer t3":
			conn := upgrade(t, w, r)
			send(conn, `{"type":"subscribed","room":"r","seq":2}`, msg("r", 3))
			closeWith(conn, 4401, "token expired")
		default:
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	var mu sync.Mutex
	calls := 0
	tokens := func(ctx context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return fmt.Sprintf("t%d", min(calls, 3)), nil // t3 stays the last one
	}
	rec := newRecorder()
	c := fastClient(t, []string{f.url}, WithToken(tokens))
	sub, err := c.Subscribe(ctx10(t), "r", rec.handler, rec.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub.Closed():
	case <-time.After(10 * time.Second):
		t.Fatal("the subscription did not end when the token function had nothing new")
	}
	if err := sub.Err(); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "token expired") {
		t.Errorf("Err = %v, want ErrUnauthorized (token expired)", err)
	}
	if got := fmt.Sprint(seqs(rec.msgs)); got != "[2 3]" {
		t.Errorf("delivered %s", got)
	}
	reqs := f.requests()
	if len(reqs) != 3 || reqs[2].URL.Query().Get("since") != "2" {
		t.Errorf("%d requests; the third since=%q", len(reqs), reqs[len(reqs)-1].URL.Query().Get("since"))
	}

	// No token function: a refused upgrade fails Subscribe.
	_, err = fastClient(t, []string{f.url}).Subscribe(ctx10(t), "r", rec.handler)
	if !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Subscribe without a token: %v, want ErrUnauthorized", err)
	}
}

// TestForbidden: a 403 at the upgrade, a 4403 close and a "forbidden" error frame all mean
// the token does not allow the room: with no other token, ErrForbidden.
func TestForbidden(t *testing.T) {
	for name, refuse := range map[string]func(w http.ResponseWriter, r *http.Request){
		"403": func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":"room r not allowed"}`, http.StatusForbidden)
		},
		"4403": func(w http.ResponseWriter, r *http.Request) {
			closeWith(upgrade(t, w, r), 4403, "room r not allowed")
		},
		"frame": func(w http.ResponseWriter, r *http.Request) {
			conn := upgrade(t, w, r)
			send(conn, `{"type":"error","error":"forbidden","room":"r"}`)
			hold(conn)
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFake(t, func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) { refuse(w, r) })
			calls := 0
			c := fastClient(t, []string{f.url}, WithToken(func(context.Context) (string, error) {
				calls++
				return fmt.Sprint("token-", calls), nil // always a new one: refused twice ends it
			}))
			_, err := c.Subscribe(ctx10(t), "r", func(Msg) {})
			if !errors.Is(err, ErrForbidden) {
				t.Errorf("Subscribe: %v, want ErrForbidden", err)
			}
			if calls != 2 || len(f.requests()) != 2 {
				t.Errorf("%d token calls, %d requests: want one refresh", calls, len(f.requests()))
			}
		})
	}
}

// TestRejected: a 400 at the upgrade fails Subscribe at once; a 1008 close ends the
// subscription (both would be rejected again).
func TestRejected(t *testing.T) {
	f := newFake(t, func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("room") == "bad" {
			http.Error(w, `{"error":"room: invalid"}`, http.StatusBadRequest)
			return
		}
		conn := upgrade(t, w, r)
		send(conn, `{"type":"subscribed","room":"r","seq":1}`)
		closeWith(conn, websocket.ClosePolicyViolation, "frames must be JSON objects")
	})
	c := fastClient(t, []string{f.url})
	if _, err := c.Subscribe(ctx10(t), "bad", func(Msg) {}); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "room: invalid") {
		t.Errorf("400: %v, want ErrRejected", err)
	}
	sub, err := c.Subscribe(ctx10(t), "r", func(Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	<-sub.Closed()
	var ce *CloseError
	if err := sub.Err(); !errors.Is(err, ErrRejected) || !errors.As(err, &ce) || ce.Code != 1008 {
		t.Errorf("after 1008: %v", err)
	}
	if _, err := c.Subscribe(ctx10(t), "no/slash", func(Msg) {}); !errors.Is(err, ErrInvalidRoom) {
		t.Errorf("invalid room: %v", err)
	}
}

// TestURLsInTurn: a pusher that is down, or refuses the room, is passed over for the next
// URL; when none subscribes, ctx bounds Subscribe and its error tells the last attempt.
func TestURLsInTurn(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := "ws" + strings.TrimPrefix(down.URL, "http")
	down.Close()
	full := newFake(t, func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
		conn := upgrade(t, w, r)
		send(conn, `{"type":"error","error":"too many rooms on this server, try again later","room":"r"}`)
		hold(conn)
	})
	good := newFake(t, func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
		conn := upgrade(t, w, r)
		send(conn, `{"type":"subscribed","room":"r","seq":5}`, msg("r", 6))
		hold(conn)
	})
	rec := newRecorder()
	c := fastClient(t, []string{downURL, full.url, strings.TrimSuffix(strings.Replace(good.url, "ws://", "http://", 1), "/ws")})
	if _, err := c.Subscribe(ctx10(t), "r", rec.handler, rec.opts()...); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "seq 6", func() bool { return len(rec.msgs) == 1 })
	rec.mu.Lock()
	var kinds []string
	for _, e := range rec.events {
		kinds = append(kinds, e.Kind.String())
	}
	rec.mu.Unlock()
	if got := strings.Join(kinds, ","); got != "connect failed,connect failed,connected" {
		t.Errorf("events %s", got)
	}
	if p := good.requests()[0].URL.Path; p != "/ws" {
		t.Errorf("an http base URL dialled %s, want /ws", p)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := fastClient(t, []string{downURL, full.url}).Subscribe(ctx, "r", func(Msg) {})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "last attempt") {
		t.Errorf("nothing subscribes: %v", err)
	}
}

// TestStopDrainClose: after Stop no handler call follows (Stop works from the handler and
// unblocks a full channel); Drain delivers what the server sent before answering the
// close; Client.Close stops everything and later Subscribe calls fail with ErrClosed.
func TestStopDrainClose(t *testing.T) {
	release := make(chan struct{})
	f := newFake(t, func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
		conn := upgrade(t, w, r)
		send(conn, fmt.Sprintf(`{"type":"subscribed","room":%q,"seq":0}`, r.URL.Query().Get("room")))
		if r.URL.Query().Get("room") == "drain" {
			<-release
			// Messages already on their way when the client's close arrives.
			send(conn, msg("drain", 1), msg("drain", 2), msg("drain", 3))
			hold(conn)
			return
		}
		for i := 1; i <= 1000; i++ {
			send(conn, msg(r.URL.Query().Get("room"), i))
		}
		hold(conn)
	})
	c := fastClient(t, []string{f.url})

	var calls int
	var sub *Subscription
	ready := make(chan struct{})
	sub, err := c.Subscribe(ctx10(t), "r", func(m Msg) {
		<-ready
		calls++
		if m.Seq == 5 {
			sub.Stop()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	close(ready)
	<-sub.Closed()
	if calls != 5 || sub.Err() != nil {
		t.Errorf("%d calls after a Stop at seq 5 (Err %v)", calls, sub.Err())
	}

	ch := make(chan Msg) // nobody reads
	csub, err := c.SubscribeChan(ctx10(t), "c", ch)
	if err != nil {
		t.Fatal(err)
	}
	csub.Stop()
	select {
	case <-csub.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not unblock a send to a full channel")
	}

	rec := newRecorder()
	dsub, err := c.Subscribe(ctx10(t), "drain", rec.handler)
	if err != nil {
		t.Fatal(err)
	}
	dsub.Drain()
	close(release)
	<-dsub.Closed()
	if got := fmt.Sprint(seqs(rec.msgs)); got != "[1 2 3]" || dsub.Err() != nil {
		t.Errorf("drained: %s (Err %v), want [1 2 3]", got, dsub.Err())
	}

	live, err := c.Subscribe(ctx10(t), "x", func(Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	<-live.Closed()
	if _, err := c.Subscribe(ctx10(t), "x", func(Msg) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close: %v", err)
	}
	if err := c.Drain(ctx10(t)); err != nil {
		t.Errorf("Drain after Close: %v", err)
	}
}

func TestNew(t *testing.T) {
	for _, bad := range [][]string{nil, {"ftp://h/ws"}, {"ws:///ws"}, {"://"}} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
	if _, err := New([]string{"ws://h"}, WithBackoff(time.Second, time.Millisecond)); err == nil {
		t.Error("WithBackoff(max < min) accepted")
	}
	c, err := New([]string{"http://h:8080", "https://h/", "ws://h:1/custom/ws?x=1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.urls, " "); got != "ws://h:8080/ws wss://h/ws ws://h:1/custom/ws?x=1" {
		t.Errorf("urls %s", got)
	}
	for n := range 20 {
		if d := c.delay(n); d < c.o.minDelay/2 || d > c.o.maxDelay {
			t.Errorf("delay(%d) = %v", n, d)
		}
	}
}

// TestMaxReconnects: MaxReconnects(0) ends the subscription at its first disconnection,
// with the close in its error, after the Disconnected event.
func TestMaxReconnects(t *testing.T) {
	f := newFake(t, func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
		conn := upgrade(t, w, r)
		send(conn, `{"type":"subscribed","room":"r","seq":1}`, msg("r", 2))
		closeWith(conn, websocket.CloseTryAgainLater, "too slow")
	})
	rec := newRecorder()
	sub, err := fastClient(t, []string{f.url}).Subscribe(ctx10(t), "r", rec.handler, append(rec.opts(), MaxReconnects(0))...)
	if err != nil {
		t.Fatal(err)
	}
	<-sub.Closed()
	var ce *CloseError
	if err := sub.Err(); !errors.Is(err, ErrConnectionLost) || !errors.As(err, &ce) || ce.Code != 1013 {
		t.Errorf("Err = %v, want ErrConnectionLost with close 1013", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.msgs) != 1 || len(rec.events) != 2 || rec.events[1].Code != 1013 || len(f.requests()) != 1 {
		t.Errorf("msgs %v, events %v, %d connections", seqs(rec.msgs), rec.events, len(f.requests()))
	}
}
