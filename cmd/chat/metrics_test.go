package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/buildinfo"
)

// metricNumber is the value of the sample line "name{labels} value" (-1 if absent).
func metricNumber(text, sample string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// TestMetricsMoveUnderLoad: a small load moves every service's key metrics by the exact
// amounts, and the gauges the dashboard shows are exported.
func TestMetricsMoveUnderLoad(t *testing.T) {
	sys := startSystemWith(t, testConfig(t))
	a := dialWS(t, sys.url, "?room=metrics")
	b := dialWS(t, sys.url, "?room=metrics&since=0")
	for _, c := range []*wsClient{a, b} {
		if f := c.next(); f["type"] != "subscribed" {
			t.Fatalf("got %v", f)
		}
	}
	const n = 20
	for i := range n {
		if status, _ := postJSON(t, sys.url+"/rooms/metrics/messages", map[string]string{"name": "m", "message": fmt.Sprint(i)}); status != http.StatusCreated {
			t.Fatalf("post %d: %d", i, status)
		}
	}
	if status, _ := postJSON(t, sys.url+"/rooms/metrics/messages", map[string]string{"name": "m"}); status != http.StatusBadRequest {
		t.Fatalf("bad post: %d", status)
	}
	for _, c := range []*wsClient{a, b} {
		for range n {
			if f := c.next(); f["type"] != "message" {
				t.Fatalf("got %v", f)
			}
		}
	}
	chattest.Eventually(t, 10*time.Second, func() bool {
		return metricNumber(metricsText(t, sys.url), "chat_persister_stored_total") >= n
	}, "persister metrics did not move")
	text := metricsText(t, sys.url)
	for sample, want := range map[string]float64{
		`chat_api_posts_total{status="201"}`:         n,
		`chat_api_posts_total{status="400"}`:         1,
		`chat_api_publish_ack_seconds_count`:         n,
		`chat_pusher_connections`:                    2,
		`chat_pusher_subscriptions`:                  2,
		`chat_pusher_replays_total{source="window"}`: 1,
		`chat_persister_deadletter_total`:            0,
		`chat_pusher_evictions_total`:                0,
	} {
		if got := metricNumber(text, sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
	for sample, atLeast := range map[string]float64{
		`chat_pusher_frames_sent_total`:       2*n + 2,
		`chat_persister_batch_size_count`:     1,
		`chat_persister_batch_size_sum`:       n,
		`chat_persister_write_seconds_count`:  1,
		`chat_persister_consumer_pending`:     0,
		`chat_persister_consumer_ack_pending`: 0,
		`chat_persister_redeliveries_total`:   0,
		`chat_pusher_queued_frames`:           0,
		`chat_pusher_queue_depth_max`:         0,
	} {
		if got := metricNumber(text, sample); got < atLeast {
			t.Errorf("%s = %v, want at least %v (-1: absent)", sample, got, atLeast)
		}
	}
	// The process says which build it is: one chat_build_info for the process, and the
	// same version and commit in /healthz (served by the api).
	bi := buildinfo.Read()
	build := fmt.Sprintf(`chat_build_info{commit=%q,service="chat",version=%q}`, bi.Commit(), bi.Version)
	if got := metricNumber(text, build); got != 1 || strings.Count(text, "\nchat_build_info{") != 1 {
		t.Errorf("%s = %v, want 1 and no other chat_build_info", build, got)
	}
	resp, err := http.Get(sys.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || h["status"] != "ok" || h["version"] != bi.Version || h["commit"] != bi.Commit() {
		t.Errorf("/healthz %v (%v), want version %q commit %q", h, err, bi.Version, bi.Commit())
	}
}
