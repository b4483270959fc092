package main

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestMetricsLag: with -metrics on the registry the persister shares, the run reports the
// lag of the messages stored from the window's start to the drain: at least the window's
// posts, at most every acknowledged post.
func TestMetricsLag(t *testing.T) {
	base := startChat(t)
	cfg, err := parseFlags([]string{"-api", base, "-subs", "0", "-rate", "200", "-publishers", "4",
		"-duration", "1500ms", "-warmup", "500ms", "-drain", "10s", "-metrics", base + "/metrics"})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	rep.writeSummary(&sb)
	t.Log("\n" + sb.String())
	if len(rep.Errors) > 0 {
		t.Errorf("errors: %v", rep.Errors)
	}
	p, m := &rep.Posts, rep.Persister
	if p.Acked == 0 || p.Acked != p.Attempted {
		t.Fatalf("posts: %d acked of %d attempted (%v, %s)", p.Acked, p.Attempted, p.Statuses, p.FirstError)
	}
	if m == nil {
		t.Fatal("no persister section in the report")
	}
	window := uint64(math.Round(p.AckedPerSec * cfg.Duration.Seconds()))
	if !m.Drained || m.Stored < window || m.Stored > p.Acked {
		t.Errorf("stored %d (drained %v), want between the window's %d and all %d acked posts",
			m.Stored, m.Drained, window, p.Acked)
	}
	if m.LagP99 <= 0 || m.LagP50 <= 0 || m.LagP50 > m.LagP99 || m.LagMean <= 0 {
		t.Errorf("lag p50 %v p99 %v mean %v", m.LagP50, m.LagP99, m.LagMean)
	}
	if m.Inserts == 0 || m.BatchMean <= 0 || m.PendingSamples == 0 {
		t.Errorf("inserts %d, batch mean %v, pending samples %d", m.Inserts, m.BatchMean, m.PendingSamples)
	}
}

func TestMetricsFlag(t *testing.T) {
	for _, bad := range []string{"http://10.0.0.1:8080/metrics", "ftp://127.0.0.1/metrics"} {
		if _, err := parseFlags([]string{"-subs", "0", "-metrics", bad}); err == nil {
			t.Errorf("-metrics %s accepted", bad)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("# TYPE other counter\nother 1\n"))
	}))
	defer srv.Close()
	w := &metricsWatch{s: newScraper([]string{srv.URL})}
	w.window(context.Background(), time.Now(), time.Now())
	if _, err := w.drain(context.Background(), time.Now(), 0, 0); err == nil || !strings.Contains(err.Error(), metricLag) {
		t.Errorf("endpoint without %s: err %v", metricLag, err)
	}
}

func TestPromHist(t *testing.T) {
	const text = `# HELP h x
# TYPE h histogram
h_bucket{le="0.1"} 10
h_bucket{le="0.2"} 60
h_bucket{le="0.5"} 100
h_bucket{le="+Inf"} 100
h_sum 20
h_count 100
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(text))
	}))
	defer srv.Close()
	mfs, err := newScraper(nil).get(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	h, err := histOf(mfs["h"].GetMetric()[0])
	if err != nil {
		t.Fatal(err)
	}
	var sum promHist
	for range 2 {
		if err := sum.add(h); err != nil {
			t.Fatal(err)
		}
	}
	d := sum.sub(h) // = h
	for _, c := range []struct{ q, want float64 }{{0.05, 0.05}, {0.1, 0.1}, {0.5, 0.18}, {0.9, 0.425}, {1, 0.5}} {
		if got := d.quantile(c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("q%v = %v, want %v", c.q, got, c.want)
		}
	}
	if d.Count != 100 || d.Sum != 20 {
		t.Errorf("count %v sum %v", d.Count, d.Sum)
	}
	// Beyond the last finite bound: that bound.
	over := promHist{Bounds: []float64{1}, Cum: []float64{1}, Count: 10}
	if got := over.quantile(0.99); got != 1 {
		t.Errorf("overflow quantile %v", got)
	}
	if err := sum.add(promHist{Bounds: []float64{1}, Cum: []float64{1}, Count: 1}); err == nil {
		t.Error("added histograms with different buckets")
	}
}
