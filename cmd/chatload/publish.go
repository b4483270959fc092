package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// pubGroup posts messages over HTTP at the target rate. Each message's text starts with
// "<send unix ns>.<per-room index> ", padded to cfg.Size bytes.
type pubGroup struct {
	cfg    *config
	client *http.Client
	poll   *http.Client // history polls for persister lag, on their own connections
	urls   []string     // POST URL per room

	roomNext []atomic.Uint64 // next per-room index
	postNext atomic.Uint64   // round-robin over rooms

	mu       sync.Mutex
	acked    expected
	statuses map[string]int
	firstErr string

	attempted, ackedN, windowAcked atomic.Uint64
	lat                            atomicHist // acknowledged posts sent inside the window
	persist                        atomicHist // ack → visible in history (sampled)
	persistMissing                 atomic.Uint64
	persistInFlight                atomic.Int64
	persistTick                    atomic.Uint64
	persistWG                      sync.WaitGroup
}

func newPubGroup(cfg *config) *pubGroup {
	p := &pubGroup{cfg: cfg, acked: expected{}, statuses: map[string]int{},
		roomNext: make([]atomic.Uint64, cfg.Rooms)}
	tr := &http.Transport{MaxIdleConnsPerHost: cfg.Publishers + 8, MaxConnsPerHost: cfg.Publishers + 8,
		DisableCompression: true, IdleConnTimeout: time.Minute}
	p.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	p.poll = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: maxPolls, MaxConnsPerHost: maxPolls,
		DisableCompression: true}, Timeout: 10 * time.Second}
	for i := range cfg.Rooms {
		p.urls = append(p.urls, cfg.API+"/rooms/"+roomName(cfg, i)+"/messages")
	}
	return p
}

// run posts from start until windowTo: publisher i of P sends every P/rate seconds,
// offset by i/rate. A publisher that falls behind (slow answers) sends immediately, so the
// achieved rate shows the deployment's limit rather than the schedule's.
func (p *pubGroup) run(ctx context.Context, start time.Time, windowFrom, windowTo int64) {
	if p.cfg.Rate <= 0 {
		return
	}
	interval := time.Duration(float64(p.cfg.Publishers) / p.cfg.Rate * float64(time.Second))
	var wg sync.WaitGroup
	for i := range p.cfg.Publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := start.Add(time.Duration(float64(i) / p.cfg.Rate * float64(time.Second)))
			body := make([]byte, 0, p.cfg.Size+64)
			for {
				if d := time.Until(next); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				now := time.Now()
				if now.UnixNano() >= windowTo || ctx.Err() != nil {
					return
				}
				body = p.post(ctx, body, now.UnixNano() >= windowFrom)
				next = next.Add(interval)
			}
		}()
	}
	wg.Wait()
	p.persistWG.Wait()
}

func (p *pubGroup) post(ctx context.Context, body []byte, inWindow bool) []byte {
	room := int(p.postNext.Add(1)-1) % p.cfg.Rooms
	idx := p.roomNext[room].Add(1) - 1
	sent := time.Now()
	body = append(body[:0], `{"name":"load","message":"`...)
	start := len(body)
	body = strconv.AppendInt(body, sent.UnixNano(), 10)
	body = append(body, '.')
	body = strconv.AppendUint(body, idx, 10)
	body = append(body, ' ')
	for len(body)-start < p.cfg.Size {
		body = append(body, 'x')
	}
	body = append(body, `"}`...)
	p.attempted.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.urls[room], bytes.NewReader(body))
	if err != nil {
		p.fail("request", err)
		return body
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		p.fail("transport", err)
		return body
	}
	rb, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	acked := time.Now()
	if err != nil || resp.StatusCode != http.StatusCreated {
		p.fail(strconv.Itoa(resp.StatusCode), fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, rb))
		return body
	}
	p.mu.Lock()
	bs := p.acked[room]
	for uint64(len(bs)) <= idx/64 {
		bs = append(bs, 0)
	}
	bs[idx/64] |= 1 << (idx % 64)
	p.acked[room] = bs
	p.statuses["201"]++
	p.mu.Unlock()
	p.ackedN.Add(1)
	if inWindow {
		p.windowAcked.Add(1)
		p.lat.record(acked.Sub(sent))
		p.samplePersist(ctx, room, rb, acked)
	}
	return body
}

func (p *pubGroup) fail(kind string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.statuses[kind]++
	if p.firstErr == "" {
		p.firstErr = err.Error()
	}
}

// History polls are kept light (a few in flight, one every pollEvery each): a history
// query costs the server far more than a post, and the probe must not become the load.
const (
	maxPolls  = 4
	pollEvery = 20 * time.Millisecond
)

// samplePersist polls history for about cfg.PersistSample acknowledged posts per second
// until the message is there, recording ack → visible.
func (p *pubGroup) samplePersist(ctx context.Context, room int, body []byte, acked time.Time) {
	if p.cfg.PersistSample <= 0 {
		return
	}
	every := max(uint64(p.cfg.Rate/p.cfg.PersistSample), 1)
	if p.persistTick.Add(1)%every != 0 || p.persistInFlight.Load() >= maxPolls {
		return
	}
	i := bytes.LastIndex(body, seqKey)
	if i < 0 {
		return
	}
	seq, _, ok := parseUint(body[i+len(seqKey):])
	if !ok || seq == 0 {
		return
	}
	want := []byte(`"seq":` + strconv.FormatUint(seq, 10) + `}`)
	u := p.urls[room] + "?limit=1&after=" + strconv.FormatUint(seq-1, 10)
	p.persistInFlight.Add(1)
	p.persistWG.Add(1)
	go func() {
		defer p.persistWG.Done()
		defer p.persistInFlight.Add(-1)
		deadline := acked.Add(10 * time.Second)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			resp, err := p.poll.Get(u)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && bytes.Contains(b, want) {
					p.persist.record(time.Since(acked))
					return
				}
			}
			time.Sleep(pollEvery)
		}
		p.persistMissing.Add(1)
	}()
}

// pubResult is what the publishers report.
type pubResult struct {
	Attempted      uint64         `json:"attempted"`
	Acked          uint64         `json:"acked"`
	WindowAcked    uint64         `json:"window_acked"`
	Statuses       map[string]int `json:"statuses"`
	FirstError     string         `json:"first_error,omitempty"`
	Latency        hist           `json:"latency"`
	PersistLag     hist           `json:"persist_lag"`
	PersistMissing uint64         `json:"persist_missing"`
}

func (p *pubGroup) result() pubResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return pubResult{Attempted: p.attempted.Load(), Acked: p.ackedN.Load(), WindowAcked: p.windowAcked.Load(),
		Statuses: p.statuses, FirstError: p.firstErr, Latency: p.lat.snapshot(), PersistLag: p.persist.snapshot(),
		PersistMissing: p.persistMissing.Load()}
}

func (p *pubGroup) expected() expected {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(expected, len(p.acked))
	for r, bs := range p.acked {
		out[r] = append([]uint64(nil), bs...)
	}
	return out
}
