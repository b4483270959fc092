package ops

import (
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Flatten returns the series of g that belong to service (see Stats.Metrics): families
// named chat_<service>_*, chat_build_info (service="chat" in the all-in-one),
// go_goroutines and process_resident_memory_bytes. A registry shared by several services
// (the all-in-one) thus gives each its own numbers. NaN and infinite values are left out.
func Flatten(g prometheus.Gatherer, service string) (map[string]float64, error) {
	fams, err := g.Gather()
	out := make(map[string]float64)
	prefix := "chat_" + service + "_"
	for _, f := range fams {
		name := f.GetName()
		switch {
		case strings.HasPrefix(name, prefix), name == "go_goroutines", name == "process_resident_memory_bytes":
		case name == "chat_build_info":
		default:
			continue
		}
		for _, m := range f.GetMetric() {
			labels := m.GetLabel()
			key := seriesKey(name, labels)
			switch {
			case m.Counter != nil:
				put(out, key, m.Counter.GetValue())
			case m.Gauge != nil:
				put(out, key, m.Gauge.GetValue())
			case m.Untyped != nil:
				put(out, key, m.Untyped.GetValue())
			case m.Histogram != nil:
				put(out, seriesKey(name+"_sum", labels), m.Histogram.GetSampleSum())
				put(out, seriesKey(name+"_count", labels), float64(m.Histogram.GetSampleCount()))
			case m.Summary != nil:
				put(out, seriesKey(name+"_sum", labels), m.Summary.GetSampleSum())
				put(out, seriesKey(name+"_count", labels), float64(m.Summary.GetSampleCount()))
			}
		}
	}
	return out, err
}

// put sets out[key] to v unless v is NaN or infinite: JSON has no such numbers, and one
// of them made the whole stats answer fail to encode, so the node vanished from /admin.
func put(out map[string]float64, key string, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	out[key] = v
}

// seriesKey is name{a="x",b="y"} with the labels sorted by name, or name without labels.
func seriesKey(name string, labels []*dto.LabelPair) string {
	if len(labels) == 0 {
		return name
	}
	ls := append([]*dto.LabelPair(nil), labels...)
	sort.Slice(ls, func(i, j int) bool { return ls[i].GetName() < ls[j].GetName() })
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.GetName())
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l.GetValue()))
	}
	b.WriteByte('}')
	return b.String()
}
