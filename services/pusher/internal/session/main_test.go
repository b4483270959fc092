package session

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/services/pusher/internal/hub"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

// Every connection a test opens ends with it: no reader, writer, replay or timer
// goroutine outlives the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testConfig is a test server's settings: the hub's and the session's in one literal.
type testConfig struct {
	Window        int
	QueueSize     int
	ReplayBatch   int
	PingInterval  time.Duration
	PongTimeout   time.Duration
	WriteTimeout  time.Duration
	MaxSubs       int
	FlushInterval time.Duration
}

func (c testConfig) hub() hub.Config {
	return hub.Config{Window: c.Window, QueueSize: c.QueueSize, ReplayBatch: c.ReplayBatch,
		PingInterval: c.PingInterval, MaxSubs: c.MaxSubs, FlushInterval: c.FlushInterval}
}

func (c testConfig) session(gc GateConfig) Config {
	return Config{PongTimeout: c.PongTimeout, WriteTimeout: c.WriteTimeout, Gate: gc}
}

// testServer serves a hub with an open gate (no authentication, caps or command rate)
// at ws://.../ws; the hub's metrics go to reg.
func testServer(t testing.TB, cfg testConfig, backlog hub.Backlog, reg *prometheus.Registry) (*hub.Hub, string) {
	t.Helper()
	var r prometheus.Registerer // no typed nil: the hub registers only when it is not nil
	if reg != nil {
		r = reg
	}
	h := hub.New(cfg.hub(), 0, time.Unix(1, 0), backlog, r, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(NewHandler(h, cfg.session(GateConfig{}), nil))
	t.Cleanup(srv.Close)
	return h, "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

// metric is the value of the counter or gauge name (no labels) in reg.
func metric(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += value(m)
		}
		return sum
	}
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return 0
}
