package httpapi

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	posts       *prometheus.CounterVec
	changes     *prometheus.CounterVec
	ackSeconds  prometheus.Histogram
	history     *prometheus.CounterVec
	rateLimited prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		posts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_api_posts_total",
			Help: "POSTed messages by HTTP status of the answer.",
		}, []string{"status"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_api_changes_total",
			Help: "Changes to messages by route (edit, delete, react, unreact) and HTTP status of the answer.",
		}, []string{"route", "status"}),
		ackSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chat_api_publish_ack_seconds",
			Help:    "Time from publishing a message to its JetStream ack.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		history: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_api_history_requests_total",
			Help: "History page requests by HTTP status of the answer.",
		}, []string{"status"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_api_rate_limited_total",
			Help: "Posts and changes refused with 429 by the per-client rate limit.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.posts, m.changes, m.ackSeconds, m.history, m.rateLimited} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}
