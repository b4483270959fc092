package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestProbeURL(t *testing.T) {
	for addr, want := range map[string]string{
		"":               "http://127.0.0.1:8080/readyz",
		":8080":          "http://127.0.0.1:8080/readyz",
		":9000":          "http://127.0.0.1:9000/readyz",
		"0.0.0.0:8081":   "http://127.0.0.1:8081/readyz",
		"[::]:8082":      "http://127.0.0.1:8082/readyz",
		"127.0.0.1:8083": "http://127.0.0.1:8083/readyz",
		"[::1]:8084":     "http://[::1]:8084/readyz",
	} {
		if got := probeURL(addr, "/readyz"); got != want {
			t.Errorf("probeURL(%q) = %s, want %s", addr, got, want)
		}
	}
}

func TestProbe(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	if err := probe(srv.URL + "/readyz"); err != nil {
		t.Fatalf("ready: %v", err)
	}
	status.Store(http.StatusServiceUnavailable)
	if err := probe(srv.URL + "/readyz"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("draining: err = %v, want 503", err)
	}
	srv.Close()
	if err := probe(srv.URL + "/readyz"); err == nil {
		t.Fatal("server down: no error")
	}
}
