package persist

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the persister's Prometheus metrics (names chat_persister_*).
type metrics struct {
	batchSize    prometheus.Histogram
	writeSeconds prometheus.Histogram
	lagSeconds   prometheus.Histogram
	stored       prometheus.Counter
	changes      prometheus.Counter
	deadLettered prometheus.Counter
	redeliveries prometheus.Counter
	errors       prometheus.Counter
	pending      prometheus.Gauge
	ackPending   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chat_persister_batch_size",
			Help:    "Messages per processed batch.",
			Buckets: []float64{1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500},
		}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chat_persister_write_seconds",
			Help:    "Duration of one batch's writes to MongoDB (insert and changes), failed ones included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		lagSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "chat_persister_lag_seconds",
			Help: "Time from JetStream storing a message or change to its MongoDB write completing (per stored event).",
			// Fine around 250 ms so that a p99 near the target can be read off the buckets.
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
				0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30},
		}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_persister_stored_total",
			Help: "Messages written to MongoDB, then acked (a redelivered, already stored message counts again).",
		}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_persister_changes_total",
			Help: "Changes (edits, deletions, reactions) applied to MongoDB, then acked (a redelivered one counts again).",
		}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_persister_deadletter_total",
			Help: "Invalid payloads republished to chat.deadletter and terminated.",
		}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_persister_redeliveries_total",
			Help: "Messages received that JetStream had delivered before.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_persister_errors_total",
			Help: "Failed batch writes, dead-letter publishes, acks and consumer interruptions.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chat_persister_consumer_pending",
			Help: "Messages in CHAT not yet delivered to the persister consumer (polled).",
		}),
		ackPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chat_persister_consumer_ack_pending",
			Help: "Messages delivered to the persister consumer and not yet acked (polled).",
		}),
	}
	all := []prometheus.Collector{m.batchSize, m.writeSeconds, m.lagSeconds, m.stored, m.changes, m.deadLettered,
		m.redeliveries, m.errors, m.pending, m.ackPending}
	for _, c := range all {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register persister metrics: %w", err)
		}
	}
	return m, nil
}
