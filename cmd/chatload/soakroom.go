package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	chatclient "github.com/chatrt/chat/clients/go"
)

// soakRoom is one room of the soak: created by its first post or subscribe, posted to
// for its life, followed by its clients, then abandoned (never posted to again).
type soakRoom struct {
	name string
	mu   sync.Mutex
	acks []soakAck
}

func (r *soakRoom) snapshot() []soakAck {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.acks)
}

// randomAck is the seq of a random acknowledged message so far (0: none yet).
func (r *soakRoom) randomAck() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.acks) == 0 {
		return 0
	}
	return r.acks[rand.IntN(len(r.acks))].Seq
}

func lastSeq(acks []soakAck) uint64 {
	var last uint64
	for _, a := range acks {
		last = max(last, a.Seq)
	}
	return last
}

// runRoom runs one room: its clients join and leave until the room's life (or the
// phase) ends while one poster posts at the per-room rate; then every client catches up
// to the room's last acknowledged message (resuming if it is away) and its deliveries
// are checked against the acknowledgements.
func (s *soak) runRoom(ctx, phase context.Context, name string, life time.Duration) {
	r := &soakRoom{name: name}
	roomCtx, end := context.WithTimeout(phase, life)
	defer end()
	clients := make([]*soakClient, s.sc.SubsPerRoom())
	var wg sync.WaitGroup
	for k := range clients {
		c := &soakClient{s: s, room: r, idx: s.clientN.Add(1) - 1}
		c.log.Room = name
		c.log.Client = fmt.Sprintf("client-%d", c.idx)
		clients[k] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.churn(roomCtx, life)
		}()
	}
	s.postRoom(ctx, roomCtx, r)
	wg.Wait()
	acks := r.snapshot()
	last := lastSeq(acks)
	deadline := time.Now().Add(s.cfg.Drain)
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.catchUp(ctx, last, deadline)
		}()
	}
	wg.Wait()
	var v verdict
	for _, c := range clients {
		c.mu.Lock()
		v.add(checkLog(acks, last, c.log))
		c.mu.Unlock()
	}
	s.roomDone(r.name, acks, v)
}

// postRoom posts to the room at the per-room rate until roomCtx ends, one post at a
// time (so the room's posts are acknowledged in seq order), sizes drawn from -soak-sizes.
// A post under way when the room ends is still retried until acknowledged (only ctx, the
// soak's own bound, stops it): one given up on might be stored all the same, and its
// delivery would then count as foreign.
func (s *soak) postRoom(ctx, roomCtx context.Context, r *soakRoom) {
	every := time.Duration(float64(time.Second) * float64(s.sc.Rooms) / s.cfg.Rate)
	next := time.Now()
	for i := 0; ; i++ {
		if !sleepUntil(roomCtx, next) {
			return
		}
		next = next.Add(every)
		key := r.name + "-" + strconv.Itoa(i)
		size := s.sc.Sizes[rand.IntN(len(s.sc.Sizes))]
		a, err := s.post(ctx, r.name, key, size)
		if err != nil {
			if ctx.Err() == nil {
				s.fail("post %s: %v", key, err)
			}
			return
		}
		r.mu.Lock()
		r.acks = append(r.acks, a)
		r.mu.Unlock()
		s.mu.Lock()
		s.rep.Posts.Acked++
		s.rep.Posts.Bytes += int64(max(size, len(key)+1))
		s.mu.Unlock()
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	if d := time.Until(t); d > 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return false
		}
	}
	return ctx.Err() == nil
}

// postRetryFor bounds the retries of one post (same Idempotency-Key).
const postRetryFor = 30 * time.Second

// post posts a size-character message with key as its Idempotency-Key (and text
// prefix), retrying network errors, 429, 502, 503 and 504 with the same key until it is
// acknowledged; the ack must carry the key as id. ctx ending stops the retries.
func (s *soak) post(ctx context.Context, room, key string, size int) (soakAck, error) {
	text := key + " " + strings.Repeat("x", max(size-len(key)-1, 0))
	body, _ := json.Marshal(map[string]string{"name": "soak", "message": text})
	u := s.cfg.API + "/rooms/" + room + "/messages"
	deadline := time.Now().Add(postRetryFor)
	backoff := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if time.Now().After(deadline) {
				return soakAck{}, fmt.Errorf("not acknowledged within %v", postRetryFor)
			}
			if !sleepUntil(ctx, time.Now().Add(backoff)) {
				return soakAck{}, ctx.Err()
			}
			backoff = min(2*backoff, time.Second)
		}
		// The request outlives ctx: a post under way when its room ends completes, so
		// its outcome (acknowledged or not) is known.
		req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := s.http.Do(req)
		if err != nil {
			s.count(&s.rep.Posts.Retries, "neterr")
			continue
		}
		rb, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			s.count(&s.rep.Posts.Retries, "neterr")
			continue
		case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusBadGateway,
			resp.StatusCode == http.StatusServiceUnavailable, resp.StatusCode == http.StatusGatewayTimeout:
			s.count(&s.rep.Posts.Retries, strconv.Itoa(resp.StatusCode))
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && ra > 0 {
				backoff = min(time.Duration(ra)*time.Second, 2*time.Second)
			}
			continue
		case resp.StatusCode != http.StatusCreated:
			return soakAck{}, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, rb)
		}
		var m struct {
			ID, Room string
			Seq      uint64
		}
		if err := json.Unmarshal(rb, &m); err != nil || m.ID != key || m.Room != room || m.Seq == 0 {
			return soakAck{}, fmt.Errorf("201 with body %.200s (%v)", rb, err)
		}
		return soakAck{Seq: m.Seq, ID: m.ID}, nil
	}
}

