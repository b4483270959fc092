package app_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/chatrt/chat/pkg/chat"
)

// scrape reads the sum of a metric's samples from the node's /metrics.
func (n *node) scrape(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http" + strings.TrimSuffix(strings.TrimPrefix(n.url, "ws"), "/ws") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum
}

// Publishing into far more rooms than CHAT_WINDOW_BYTES holds evicts the quiet ones, and a
// resume in an evicted room is served from JetStream: exactly the missed messages, then
// live, no gap, no duplicate.
func TestResumeInEvictedRoom(t *testing.T) {
	e := newEnv(t, chat.DefaultStreamOptions())
	cfg := defaultConfig()
	cfg.WindowBytes = 256 << 10
	cfg.RoomIdle = -1
	n := e.startPusher(cfg)
	sync := dial(t, n.url+"?room=sync")
	sync.next()

	text := strings.Repeat("z", 4000)
	post := func(room string) chat.Message {
		m, _, err := e.pub.Post(context.Background(), chat.Post{Room: room, Name: "n", Message: text})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	var target []chat.Message
	for i := 0; i < 4; i++ {
		target = append(target, post("target"))
	}
	for i := 0; i < 200; i++ { // 800 KB through rooms nobody watches
		post(fmt.Sprint("filler-", i))
	}
	sync.expect(e.publish("sync", 1)) // the node has handled everything before it

	if ev := n.scrape(t, "chat_pusher_room_evictions_total"); ev < 100 {
		t.Fatalf("%v rooms evicted, want most of 200", ev)
	}
	if wb := n.scrape(t, "chat_pusher_window_bytes"); wb > float64(cfg.WindowBytes) {
		t.Fatalf("window bytes %v over the budget %d", wb, cfg.WindowBytes)
	}
	if r := n.scrape(t, "chat_pusher_rooms"); r >= 200 {
		t.Fatalf("%v rooms in memory", r)
	}
	c := dial(t, fmt.Sprintf("%s?room=target&since=%d", n.url, target[0].Seq))
	if f := c.next(); f.Type != "subscribed" {
		t.Fatalf("got %+v", f)
	}
	c.expect(target[1:])
	all := dial(t, n.url+"?room=target&since=0")
	all.next()
	all.expect(target)
	if b := n.scrape(t, `chat_pusher_replays_total{source="backlog"}`); b != 2 {
		t.Fatalf("%v resumes from the backlog, want both (the room was evicted)", b)
	}
	live := []chat.Message{post("target"), post("target")}
	c.expect(live)
	all.expect(live)
}
