package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"sync"
	"sync/atomic"
	"time"

	chatclient "github.com/chatrt/chat/clients/go"
)

// subscriber is one websocket subscribed to one room, through the Go client
// (clients/go) with no reconnection: a connection that ends before the run does is
// counted. Every frame the client reads reaches frame(), delivered or not (OnSkipped): the
// counts of duplicates and disorder are the servers', not what the client lets through.
// Only what it needs is parsed from each frame: the seq (last field), and the send time
// and per-room index the publisher put at the start of the message text.
type subscriber struct {
	idx  int
	room int
	sub  *chatclient.Subscription

	mu       sync.Mutex
	got      []uint64 // bitset of per-room post indices received
	received uint64   // message frames
	dups     uint64   // an index received again
	ooo      uint64   // a seq not above the previous one (and not a duplicate)
	lastSeq  uint64
	closed   bool // the socket ended before the run did
	code     int  // close code sent by the server, if any
}

// subGroup is the subscribers one process holds.
type subGroup struct {
	cfg  *config
	subs []*subscriber

	windowFrom, windowTo atomic.Int64 // unix ns; e2e latency is recorded for sends inside
	e2e                  atomicHist
	inWindow             atomic.Uint64
	errFrames            atomic.Uint64
	badFrames            atomic.Uint64
	presenceFrames       atomicFrameCounts
	typingSent           atomic.Uint64
	typingErrors         atomic.Uint64
	typingStop           context.CancelFunc // ends the typers early (finish)
	typingDone           chan struct{}      // closed when the typers are done
}

func newSubGroup(cfg *config) *subGroup {
	g := &subGroup{cfg: cfg}
	g.windowFrom.Store(1<<63 - 1)
	return g
}

// setWindow sets the measured window (unix ns) and starts the typers, who type until its
// end.
func (g *subGroup) setWindow(from, to int64) {
	g.windowTo.Store(to)
	g.windowFrom.Store(from)
	if g.cfg.Presence.Typers > 0 && g.typingDone == nil {
		ctx, cancel := context.WithCancel(context.Background())
		g.typingStop, g.typingDone = cancel, make(chan struct{})
		go func() {
			defer close(g.typingDone)
			g.typing(ctx, to)
		}()
	}
}

// connect dials and subscribes every subscriber of [cfg.SubFrom, cfg.SubTo), at most
// DialParallel handshakes at a time; it returns when each one is subscribed or failed.
func (g *subGroup) connect(ctx context.Context) (ok, failed int, firstErr error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.ConnectTimeout)
	defer cancel()
	dialers := []*net.Dialer{newDialer("")}
	if len(g.cfg.SrcIPs) > 0 {
		dialers = dialers[:0]
		for _, ip := range g.cfg.SrcIPs {
			dialers = append(dialers, newDialer(ip))
		}
	}
	var mu sync.Mutex
	sem := make(chan struct{}, g.cfg.DialParallel)
	var wg sync.WaitGroup
	for i := g.cfg.SubFrom; i < g.cfg.SubTo; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s, err := g.dial(ctx, dialers[i%len(dialers)], i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			ok++
			g.subs = append(g.subs, s)
		}()
	}
	wg.Wait()
	return ok, failed, firstErr
}

func newDialer(ip string) *net.Dialer {
	nd := &net.Dialer{Timeout: 10 * time.Second}
	if ip != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(ip)}
	}
	return nd
}

