package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// The persister's own metrics that -metrics reads (see services/persister/internal/persist).
const (
	metricLag        = "chat_persister_lag_seconds"
	metricWrite      = "chat_persister_write_seconds"
	metricBatch      = "chat_persister_batch_size"
	metricPending    = "chat_persister_consumer_pending"
	metricAckPending = "chat_persister_consumer_ack_pending"
	pendingEvery     = 250 * time.Millisecond
)

// promHist is a Prometheus histogram as scraped: cumulative counts per upper bound.
type promHist struct {
	Bounds []float64 // upper bounds, ascending, without +Inf
	Cum    []float64 // cumulative counts per bound
	Count  float64   // all samples (the +Inf bucket)
	Sum    float64
}

// add adds o (same buckets) into h; an empty h takes o's buckets.
func (h *promHist) add(o promHist) error {
	if len(h.Bounds) == 0 && h.Count == 0 {
		h.Bounds = append([]float64(nil), o.Bounds...)
		h.Cum = make([]float64, len(o.Bounds))
	}
	if len(o.Bounds) != len(h.Bounds) {
		return fmt.Errorf("histograms with different buckets (%d and %d)", len(h.Bounds), len(o.Bounds))
	}
	for i, b := range o.Bounds {
		if b != h.Bounds[i] {
			return fmt.Errorf("histograms with different buckets (%v and %v)", h.Bounds[i], b)
		}
		h.Cum[i] += o.Cum[i]
	}
	h.Count += o.Count
	h.Sum += o.Sum
	return nil
}

// sub returns h - o, the samples observed between two scrapes (o the earlier one).
func (h promHist) sub(o promHist) promHist {
	d := promHist{Bounds: h.Bounds, Cum: make([]float64, len(h.Cum)), Count: h.Count - o.Count, Sum: h.Sum - o.Sum}
	for i := range h.Cum {
		d.Cum[i] = h.Cum[i]
		if i < len(o.Cum) {
			d.Cum[i] -= o.Cum[i]
		}
	}
	return d
}

// quantile returns the q-quantile like PromQL's histogram_quantile: linear interpolation
// inside the bucket holding the rank (from 0 in the first bucket); a rank beyond the
// last finite bound returns that bound. Its resolution is the bucket layout.
func (h promHist) quantile(q float64) float64 {
	if h.Count <= 0 || len(h.Bounds) == 0 {
		return 0
	}
	rank := q * h.Count
	lower, prev := 0.0, 0.0
	for i, b := range h.Bounds {
		if h.Cum[i] >= rank && h.Cum[i] > prev {
			return lower + (b-lower)*(rank-prev)/(h.Cum[i]-prev)
		}
		lower, prev = b, h.Cum[i]
	}
	return h.Bounds[len(h.Bounds)-1]
}

func histOf(m *dto.Metric) (promHist, error) {
	ph := m.GetHistogram()
	if ph == nil {
		return promHist{}, fmt.Errorf("not a histogram")
	}
	h := promHist{Count: float64(ph.GetSampleCount()), Sum: ph.GetSampleSum()}
	for _, b := range ph.GetBucket() {
		if math.IsInf(b.GetUpperBound(), +1) {
			continue
		}
		h.Bounds = append(h.Bounds, b.GetUpperBound())
		h.Cum = append(h.Cum, float64(b.GetCumulativeCount()))
	}
	return h, nil
}

// scrape is one read of every -metrics endpoint: histograms summed over the endpoints
// (each persister replica counts its own inserts), consumer gauges the largest of them
// (every replica reports the same shared consumer).
type scrape struct {
	Lag, Write, Batch   promHist
	HasLag              bool
	Pending, AckPending float64
}

// scraper reads the -metrics endpoints (Prometheus text format).
type scraper struct {
	urls   []string
	client *http.Client
}

func newScraper(urls []string) *scraper {
	return &scraper{urls: urls, client: &http.Client{Timeout: 5 * time.Second}}
}

func (s *scraper) scrape(ctx context.Context) (scrape, error) {
	var out scrape
	for _, u := range s.urls {
		mfs, err := s.get(ctx, u)
		if err != nil {
			return out, err
		}
		for name, dst := range map[string]*promHist{metricLag: &out.Lag, metricWrite: &out.Write, metricBatch: &out.Batch} {
			mf := mfs[name]
			if mf == nil || len(mf.GetMetric()) == 0 {
				continue
			}
			h, err := histOf(mf.GetMetric()[0])
			if err == nil {
				err = dst.add(h)
			}
			if err != nil {
				return out, fmt.Errorf("%s %s: %w", u, name, err)
			}
			out.HasLag = out.HasLag || name == metricLag
		}
		out.Pending = max(out.Pending, gauge(mfs[metricPending]))
		out.AckPending = max(out.AckPending, gauge(mfs[metricAckPending]))
	}
	return out, nil
}

func gauge(mf *dto.MetricFamily) float64 {
	if mf == nil || len(mf.GetMetric()) == 0 {
		return 0
	}
	return mf.GetMetric()[0].GetGauge().GetValue()
}

