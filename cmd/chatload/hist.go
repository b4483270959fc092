package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Latencies are kept in microseconds in log-linear buckets: exact below 64 µs, then 32
// buckets per power of two (about 3 % precision), up to ~2^40 µs. Buckets are updated with
// atomic adds so that thousands of reader goroutines can share one histogram.
const (
	histLinear  = 64
	histSub     = 32
	histBuckets = histLinear + 40*histSub
)

// hist is a mergeable latency histogram; the zero value is empty.
type hist struct {
	Counts []uint64 `json:"counts"` // per bucket, trailing zeros trimmed
	MaxUS  uint64   `json:"max_us"`
	SumUS  uint64   `json:"sum_us"`
}

type atomicHist struct {
	counts [histBuckets]atomic.Uint64
	max    atomic.Uint64
	sum    atomic.Uint64
}

func bucketOf(us uint64) int {
	if us < histLinear {
		return int(us)
	}
	shift := bits.Len64(us) - 6 // us>>shift in [32, 63]
	i := histLinear + (shift-1)*histSub + int(us>>shift) - histSub
	return min(i, histBuckets-1)
}

// bucketHigh is the largest value of bucket i.
func bucketHigh(i int) uint64 {
	if i < histLinear {
		return uint64(i)
	}
	shift := (i-histLinear)/histSub + 1
	top := uint64((i-histLinear)%histSub + histSub)
	return (top+1)<<shift - 1
}

func (h *atomicHist) record(d time.Duration) {
	us := uint64(max(d, 0) / time.Microsecond)
	h.counts[bucketOf(us)].Add(1)
	h.sum.Add(us)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			break
		}
	}
}

func (h *atomicHist) snapshot() hist {
	var out hist
	last := -1
	counts := make([]uint64, histBuckets)
	for i := range h.counts {
		if counts[i] = h.counts[i].Load(); counts[i] != 0 {
			last = i
		}
	}
	out.Counts = counts[:last+1]
	out.MaxUS, out.SumUS = h.max.Load(), h.sum.Load()
	return out
}

func (h *hist) merge(o hist) {
	if len(o.Counts) > len(h.Counts) {
		h.Counts = append(h.Counts, make([]uint64, len(o.Counts)-len(h.Counts))...)
	}
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.MaxUS = max(h.MaxUS, o.MaxUS)
	h.SumUS += o.SumUS
}

func (h *hist) count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// quantile returns the q-quantile in milliseconds (upper bound of its bucket, capped at max).
func (h *hist) quantile(q float64) float64 {
	n := h.count()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			return float64(min(bucketHigh(i), h.MaxUS)) / 1000
		}
	}
	return float64(h.MaxUS) / 1000
}

// latencySummary is what the report shows of a histogram, in milliseconds.
type latencySummary struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func (h *hist) summary() latencySummary {
	n := h.count()
	s := latencySummary{Count: n, P50: h.quantile(0.5), P90: h.quantile(0.9), P99: h.quantile(0.99),
		P999: h.quantile(0.999), Max: float64(h.MaxUS) / 1000}
	if n > 0 {
		s.Mean = float64(h.SumUS) / float64(n) / 1000
	}
	return s
}
