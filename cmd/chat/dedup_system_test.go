package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// collect reads message frames until the one with seq last; "seq:id:text" each.
func (c *wsClient) collect(last uint64) []string {
	c.t.Helper()
	var got []string
	for {
		f := c.next()
		if f["type"] != "message" {
			continue
		}
		got = append(got, fmt.Sprintf("%v:%v:%v", f["seq"], f["id"], f["message"]))
		if f["seq"].(float64) >= float64(last) {
			return got
		}
	}
}

// TestSystemNothingPushedTwice: another service stores one id twice in the stream
// (without Nats-Msg-Id, the second copy with other text; and with it, again after the
// duplicate window). The whole system pushes each id once, the first copy, which is what
// history holds: live, and resuming from the window, JetStream and MongoDB.
func TestSystemNothingPushedTwice(t *testing.T) {
	cfg := testConfig(t)
	for _, o := range []*chat.StreamOptions{&cfg.API.Stream, &cfg.Persister.Stream, &cfg.Pusher.Stream} {
		o.Duplicates = 300 * time.Millisecond
	}
	sys := startSystemWith(t, cfg)
	live := dialWS(t, sys.url, "?room=dup")
	if f := live.next(); f["type"] != "subscribed" {
		t.Fatalf("got %v", f)
	}
	nc, err := nats.Connect("nats://" + cfg.EmbeddedNATSAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	publish := func(msgID, payload string) *jetstream.PubAck {
		t.Helper()
		m := nats.NewMsg(chat.Subject("dup"))
		m.Data = []byte(payload)
		if msgID != "" {
			m.Header.Set(chat.HeaderMsgID, msgID)
		}
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return ack
	}
	if status, _ := postJSON(t, sys.url+"/rooms/dup/messages", map[string]string{"name": "Ann", "message": "posted"}); status != http.StatusCreated {
		t.Fatalf("POST = %d", status)
	}
	publish("", `{"id":"ext-1","name":"svc","message":"first"}`)
	publish("", `{"id":"ext-1","name":"svc","message":"second, other text"}`)
	publish("ext-2", `{"name":"svc","message":"two"}`)
	chattest.Eventually(t, 10*time.Second, func() bool {
		return !publish("ext-2", `{"name":"svc","message":"two again"}`).Duplicate
	}, "ext-2 was never stored twice")
	status, end := postJSON(t, sys.url+"/rooms/dup/messages", map[string]string{"name": "Ann", "message": "end"})
	if status != http.StatusCreated {
		t.Fatalf("POST = %d", status)
	}
	last := uint64(end["seq"].(float64))

	var history []string
	chattest.Eventually(t, 10*time.Second, func() bool {
		history = nil
		for _, m := range getHistory(t, sys.url+"/rooms/dup/messages") {
			history = append(history, fmt.Sprintf("%v:%v:%v", m["seq"], m["id"], m["message"]))
		}
		return len(history) > 0 && slices.Contains(history, fmt.Sprintf("%v:%v:end", end["seq"], end["id"]))
	}, "history lacks the last post")
	if len(history) != 4 || history[1][len(history[1])-6:] != ":first" || history[2][len(history[2])-4:] != ":two" {
		t.Fatalf("history %v: want posted, the first copies of ext-1 and ext-2, end", history)
	}
	check := func(what string, got []string) {
		t.Helper()
		if !slices.Equal(got, history) {
			t.Errorf("%s got\n  %v\nwant (history)\n  %v", what, got, history)
		}
	}
	check("live", live.collect(last))
	check("window resume", dialWS(t, sys.url, "?room=dup&since=0").collect(last))

	// A restarted node has an empty window and index: JetStream serves the resume.
	sys.stop()
	sys = startSystemWith(t, cfg)
	check("JetStream resume", dialWS(t, sys.url, "?room=dup&since=0").collect(last))
	// The stream purged: MongoDB serves it.
	st, err := js.Stream(ctx, chat.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	check("MongoDB resume", dialWS(t, sys.url, "?room=dup&since=0").collect(last))
}