// soakClient follows one room: it joins (three ways: live, since=0, since=<a seq
// already acknowledged>), stays, leaves (cleanly or by dropping the connection), comes
// back with since=<last seq seen>, and after a server-side close (1012 on a pusher
// restart) resumes on the next pusher: the Go client (clients/go) does that by itself.
// Everything it reads lands in log: what the client delivers and what it leaves out
// (OnSkipped: sent twice, out of order, another room), so the check sees what the
// pushers sent.
type soakClient struct {
	s    *soak
	room *soakRoom
	idx  int64

	mu      sync.Mutex
	client  *chatclient.Client // made at the first join: the pushers from idx on
	log     deliveryLog
	joined  bool   // log.From is set
	last    uint64 // highest seq received
	sub     *chatclient.Subscription
	raw     net.Conn // the TCP connection last dialled (an abrupt leave drops it)
	leaving bool     // we are ending sub
	at      int      // the pusher connected to (index in -ws), -1: none
}

// cursor is the since to resume with: the last seq seen, or where the client started.
func (c *soakClient) cursor() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.log.From, c.last)
}

// churn joins late (up to half the room's life), then stays and leaves in turn
// until ctx ends; it returns with the client connected or away.
func (c *soakClient) churn(ctx context.Context, life time.Duration) {
	sc := c.s.sc
	if !sleepUntil(ctx, time.Now().Add(jitter(life/4, 1))) {
		return
	}
	for ctx.Err() == nil {
		if err := c.connect(ctx); err != nil {
			if ctx.Err() == nil {
				c.s.fail("%s: %v", c.log.Client, err)
			}
			return
		}
		stay := time.NewTimer(jitter(sc.Session, 0.5))
		c.mu.Lock()
		sub := c.sub
		c.mu.Unlock()
		select {
		case <-sub.Closed(): // the client gave up (it resumes by itself after a server's close)
			stay.Stop()
			c.s.fail("%s: subscription ended: %v", c.log.Client, sub.Err())
			c.mu.Lock()
			c.sub = nil
			c.mu.Unlock()
			return
		case <-ctx.Done():
			stay.Stop()
			return
		case <-stay.C:
		}
		c.leave(c.idx%2 == 0)
		if !sleepUntil(ctx, time.Now().Add(jitter(sc.Away, 0.5))) {
			return
		}
	}
}

// jitter is d × a random factor in [1-f, 1+f].
func jitter(d time.Duration, f float64) time.Duration {
	return time.Duration(float64(d) * (1 - f + 2*f*rand.Float64()))
}

// catchUp makes sure the client has everything up to last: it resumes if it is away (a
// client that never joined joins with since=0) and waits until it has read last or the
// deadline passes; then it leaves.
func (c *soakClient) catchUp(ctx context.Context, last uint64, deadline time.Time) {
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for {
		c.mu.Lock()
		done := c.joined && max(c.last, c.log.From) >= last
		connected := c.sub != nil && !chanClosed(c.sub.Closed())
		c.mu.Unlock()
		if done || dctx.Err() != nil {
			break
		}
		if !connected {
			if err := c.connect(dctx); err != nil {
				if dctx.Err() == nil {
					c.s.fail("%s: catching up: %v", c.log.Client, err)
				}
				break
			}
			continue
		}
		sleepUntil(dctx, time.Now().Add(20*time.Millisecond))
	}
	c.leave(true)
}

func chanClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// chatClient is the client's Go client: the pushers in turn from the idx-th, dialling
// through a dialer that remembers the connection (for an abrupt leave).
func (c *soakClient) chatClient() (*chatclient.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		return c.client, nil
	}
	n := len(c.s.wsURLs)
	urls := make([]string, n)
	for k := range urls {
		urls[k] = c.s.wsURLs[(int(c.idx)+k)%n]
	}
	nd := &net.Dialer{Timeout: 10 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := nd.DialContext(ctx, network, addr)
		if err == nil {
			c.mu.Lock()
			c.raw = conn
			c.mu.Unlock()
		}
		return conn, err
	}
	cl, err := chatclient.New(urls, chatclient.WithDialer(dial), chatclient.WithBackoff(50*time.Millisecond, time.Second))
	if err != nil {
		return nil, err
	}
	c.client, c.at = cl, -1
	return cl, nil
}

