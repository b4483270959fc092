package app_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/services/api/app"
)

func TestHistory(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := time.Date(2026, 11, 26, 12, 0, 0, 123_000_000, time.UTC)
	var msgs []chat.Message
	for i := 1; i <= 120; i++ { // room hist at seqs 2, 4, ..., 240; room other at the odd seqs
		msgs = append(msgs,
			chat.Message{ID: fmt.Sprintf("h%d", i), Room: "hist", Name: "n", Message: fmt.Sprintf("m%d", i), SentAt: base.Add(time.Duration(i) * time.Second), Seq: uint64(2 * i)},
			chat.Message{ID: fmt.Sprintf("o%d", i), Room: "other", Name: "n", Message: "o", SentAt: base, Seq: uint64(2*i - 1)})
	}
	msgs = append(msgs,
		chat.Message{ID: "g1", Room: "general", Name: "<b>", Message: xss, SentAt: base, Seq: 1000},
		chat.Message{ID: "g2", Room: "general", Name: "n", Message: "second", SentAt: base, Seq: 1001})
	if err := e.store.InsertMany(ctx, msgs); err != nil {
		t.Fatal(err)
	}

	seqs := func(t *testing.T, path string) []uint64 {
		t.Helper()
		resp, body := e.do("GET", path, "")
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		var out []uint64
		for _, m := range decodeMessages(t, body) {
			if m.Room == "" || m.ID == "" {
				t.Fatalf("GET %s: incomplete message %+v", path, m)
			}
			out = append(out, m.Seq)
		}
		return out
	}
	span := func(from, to uint64) []uint64 { // even seqs from..to
		var s []uint64
		for q := from; q <= to; q += 2 {
			s = append(s, q)
		}
		return s
	}
	cases := []struct {
		path string
		want []uint64
	}{
		{"/rooms/hist/messages", span(142, 240)},
		{"/rooms/hist/messages?limit=3", span(236, 240)},
		{"/rooms/hist/messages?limit=200", span(2, 240)},
		{"/rooms/hist/messages?before=21&limit=5", span(12, 20)},
		{"/rooms/hist/messages?before=20&limit=5", span(10, 18)},
		{"/rooms/hist/messages?before=7", span(2, 6)},
		{"/rooms/hist/messages?before=2", nil},
		{"/rooms/hist/messages?before=0", nil},
		{"/rooms/hist/messages?before=18446744073709551615&limit=2", span(238, 240)},
		{"/rooms/hist/messages?after=21&limit=3", span(22, 26)},
		{"/rooms/hist/messages?after=0&limit=2", span(2, 4)},
		{"/rooms/hist/messages?after=200", span(202, 240)},
		{"/rooms/hist/messages?after=240", nil},
		{"/rooms/hist/messages?after=18446744073709551615", nil},
		{"/rooms/empty/messages", nil},
		{"/messages", []uint64{1000, 1001}},
		{"/messages?room=", []uint64{1000, 1001}},
		{"/messages?room=hist&limit=2", span(238, 240)},
		{"/messages?room=hist&after=100&limit=2", span(102, 104)},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			got := seqs(t, tc.path)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("seqs %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("empty is []", func(t *testing.T) {
		_, body := e.do("GET", "/rooms/nobody-here/messages", "")
		if string(body) != "[]" {
			t.Fatalf("body %q, want []", body)
		}
	})

	t.Run("text byte-exact", func(t *testing.T) {
		_, body := e.do("GET", "/messages?limit=1&before=1001", "")
		want := `[{"id":"g1","room":"general","name":"<b>","message":"<img src=x onerror=alert(1)> & \"quoted\" é 🙂","sent_at":"2026-11-26T12:00:00.123Z","seq":1000}]`
		if string(body) != want {
			t.Fatalf("body\n%s\nwant\n%s", body, want)
		}
	})

	bad := []string{
		"/rooms/hist/messages?limit=0",
		"/rooms/hist/messages?limit=201",
		"/rooms/hist/messages?limit=abc",
		"/rooms/hist/messages?limit=",
		"/rooms/hist/messages?limit=-1",
		"/rooms/hist/messages?before=abc",
		"/rooms/hist/messages?after=-1",
		"/rooms/hist/messages?after=",
		"/rooms/hist/messages?after=1.5",
		"/rooms/hist/messages?before=10&after=2",
		"/rooms/bad.room/messages",
		"/rooms/" + strings.Repeat("r", 65) + "/messages",
		"/messages?room=bad!",
		"/messages?limit=500",
	}
	for _, path := range bad {
		t.Run("400 "+path, func(t *testing.T) {
			resp, body := e.do("GET", path, "")
			wantError(t, resp, body, http.StatusBadRequest)
		})
	}
}

func TestHistoryMongoDown(t *testing.T) {
	e := newEnv(t, func(c *app.Config) { c.HistoryTimeout = time.Second })
	e.mongo.Stop()
	resp, body := e.do("GET", "/messages", "")
	wantError(t, resp, body, http.StatusServiceUnavailable)
	wantRetryAfter(t, resp)
	resp, body = e.do("GET", "/readyz", "")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"mongo":"unreachable"`) {
		t.Fatalf("readyz with MongoDB down: %d %s", resp.StatusCode, body)
	}
	// Posting does not need MongoDB.
	if resp, body := e.postJSON("/messages", `{"name":"a","message":"b"}`); resp.StatusCode != http.StatusCreated {
		t.Fatalf("post with MongoDB down: %d %s", resp.StatusCode, body)
	}
	e.mongo.Start()
	chattest.Eventually(t, 20*time.Second, func() bool {
		resp, _ := e.do("GET", "/messages", "")
		return resp.StatusCode == http.StatusOK
	}, "history did not recover after MongoDB restarted")
}
