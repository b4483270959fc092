package dedup

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	dropped *prometheus.CounterVec
	checks  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, f *Filter) metrics {
	m := metrics{
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_pusher_duplicates_dropped_total",
			Help: "Later stream copies of a message id not pushed, by path (live, replay)."}, []string{"path"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_pusher_dedup_store_checks_total",
			Help: "Batched MongoDB checks of message ids the index could not decide, by result (ok, error, skipped)."}, []string{"result"}),
	}
	ids := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chat_pusher_dedup_index_ids",
		Help: "Message ids in the node's duplicate index."}, func() float64 {
		f.mu.Lock()
		defer f.mu.Unlock()
		return float64(f.idx.n)
	})
	horizon := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chat_pusher_dedup_horizon_seconds",
		Help: "How far back the duplicate index covers every explicit id."}, func() float64 {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.now().Sub(f.idx.horizon).Seconds()
	})
	if reg != nil {
		reg.MustRegister(m.dropped, m.checks, ids, horizon)
	}
	return m
}