// connect (re)connects: the first join in the client's way, later ones with
// since=cursor. The Go client tries the pushers in turn (one being restarted refuses or
// fails the handshake) for up to a minute.
func (c *soakClient) connect(ctx context.Context) error {
	cl, err := c.chatClient()
	if err != nil {
		return err
	}
	c.mu.Lock()
	first := !c.joined
	c.mu.Unlock()
	opts := []chatclient.SubscribeOption{chatclient.OnEvent(c.event), chatclient.OnSkipped(c.skipped), chatclient.OnFrame(c.frame)}
	mode := c.idx % 3
	if first && mode == 0 {
		// live: no since; From is the subscribed frame's seq (the Connected event's)
	} else {
		since := uint64(0)
		switch {
		case !first:
			since = c.cursor()
		case mode == 2:
			since = c.room.randomAck()
		}
		opts = append(opts, chatclient.Since(since))
		if first {
			c.mu.Lock()
			c.log.From = since
			c.mu.Unlock()
		}
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sub, err := cl.Subscribe(sctx, c.room.name, c.deliver, opts...)
	if err != nil {
		return fmt.Errorf("could not connect within a minute: %w", err)
	}
	c.mu.Lock()
	c.sub, c.leaving = sub, false
	c.mu.Unlock()
	if first {
		c.s.add(&c.s.rep.Clients.Joins, 1)
	} else {
		c.s.add(&c.s.rep.Clients.Resumes, 1)
	}
	return nil
}

// event follows the subscription's connections: which pusher holds it, the server's
// closes (counted by code) and the client's own resumes after them.
func (c *soakClient) event(e chatclient.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch e.Kind {
	case chatclient.ConnectFailed:
		c.s.add(&c.s.rep.Clients.DialFailures, 1)
	case chatclient.Connected:
		if !c.joined {
			c.joined = true
			if !e.Resumed {
				c.log.From = e.Subscribed.Seq
			}
		} else if c.sub != nil { // a resume by the client itself, after a server's close
			c.s.add(&c.s.rep.Clients.Resumes, 1)
		}
		c.at = slices.Index(c.s.wsURLs, e.URL)
		if c.at >= 0 {
			c.s.conns[c.at].Add(1)
		}
	case chatclient.Disconnected:
		if c.at >= 0 {
			c.s.conns[c.at].Add(-1)
			c.at = -1
		}
		if !c.leaving {
			c.s.closeCode(e.Code)
			c.s.add(&c.s.rep.Clients.Reconnects, 1)
		}
	}
}

// deliver records a message the client delivered.
func (c *soakClient) deliver(m chatclient.Msg) {
	c.mu.Lock()
	c.log.Deliveries = append(c.log.Deliveries, soakDelivery{Seq: m.Seq, ID: m.ID, Room: m.Room})
	if m.Room == c.log.Room {
		c.last = max(c.last, m.Seq)
	}
	c.mu.Unlock()
}

// skipped records a message frame the client left out: the check judges it.
func (c *soakClient) skipped(f chatclient.Frame) {
	var m struct{ ID string }
	if f.Type != "message" || json.Unmarshal(f.Data, &m) != nil {
		c.s.add(&c.s.rep.BadFrames, 1)
		return
	}
	c.mu.Lock()
	c.log.Deliveries = append(c.log.Deliveries, soakDelivery{Seq: f.Seq, ID: m.ID, Room: f.Room})
	c.mu.Unlock()
}

// frame counts the frames that are not messages: an error frame fails the soak, any
// other is unknown here.
func (c *soakClient) frame(f chatclient.Frame) {
	if f.Type == "error" {
		c.s.add(&c.s.rep.ErrorFrames, 1)
		c.s.fail("%s: error frame %.200s", c.log.Client, f.Data)
		return
	}
	c.s.add(&c.s.rep.BadFrames, 1)
}

// leave ends the subscription from the client side: with a close frame (clean) or by
// dropping the TCP connection first (abrupt), and waits until it is done.
func (c *soakClient) leave(clean bool) {
	c.mu.Lock()
	sub, raw := c.sub, c.raw
	c.leaving = true
	c.sub = nil
	c.mu.Unlock()
	if sub == nil {
		return
	}
	if !clean && raw != nil {
		raw.Close()
	}
	sub.Stop()
	<-sub.Closed()
	c.mu.Lock()
	if c.at >= 0 {
		c.s.conns[c.at].Add(-1)
		c.at = -1
	}
	c.mu.Unlock()
	c.s.add(&c.s.rep.Clients.Leaves, 1)
}
