package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// tick posts into the tick room: -soak-tick-rate posts/s while ticking is set, none
// otherwise. Every pusher consumes every message, so this makes each one allocate (and
// collect) at a steady pace while no client is connected.
func (s *soak) tick(ctx context.Context, ticking *atomic.Bool) {
	room := s.cfg.RoomPrefix + "-" + s.runID + "-gc"
	const workers = 4
	every := time.Duration(float64(time.Second) * workers / s.sc.TickRate)
	var n atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := time.Now()
			for {
				if !sleepUntil(ctx, next) {
					return
				}
				next = next.Add(every)
				if !ticking.Load() {
					next = time.Now().Add(50 * time.Millisecond)
					continue
				}
				key := room + "-" + strconv.FormatInt(n.Add(1), 10)
				if _, err := s.post(ctx, room, key, s.sc.TickSize); err != nil {
					if ctx.Err() == nil {
						s.fail("tick %s: %v", key, err)
					}
					return
				}
				s.add(&s.rep.Posts.Ticks, 1)
			}
		}()
	}
	wg.Wait()
}

// measure samples every pusher once each has completed two GCs while no client is
// connected and the tick room holds at least minTicks posts.
func (s *soak) measure(ctx context.Context, ticking *atomic.Bool, minTicks int) ([]pusherSample, error) {
	ctx, cancel := context.WithTimeout(ctx, s.sc.MeasureTimeout)
	defer cancel()
	ticking.Store(true)
	defer ticking.Store(false)
	first := make([]pusherSample, len(s.sc.Metrics))
	for i, u := range s.sc.Metrics {
		p, err := s.scr.samplePusher(ctx, u)
		if err != nil {
			return nil, err
		}
		first[i] = p
	}
	for {
		if !sleepUntil(ctx, time.Now().Add(250*time.Millisecond)) {
			return nil, fmt.Errorf("measure: not two GCs on every pusher within %v", s.sc.MeasureTimeout)
		}
		s.mu.Lock()
		ticks := s.rep.Posts.Ticks
		s.mu.Unlock()
		if ticks < minTicks {
			continue
		}
		out := make([]pusherSample, len(first))
		done := true
		for i, u := range s.sc.Metrics {
			p, err := s.scr.samplePusher(ctx, u)
			if err != nil {
				return nil, err
			}
			if p.Start != first[i].Start { // restarted meanwhile: count its GCs anew
				first[i] = p
			}
			out[i] = p
			done = done && p.GCs >= first[i].GCs+2
		}
		if done {
			return out, nil
		}
	}
}
