package embedded

import (
	"bytes"
	"log/slog"
	"testing"
)

// TestLazyHandlerLogsLikeItsInner: attributes and groups added with With/WithGroup come
// out as the inner handler would write them, and only records at its level are written.
func TestLazyHandlerLogsLikeItsInner(t *testing.T) {
	var direct, lazy bytes.Buffer
	opts := &slog.HandlerOptions{Level: slog.LevelWarn}
	for _, c := range []struct {
		buf *bytes.Buffer
		log *slog.Logger
	}{
		{&direct, slog.New(slog.NewJSONHandler(&direct, opts))},
		{&lazy, slog.New(&lazyHandler{inner: slog.NewJSONHandler(&lazy, opts)})},
	} {
		l := c.log.With("a", 1).WithGroup("g").With("b", "two")
		l.Debug("hidden", "query", "SELECT 1")
		l.Warn("shown", "c", 3)
		c.log.With("d", 4).Error("other")
	}
	strip := func(b []byte) string { return string(bytes.ReplaceAll(b, []byte(`"time":`), nil)) }
	if direct.Len() == 0 || bytes.Contains(lazy.Bytes(), []byte("hidden")) {
		t.Fatalf("lazy wrote %q", lazy.String())
	}
	// The times differ; compare the rest line by line.
	dl, ll := bytes.Split(direct.Bytes(), []byte("\n")), bytes.Split(lazy.Bytes(), []byte("\n"))
	if len(dl) != len(ll) {
		t.Fatalf("direct %q\nlazy %q", direct.String(), lazy.String())
	}
	for i := range dl {
		d, l := dl[i], ll[i]
		if j := bytes.Index(d, []byte(`"level"`)); j >= 0 {
			d = d[j:]
		}
		if j := bytes.Index(l, []byte(`"level"`)); j >= 0 {
			l = l[j:]
		}
		if strip(d) != strip(l) {
			t.Errorf("line %d: direct %s, lazy %s", i, d, l)
		}
	}
}
