package ops

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A NaN or infinite series is left out, so the node's stats still encode as JSON.
func TestFlattenLeavesOutNonFiniteValues(t *testing.T) {
	reg := prometheus.NewRegistry()
	for name, v := range map[string]float64{"chat_api_ok": 3, "chat_api_nan": math.NaN(), "chat_api_inf": math.Inf(1)} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: name}, func() float64 { return v }))
	}
	m, err := Flatten(reg, "api")
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || m["chat_api_ok"] != 3 {
		t.Errorf("Flatten = %v, want only chat_api_ok=3", m)
	}
	if _, err := json.Marshal(Stats{Metrics: m}); err != nil {
		t.Errorf("stats do not encode: %v", err)
	}
}
