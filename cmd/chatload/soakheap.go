package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// pusherSample is what the soak reads from one pusher's /metrics (the Go collector's
// metrics every service registers).
type pusherSample struct {
	Goroutines float64 `json:"goroutines"`       // go_goroutines
	HeapAlloc  float64 `json:"heap_alloc"`       // go_memstats_heap_alloc_bytes
	HeapInuse  float64 `json:"heap_inuse"`       // go_memstats_heap_inuse_bytes
	NextGC     float64 `json:"next_gc"`          // go_memstats_next_gc_bytes: the heap goal the last GC set
	GOGC       float64 `json:"gogc"`             // go_gc_gogc_percent
	GCs        float64 `json:"gcs"`              // go_gc_duration_seconds_count
	LiveHeap   float64 `json:"live_heap"`        // NextGC / (1 + GOGC/100), see liveHeap
	Start      float64 `json:"start_time_s"`     // process_start_time_seconds: a restart changes it
	Scraped    string  `json:"scraped,omitzero"` // when
}

// liveHeap estimates the heap the last GC found live from the goal it set: Go's goal is
// live + (live + stacks + globals) × GOGC/100, so goal / (1 + GOGC/100) is the live heap
// plus a small share of stacks and globals. Unlike heap_alloc or heap_inuse, which grow
// with the garbage made since that GC (up to GOGC % of the live heap), it only changes
// when a GC completes, so two samples after a GC compare what was kept, not when they
// were taken.
func liveHeap(nextGC, gogc float64) float64 {
	if gogc <= 0 { // GOGC=off or not reported: the goal says nothing; fall back to it
		return nextGC
	}
	return nextGC / (1 + gogc/100)
}

func metricValue(mfs map[string]*dto.MetricFamily, name string) (float64, bool) {
	mf := mfs[name]
	if mf == nil || len(mf.GetMetric()) == 0 {
		return 0, false
	}
	m := mf.GetMetric()[0]
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue(), true
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue(), true
	case m.GetSummary() != nil:
		return float64(m.GetSummary().GetSampleCount()), true
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue(), true
	}
	return 0, false
}

// samplePusher scrapes one pusher's /metrics.
func (s *scraper) samplePusher(ctx context.Context, url string) (pusherSample, error) {
	mfs, err := s.get(ctx, url)
	if err != nil {
		return pusherSample{}, err
	}
	var p pusherSample
	var missing []string
	for name, dst := range map[string]*float64{
		"go_goroutines": &p.Goroutines, "go_memstats_heap_alloc_bytes": &p.HeapAlloc,
		"go_memstats_heap_inuse_bytes": &p.HeapInuse, "go_memstats_next_gc_bytes": &p.NextGC,
		"go_gc_duration_seconds": &p.GCs,
	} {
		v, ok := metricValue(mfs, name)
		if !ok {
			missing = append(missing, name)
		}
		*dst = v
	}
	if len(missing) > 0 {
		return p, fmt.Errorf("%s: no %s (is the Go collector registered?)", url, strings.Join(missing, ", "))
	}
	p.GOGC, _ = metricValue(mfs, "go_gc_gogc_percent") // absent on old client libraries: falls back to next_gc
	p.Start, _ = metricValue(mfs, "process_start_time_seconds")
	p.LiveHeap = liveHeap(p.NextGC, p.GOGC)
	p.Scraped = time.Now().UTC().Format(time.RFC3339Nano)
	return p, nil
}

// pusherFigures are one pusher's baseline and end samples and the verdict on them.
type pusherFigures struct {
	URL       string       `json:"url"`
	Baseline  pusherSample `json:"baseline"`
	End       pusherSample `json:"end"`
	Restarted bool         `json:"restarted"` // a different process at the end than at the baseline
	// HeapGrowth and GoroutineGrowth are End - Baseline (live heap estimate, goroutines).
	HeapGrowth      float64  `json:"heap_growth_bytes"`
	GoroutineGrowth float64  `json:"goroutine_growth"`
	Failures        []string `json:"failures,omitempty"`
}

// judge compares the end with the baseline against the thresholds.
func (f *pusherFigures) judge(maxHeapGrowth float64, maxGoroutineGrowth int) {
	f.Restarted = f.Baseline.Start != 0 && f.End.Start != f.Baseline.Start
	f.HeapGrowth = f.End.LiveHeap - f.Baseline.LiveHeap
	f.GoroutineGrowth = f.End.Goroutines - f.Baseline.Goroutines
	if f.HeapGrowth > maxHeapGrowth {
		f.Failures = append(f.Failures, fmt.Sprintf("%s: live heap grew %.1f MiB (%.1f → %.1f MiB), over the %.1f MiB allowed",
			f.URL, f.HeapGrowth/(1<<20), f.Baseline.LiveHeap/(1<<20), f.End.LiveHeap/(1<<20), maxHeapGrowth/(1<<20)))
	}
	if f.GoroutineGrowth > float64(maxGoroutineGrowth) {
		f.Failures = append(f.Failures, fmt.Sprintf("%s: goroutines grew by %.0f (%.0f → %.0f), over the %d allowed",
			f.URL, f.GoroutineGrowth, f.Baseline.Goroutines, f.End.Goroutines, maxGoroutineGrowth))
	}
}