// dial subscribes subscriber i to its room on its pusher (-ws, i-th in turn), one
// attempt: a subscriber that cannot connect counts as failed.
func (g *subGroup) dial(ctx context.Context, d *net.Dialer, i int) (*subscriber, error) {
	room := i % g.cfg.Rooms
	urls := make([]string, len(g.cfg.WS))
	for k := range urls {
		urls[k] = g.cfg.WS[(i+k)%len(g.cfg.WS)]
	}
	c, err := chatclient.New(urls, chatclient.WithDialer(d.DialContext), chatclient.WithHandshakeTimeout(10*time.Second))
	if err != nil {
		return nil, err
	}
	s := &subscriber{idx: i, room: room}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var attemptErr error
	event := func(e chatclient.Event) {
		switch e.Kind {
		case chatclient.ConnectFailed:
			attemptErr = e.Err
			cancel() // one attempt
		case chatclient.Disconnected:
			s.mu.Lock()
			s.closed = true
			var ce *chatclient.CloseError
			if errors.As(e.Err, &ce) {
				s.code = ce.Code
			}
			s.mu.Unlock()
		}
	}
	frame := func(data []byte) { g.frame(s, data, time.Now().UnixNano()) }
	s.sub, err = c.Subscribe(actx, roomName(g.cfg, room), func(m chatclient.Msg) { frame(m.Raw) },
		append(g.cfg.Presence.subscribeOpts(i), chatclient.MaxReconnects(0), chatclient.OnEvent(event),
			chatclient.OnFrame(func(f chatclient.Frame) { frame(f.Data) }),
			chatclient.OnSkipped(func(f chatclient.Frame) { frame(f.Data) }))...)
	if err != nil {
		if attemptErr != nil {
			err = attemptErr
		}
		return nil, fmt.Errorf("subscribe %s: %w", urls[0], err)
	}
	return s, nil
}

var (
	msgPrefix = []byte(`{"type":"message"`)
	textKey   = []byte(`,"message":"`)
	seqKey    = []byte(`"seq":`)
)

func (g *subGroup) frame(s *subscriber, data []byte, now int64) {
	if !bytes.HasPrefix(data, msgPrefix) {
		if bytes.HasPrefix(data, []byte(`{"type":"error"`)) {
			g.errFrames.Add(1)
		} else {
			g.presenceFrames.count(data)
		}
		return
	}
	sent, idx, seq, ok := parseFrame(data)
	if !ok || idx >= maxIndex {
		g.badFrames.Add(1)
		return
	}
	if sent >= g.windowFrom.Load() && sent < g.windowTo.Load() {
		g.e2e.record(time.Duration(now - sent))
		g.inWindow.Add(1)
	}
	s.mu.Lock()
	s.received++
	w := idx / 64
	for uint64(len(s.got)) <= w {
		s.got = append(s.got, 0)
	}
	bit := uint64(1) << (idx % 64)
	switch {
	case s.got[w]&bit != 0:
		s.dups++
	case seq <= s.lastSeq:
		s.ooo++
	}
	s.got[w] |= bit
	s.lastSeq = max(s.lastSeq, seq)
	s.mu.Unlock()
}

// maxIndex bounds per-room post indices (and so the bitsets) against foreign frames.
const maxIndex = 1 << 28

// parseFrame reads "<send unix ns>.<index> " at the start of the message text and the seq.
func parseFrame(data []byte) (sent int64, idx, seq uint64, ok bool) {
	i := bytes.Index(data, textKey)
	j := bytes.LastIndex(data, seqKey)
	if i < 0 || j < 0 {
		return 0, 0, 0, false
	}
	p := data[i+len(textKey):]
	var n uint64
	if n, p, ok = parseUint(p); !ok || len(p) == 0 || p[0] != '.' {
		return 0, 0, 0, false
	}
	sent = int64(n)
	if idx, p, ok = parseUint(p[1:]); !ok || len(p) == 0 || p[0] != ' ' {
		return 0, 0, 0, false
	}
	if seq, _, ok = parseUint(data[j+len(seqKey):]); !ok {
		return 0, 0, 0, false
	}
	return sent, idx, seq, true
}

func parseUint(p []byte) (uint64, []byte, bool) {
	var n uint64
	i := 0
	for ; i < len(p) && p[i] >= '0' && p[i] <= '9' && i < 20; i++ {
		n = n*10 + uint64(p[i]-'0')
	}
	return n, p[i:], i > 0
}

// expected is, per room, the bitset of post indices that were acknowledged.
type expected map[int][]uint64

func (e expected) count(room int) int {
	n := 0
	for _, w := range e[room] {
		n += bits.OnesCount64(w)
	}
	return n
}

// missing is how many acknowledged indices s has not received. Caller holds s.mu.
func (s *subscriber) missing(want []uint64) int {
	n := 0
	for i, w := range want {
		if i < len(s.got) {
			w &^= s.got[i]
		}
		n += bits.OnesCount64(w)
	}
	return n
}

