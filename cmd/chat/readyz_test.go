package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

type readyFunc func(context.Context) error

func (f readyFunc) Ready(ctx context.Context) error { return f(ctx) }

// TestReadyzComposesReady: /readyz is 200 only when every service's Ready is nil, and
// names what is not ready.
func TestReadyzComposesReady(t *testing.T) {
	ok := readyFunc(func(context.Context) error { return nil })
	draining := readyFunc(func(context.Context) error { return errors.New("draining") })
	for _, tc := range []struct {
		name     string
		services []service
		status   int
		body     map[string]string
	}{
		{"all ready", []service{{"api", ok}, {"persister", ok}, {"pusher", ok}}, http.StatusOK,
			map[string]string{"api": "ready", "persister": "ready", "pusher": "ready"}},
		{"one draining", []service{{"api", ok}, {"persister", ok}, {"pusher", draining}}, http.StatusServiceUnavailable,
			map[string]string{"api": "ready", "persister": "ready", "pusher": "draining"}},
	} {
		rec := httptest.NewRecorder()
		readyz(tc.services).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: body %q: %v", tc.name, rec.Body, err)
		}
		if rec.Code != tc.status || len(body) != len(tc.body) {
			t.Fatalf("%s: %d %v, want %d %v", tc.name, rec.Code, body, tc.status, tc.body)
		}
		for k, v := range tc.body {
			if body[k] != v {
				t.Errorf("%s: %s = %q, want %q", tc.name, k, body[k], v)
			}
		}
	}
}
