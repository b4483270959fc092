package httpapi

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// logServer is the middleware around a handler answering the status in ?status=, logging
// as JSON at level into the returned buffer.
func logServer(level slog.Level) (http.Handler, *bytes.Buffer) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level}))
	s := &Server{log: log, access: &accessLog{log: log}}
	return s.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("status") {
		case "404":
			w.WriteHeader(http.StatusNotFound)
		case "503":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusCreated)
		}
	})), &buf
}

type accessLine struct {
	Level   string `json:"level"`
	Msg     string `json:"msg"`
	Path    string `json:"path"`
	Status  int    `json:"status"`
	Sampled int64  `json:"sampled"`
}

func lines(t *testing.T, buf *bytes.Buffer) []accessLine {
	t.Helper()
	var out []accessLine
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var a accessLine
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		out = append(out, a)
	}
	buf.Reset()
	return out
}

func request(h http.Handler, path string) {
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, path, nil))
}

// TestAccessLogDebugLogsEveryRequest: at CHAT_LOG_LEVEL=debug every request has a line.
func TestAccessLogDebugLogsEveryRequest(t *testing.T) {
	h, buf := logServer(slog.LevelDebug)
	for range 50 {
		request(h, "/messages")
	}
	request(h, "/readyz")
	got := lines(t, buf)
	if len(got) != 51 {
		t.Fatalf("%d lines for 51 requests", len(got))
	}
	for _, l := range got {
		if l.Level != "DEBUG" || l.Msg != "http request" || l.Sampled != 0 {
			t.Fatalf("line %+v", l)
		}
	}
}

// TestAccessLogInfoSamples: at info a burst of requests gives one line per status class,
// and the next line says how many requests it stands for; probes are not logged.
func TestAccessLogInfoSamples(t *testing.T) {
	h, buf := logServer(slog.LevelInfo)
	for range 100 {
		request(h, "/messages")
		request(h, "/messages?status=404")
		request(h, "/messages?status=503")
		request(h, "/readyz")
	}
	got := lines(t, buf)
	if len(got) != 3 {
		t.Fatalf("%d lines for a burst of 3 classes: %+v", len(got), got)
	}
	want := map[int]string{201: "INFO", 404: "INFO", 503: "WARN"}
	for _, l := range got {
		if want[l.Status] != l.Level || l.Sampled != 1 || l.Path != "/messages" {
			t.Errorf("line %+v", l)
		}
		delete(want, l.Status)
	}
	if len(want) != 0 {
		t.Errorf("no line for %v", want)
	}
}

// TestSamplerCounts: a line stands for every request since the previous line.
func TestSamplerCounts(t *testing.T) {
	var s sampler
	t0 := time.Unix(1000, 0)
	if n, ok := s.take(t0); !ok || n != 1 {
		t.Fatalf("first: %d %v", n, ok)
	}
	for i := range 99 {
		if _, ok := s.take(t0.Add(time.Duration(i) * time.Millisecond)); ok {
			t.Fatalf("request %d within a second got a line", i)
		}
	}
	if n, ok := s.take(t0.Add(sampleEvery)); !ok || n != 100 {
		t.Fatalf("after a second: %d %v, want 100 (99 skipped + this one)", n, ok)
	}
	if _, ok := s.take(t0.Add(sampleEvery + time.Millisecond)); ok {
		t.Fatal("a second line within a second")
	}
}
