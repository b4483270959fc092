package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	chatclient "github.com/chatrt/chat/clients/go"
)

// presenceConfig is the load's presence part (v1.3, issue 12): subscribers that opt in,
// some of them typing, and short connections that join a room and leave it.
type presenceConfig struct {
	// On: every subscriber opts in to presence under its own name ("s<index>").
	On bool `json:"on"`
	// Typers: the subscribers with index < Typers send a typing frame every TypingEvery,
	// from the start of publishing to the end of the window (their phases spread evenly).
	Typers      int           `json:"typers"`
	TypingEvery time.Duration `json:"typing_every"`
	// Churn: presence changes per second (a join and a leave each): Churn/2 connections a
	// second subscribe to a room (round-robin) under a name of their own ("c<k>"), opted in
	// like the subscribers, stay ChurnHold and close; from the start of publishing to the
	// end of the window, held by the main process.
	Churn     float64       `json:"churn"`
	ChurnHold time.Duration `json:"churn_hold"`
}

func (p *presenceConfig) validate() error {
	switch {
	case p.Typers < 0 || p.Churn < 0 || p.TypingEvery <= 0 || p.ChurnHold <= 0:
		return fmt.Errorf("-typers, -churn must be >= 0, -typing-every and -churn-hold > 0")
	case p.Typers > 0 && !p.On:
		return fmt.Errorf("-typers needs -presence (anonymous typing is not forwarded)")
	}
	return nil
}

// presenceOpts are the subscribe options of subscriber i.
func (p *presenceConfig) subscribeOpts(i int) []chatclient.SubscribeOption {
	if !p.On {
		return nil
	}
	return []chatclient.SubscribeOption{chatclient.Presence(fmt.Sprintf("s%d", i))}
}

// frameCounts counts the presence frames subscribers receive, by type.
type frameCounts struct {
	Presence uint64 `json:"presence"`
	Join     uint64 `json:"join"`
	Leave    uint64 `json:"leave"`
	Typing   uint64 `json:"typing"`
}

func (f *frameCounts) add(o frameCounts) {
	f.Presence += o.Presence
	f.Join += o.Join
	f.Leave += o.Leave
	f.Typing += o.Typing
}

type atomicFrameCounts struct{ presence, join, leave, typing atomic.Uint64 }

var (
	presencePrefix = []byte(`{"type":"presence"`)
	joinPrefix     = []byte(`{"type":"join"`)
	leavePrefix    = []byte(`{"type":"leave"`)
	typingPrefix   = []byte(`{"type":"typing"`)
)

// count counts data if it is a presence, join, leave or typing frame.
func (a *atomicFrameCounts) count(data []byte) {
	switch {
	case bytes.HasPrefix(data, typingPrefix):
		a.typing.Add(1)
	case bytes.HasPrefix(data, joinPrefix):
		a.join.Add(1)
	case bytes.HasPrefix(data, leavePrefix):
		a.leave.Add(1)
	case bytes.HasPrefix(data, presencePrefix):
		a.presence.Add(1)
	}
}

func (a *atomicFrameCounts) snapshot() frameCounts {
	return frameCounts{Presence: a.presence.Load(), Join: a.join.Load(), Leave: a.leave.Load(), Typing: a.typing.Load()}
}

// typing runs the typers among g's subscribers until the unix-ns time to (or ctx ends):
// each sends a typing frame every TypingEvery, the first after a phase of its own.
func (g *subGroup) typing(ctx context.Context, to int64) {
	p := &g.cfg.Presence
	var wg sync.WaitGroup
	for _, s := range g.subs {
		if s.idx >= p.Typers {
			continue
		}
		phase := p.TypingEvery * time.Duration(s.idx) / time.Duration(p.Typers)
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := time.Now().Add(phase)
			for next.UnixNano() < to {
				sleepCtx(ctx, time.Until(next))
				if ctx.Err() != nil {
					return
				}
				if err := s.sub.Typing(); err != nil {
					g.typingErrors.Add(1)
				} else {
					g.typingSent.Add(1)
				}
				next = next.Add(p.TypingEvery)
			}
		}()
	}
	wg.Wait()
}

// churnResult is what the joining and leaving connections did.
type churnResult struct {
	Joined     uint64 `json:"joined"` // subscribed, then closed after the hold
	Failed     uint64 `json:"failed"`
	FirstError string `json:"first_error,omitempty"`
}

// churn opens Churn/2 connections a second from start until to, each subscribed under its
// own name for ChurnHold, and returns once the last one closed.
func churn(ctx context.Context, cfg *config, start, to time.Time) churnResult {
	p := &cfg.Presence
	var res churnResult
	if p.Churn <= 0 || len(cfg.WS) == 0 {
		return res
	}
	var mu sync.Mutex
	var joined, failed atomic.Uint64
	every := time.Duration(float64(2*time.Second) / p.Churn)
	dialers := []*net.Dialer{newDialer("")}
	if len(cfg.SrcIPs) > 0 {
		dialers = dialers[:0]
		for _, ip := range cfg.SrcIPs {
			dialers = append(dialers, newDialer(ip))
		}
	}
	var wg sync.WaitGroup
	sleepCtx(ctx, time.Until(start))
	next := time.Now()
	for k := 0; next.Before(to) && ctx.Err() == nil; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := churnOne(ctx, cfg, dialers[k%len(dialers)], k)
			if err == nil {
				joined.Add(1)
				return
			}
			failed.Add(1)
			mu.Lock()
			if res.FirstError == "" {
				res.FirstError = err.Error()
			}
			mu.Unlock()
		}()
		next = next.Add(every)
		sleepCtx(ctx, time.Until(next))
	}
	wg.Wait()
	res.Joined, res.Failed = joined.Load(), failed.Load()
	return res
}

// churnOne subscribes connection k to its room under the name c<k>, holds it and closes it.
func churnOne(ctx context.Context, cfg *config, d *net.Dialer, k int) error {
	url := cfg.WS[k%len(cfg.WS)]
	c, err := chatclient.New([]string{url}, chatclient.WithDialer(d.DialContext), chatclient.WithHandshakeTimeout(10*time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	opts := []chatclient.SubscribeOption{chatclient.MaxReconnects(0)}
	if cfg.Presence.On {
		opts = append(opts, chatclient.Presence(fmt.Sprintf("c%d", k)))
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sub, err := c.Subscribe(sctx, roomName(cfg, k%cfg.Rooms), func(chatclient.Msg) {}, opts...)
	if err != nil {
		return fmt.Errorf("churn %s: %w", url, err)
	}
	sleepCtx(ctx, cfg.Presence.ChurnHold)
	sub.Stop()
	<-sub.Closed()
	return nil
}