func (s *scraper) get(ctx context.Context, u string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("scrape %s: status %d", u, resp.StatusCode)
	}
	var p expfmt.TextParser // v0.64: the zero value is ready to use
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", u, err)
	}
	return mfs, nil
}

// metricsResult is what the run reports from the services' own metrics.
type metricsResult struct {
	URLs []string `json:"urls"`
	// Stored is the number of messages stored between the scrape right before the window
	// and the one after the drain; the lag quantiles are over exactly those messages.
	Stored uint64 `json:"stored"`
	// Drained: before the last scrape the persister stored nothing for one sampling
	// period after storing at least the window's acknowledged posts, or for a second.
	Drained      bool    `json:"drained"`
	DrainSeconds float64 `json:"drain_seconds"` // from the end of publishing to the last scrape (quiet period included)
	LagMean      float64 `json:"lag_mean_ms"`
	LagP50       float64 `json:"lag_p50_ms"`
	LagP90       float64 `json:"lag_p90_ms"`
	LagP99       float64 `json:"lag_p99_ms"`
	Inserts      uint64  `json:"inserts"`
	BatchMean    float64 `json:"batch_mean"`
	WriteMean    float64 `json:"write_mean_ms"`
	WriteP99     float64 `json:"write_p99_ms"`
	// Consumer pending (not yet delivered to the persister), sampled every 250 ms in the
	// window; the persister refreshes the gauge every CHAT_PENDING_INTERVAL.
	PendingSamples int     `json:"pending_samples"`
	PendingMax     float64 `json:"pending_max"`
	PendingLast    float64 `json:"pending_last"`
	AckPendingMax  float64 `json:"ack_pending_max"`
}

// metricsWatch scrapes before the window, samples the consumer gauges during it, and
// computes the deltas after the drain.
type metricsWatch struct {
	s      *scraper
	mu     sync.Mutex
	before scrape
	res    metricsResult
	err    error
}

func (w *metricsWatch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

// window scrapes at from, then samples the gauges every 250 ms until to.
func (w *metricsWatch) window(ctx context.Context, from, to time.Time) {
	sleepCtx(ctx, time.Until(from))
	s, err := w.s.scrape(ctx)
	if err != nil {
		w.fail(err)
		return
	}
	if !s.HasLag {
		w.fail(fmt.Errorf("-metrics: no %s in %v", metricLag, w.s.urls))
		return
	}
	w.mu.Lock()
	w.before = s
	w.mu.Unlock()
	t := time.NewTicker(pendingEvery)
	defer t.Stop()
	for ctx.Err() == nil && time.Now().Before(to) {
		select {
		case <-ctx.Done():
		case <-t.C:
			s, err := w.s.scrape(ctx)
			if err != nil {
				w.fail(err)
				continue
			}
			w.mu.Lock()
			w.res.PendingSamples++
			w.res.PendingMax = max(w.res.PendingMax, s.Pending)
			w.res.AckPendingMax = max(w.res.AckPendingMax, s.AckPending)
			w.res.PendingLast = s.Pending
			w.mu.Unlock()
		}
	}
}

// drain waits, at most limit after publishing ended (end), until the persister has stored
// at least want messages since the first scrape and then nothing more for one sampling
// period, and computes the result from the last scrape.
func (w *metricsWatch) drain(ctx context.Context, end time.Time, limit time.Duration, want uint64) (metricsResult, error) {
	w.mu.Lock()
	before, res, err := w.before, w.res, w.err
	w.mu.Unlock()
	res.URLs = w.s.urls
	if err != nil || !before.HasLag {
		return res, err
	}
	deadline := end.Add(limit)
	var last scrape
	prev, still := -1.0, 0
	for {
		if last, err = w.s.scrape(ctx); err != nil {
			return res, err
		}
		n := last.Lag.Count - before.Lag.Count
		if n == prev {
			still++
		} else {
			still = 0
		}
		// Publishing has ended: nothing stored for a period after the window's posts, or
		// for a second in any case (a post stored before the first scrape is not counted).
		if (n >= float64(want) && still >= 1) || still >= 4 {
			res.Drained = true
			break
		}
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			break
		}
		prev = n
		sleepCtx(ctx, pendingEvery)
	}
	res.DrainSeconds = time.Since(end).Seconds()
	lag, wr, batch := last.Lag.sub(before.Lag), last.Write.sub(before.Write), last.Batch.sub(before.Batch)
	res.Stored = uint64(lag.Count)
	if lag.Count > 0 {
		res.LagMean = 1000 * lag.Sum / lag.Count
		res.LagP50, res.LagP90, res.LagP99 = 1000*lag.quantile(0.5), 1000*lag.quantile(0.9), 1000*lag.quantile(0.99)
	}
	res.Inserts = uint64(wr.Count)
	if wr.Count > 0 {
		res.WriteMean, res.WriteP99 = 1000*wr.Sum/wr.Count, 1000*wr.quantile(0.99)
	}
	if batch.Count > 0 {
		res.BatchMean = batch.Sum / batch.Count
	}
	return res, nil
}
