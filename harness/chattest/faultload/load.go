// Package faultload is the load harness of the fault tests (cmd/chat's single-process
// ones, deploy/topology's cross-process ones): posters that retry with the same
// Idempotency-Key until acknowledged (Load), websocket subscribers that resume with
// since=<last seq> (Subscriber), and the exact-count check of what was acknowledged,
// stored and delivered (Finish). It is apart from chattest so that the services' tests
// do not depend on a websocket client.
package faultload

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
)

// Ack is a message the system acknowledged (or a test published directly).
type Ack struct {
	ID   string // "" for a direct publish without id (derived by the services)
	Room string
	Text string
	Seq  uint64
	// EditKey is the 201's edit_key (issue 11; auth off), for the changes of a Changer.
	EditKey string
}

// LoadOptions configures a Load.
type LoadOptions struct {
	// URL picks the base URL ("http://host:port") for each attempt; "" means no node is
	// up, which fails the post.
	URL func() string
	// KeyPrefix starts every Idempotency-Key (and message text): posts are
	// KeyPrefix+room+"-"+i, the sentinels of Finish KeyPrefix+room+"-end". Keys must be
	// [A-Za-z0-9-].
	KeyPrefix string
	// Retry lists the statuses retried with the same key besides network errors (e.g.
	// 503, or 502/503/504 behind a proxy). Any other status than 201 fails the post.
	Retry []int
}

// Load posts to rooms at a steady pace, each post retried with the same
// Idempotency-Key (Retry statuses, network errors) until it is acknowledged with 201.
type Load struct {
	t      testing.TB
	opts   LoadOptions
	client *http.Client

	mu       sync.Mutex
	acks     []Ack
	failures map[int]int // failed attempts by status (0: network error)
	// longestRetry is the longest time one post took from its first failed attempt to
	// its 201: how long clients saw the service unavailable.
	longestRetry time.Duration
	lastAck      time.Time
	longestPause time.Duration // longest time between two consecutive acks

	stop chan struct{}
	wg   sync.WaitGroup
	// changer, once StartChanges ran: Finish halts it and checks what it changed.
	changer *Changer
}

// NewLoad returns a Load whose connections are closed when the test ends.
func NewLoad(t testing.TB, opts LoadOptions) *Load {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	t.Cleanup(tr.CloseIdleConnections)
	return &Load{t: t, opts: opts, client: &http.Client{Transport: tr, Timeout: 15 * time.Second},
		failures: map[int]int{}, stop: make(chan struct{})}
}

// Start runs one poster per room, each posting once per every.
func (l *Load) Start(rooms []string, every time.Duration) {
	for _, room := range rooms {
		l.wg.Add(1)
		go l.poster(room, every)
	}
}

func (l *Load) poster(room string, every time.Duration) {
	defer l.wg.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		if _, ok := l.Post(room, l.opts.KeyPrefix+room+"-"+strconv.Itoa(i)); !ok {
			return
		}
	}
}

// Halt stops the posters after their current post is acknowledged.
func (l *Load) Halt() {
	close(l.stop)
	l.wg.Wait()
}

// Post posts key as the message text and Idempotency-Key until it is acknowledged (or
// fails the test within 45s) and records the ack.
func (l *Load) Post(room, key string) (Ack, bool) {
	body := `{"name":"load","message":"` + key + `"}`
	start := time.Now()
	var firstFail time.Time
	for attempt := 0; ; attempt++ {
		if time.Since(start) > 45*time.Second {
			l.t.Errorf("%s: not acknowledged within 45s", key)
			return Ack{}, false
		}
		if attempt > 0 {
			time.Sleep(25 * time.Millisecond) // client retry back-off
		}
		base := l.opts.URL()
		if base == "" {
			l.t.Errorf("%s: no node up", key)
			return Ack{}, false
		}
		req, _ := http.NewRequest(http.MethodPost, base+"/rooms/"+room+"/messages", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := l.client.Do(req)
		var data []byte
		if err == nil {
			data, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		status := 0
		if err == nil {
			status = resp.StatusCode
		}
		if status == 0 || slices.Contains(l.opts.Retry, status) {
			l.mu.Lock()
			l.failures[status]++
			l.mu.Unlock()
			if firstFail.IsZero() {
				firstFail = time.Now()
			}
			continue
		}
		if status != http.StatusCreated {
			l.t.Errorf("%s: POST answered %d %s", key, status, data)
			return Ack{}, false
		}
		var m struct {
			ID, Room, Message string
			Seq               uint64
			EditKey           string `json:"edit_key"`
		}
		if err := json.Unmarshal(data, &m); err != nil || m.ID != key || m.Room != room || m.Message != key || m.Seq == 0 {
			l.t.Errorf("%s: 201 with body %s (%v)", key, data, err)
			return Ack{}, false
		}
		a := Ack{ID: key, Room: room, Text: key, Seq: m.Seq, EditKey: m.EditKey}
		now := time.Now()
		l.mu.Lock()
		if !l.lastAck.IsZero() {
			l.longestPause = max(l.longestPause, now.Sub(l.lastAck))
		}
		l.lastAck = now
		if !firstFail.IsZero() {
			l.longestRetry = max(l.longestRetry, now.Sub(firstFail))
		}
		l.mu.Unlock()
		l.Record(a)
		return a, true
	}
}

// Record adds an acknowledged message (e.g. one a test published directly).
func (l *Load) Record(a Ack) {
	l.mu.Lock()
	l.acks = append(l.acks, a)
	l.mu.Unlock()
}

// Acked is the number of acknowledged messages so far.
func (l *Load) Acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

// Snapshot copies the acknowledged messages so far.
func (l *Load) Snapshot() []Ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Ack(nil), l.acks...)
}

// Failed is the number of failed attempts with status (0: network error).
func (l *Load) Failed(status int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failures[status]
}

// Failures is "502=3 503=10 neterr=2" (empty when none).
func (l *Load) Failures() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	codes := slices.Sorted(func(yield func(int) bool) {
		for code := range l.failures {
			if code != 0 && !yield(code) {
				return
			}
		}
	})
	var parts []string
	for _, code := range append(codes, 0) {
		if n := l.failures[code]; n > 0 {
			name := strconv.Itoa(code)
			if code == 0 {
				name = "neterr"
			}
			parts = append(parts, fmt.Sprintf("%s=%d", name, n))
		}
	}
	return strings.Join(parts, " ")
}

// LongestRetry is the longest time one post kept failing before its 201.
func (l *Load) LongestRetry() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.longestRetry
}

// LongestPause is the longest time between two consecutive acks.
func (l *Load) LongestPause() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.longestPause
}

// WaitMore waits until n more posts than now are acknowledged.
func (l *Load) WaitMore(n int, timeout time.Duration) {
	l.t.Helper()
	want := l.Acked() + n
	chattest.Eventually(l.t, timeout, func() bool { return l.Acked() >= want }, "acknowledged %d posts, want %d", l.Acked(), want)
}