// finish waits up to drain for every subscriber to have every acknowledged message of its
// room, closes the sockets and returns the group's result.
func (g *subGroup) finish(want expected, drain time.Duration) subResult {
	wantN := make(map[int]int, len(want))
	for room := range want {
		wantN[room] = want.count(room)
	}
	if g.typingDone != nil {
		g.typingStop()
		<-g.typingDone
	}
	deadline := time.Now().Add(drain)
	for {
		complete := true
		for _, s := range g.subs {
			s.mu.Lock()
			done := s.closed || (s.received >= uint64(wantN[s.room]) && s.missing(want[s.room]) == 0)
			s.mu.Unlock()
			if !done {
				complete = false
				break
			}
		}
		if complete || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	res := subResult{CloseCodes: map[string]int{}}
	for _, s := range g.subs {
		s.mu.Lock()
		if s.closed {
			res.Disconnected++
			if s.code != 0 {
				res.CloseCodes[fmt.Sprint(s.code)]++
			}
		}
		s.mu.Unlock()
		s.sub.Stop()
	}
	for _, s := range g.subs {
		<-s.sub.Closed()
	}
	for _, s := range g.subs {
		res.Subscribers++
		res.Deliveries += s.received
		res.Lost += uint64(s.missing(want[s.room]))
		res.Duplicates += s.dups
		res.OutOfOrder += s.ooo
		res.Expected += uint64(wantN[s.room])
	}
	res.WindowDeliveries = g.inWindow.Load()
	res.ErrorFrames = g.errFrames.Load()
	res.BadFrames = g.badFrames.Load()
	res.E2E = g.e2e.snapshot()
	res.PresenceFrames = g.presenceFrames.snapshot()
	res.TypingSent, res.TypingErrors = g.typingSent.Load(), g.typingErrors.Load()
	return res
}

// subResult is what a group of subscribers reports; results of several groups merge.
type subResult struct {
	Connected        int            `json:"connected"`
	ConnectFailed    int            `json:"connect_failed"`
	ConnectError     string         `json:"connect_error,omitempty"`
	Subscribers      int            `json:"subscribers"`
	Expected         uint64         `json:"expected"` // acknowledged messages × subscribers of their room
	Deliveries       uint64         `json:"deliveries"`
	WindowDeliveries uint64         `json:"window_deliveries"`
	Lost             uint64         `json:"lost"`
	Duplicates       uint64         `json:"duplicates"`
	OutOfOrder       uint64         `json:"out_of_order"`
	Disconnected     int            `json:"disconnected"`
	CloseCodes       map[string]int `json:"close_codes,omitempty"`
	ErrorFrames      uint64         `json:"error_frames"`
	BadFrames        uint64         `json:"bad_frames"`
	E2E              hist           `json:"e2e"`
	PresenceFrames   frameCounts    `json:"presence_frames"`
	TypingSent       uint64         `json:"typing_sent"`
	TypingErrors     uint64         `json:"typing_errors"`
	CPUSeconds       float64        `json:"cpu_seconds"` // of the process(es) holding them
}

func (r *subResult) merge(o subResult) {
	r.Connected += o.Connected
	r.ConnectFailed += o.ConnectFailed
	if r.ConnectError == "" {
		r.ConnectError = o.ConnectError
	}
	r.Subscribers += o.Subscribers
	r.Expected += o.Expected
	r.Deliveries += o.Deliveries
	r.WindowDeliveries += o.WindowDeliveries
	r.Lost += o.Lost
	r.Duplicates += o.Duplicates
	r.OutOfOrder += o.OutOfOrder
	r.Disconnected += o.Disconnected
	for k, v := range o.CloseCodes {
		if r.CloseCodes == nil {
			r.CloseCodes = map[string]int{}
		}
		r.CloseCodes[k] += v
	}
	r.ErrorFrames += o.ErrorFrames
	r.BadFrames += o.BadFrames
	r.E2E.merge(o.E2E)
	r.PresenceFrames.add(o.PresenceFrames)
	r.TypingSent += o.TypingSent
	r.TypingErrors += o.TypingErrors
	r.CPUSeconds += o.CPUSeconds
}
