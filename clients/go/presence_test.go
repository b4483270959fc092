package chatclient_test

import (
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	chatclient "github.com/chatrt/chat/clients/go"
	"github.com/chatrt/chat/harness/chattest"
)

// frames keeps the non-message frames a subscription got, decoded.
type frames struct {
	mu  sync.Mutex
	got []map[string]any
}

func (f *frames) option() chatclient.SubscribeOption {
	return chatclient.OnFrame(func(fr chatclient.Frame) {
		var m map[string]any
		_ = json.Unmarshal(fr.Data, &m)
		f.mu.Lock()
		f.got = append(f.got, m)
		f.mu.Unlock()
	})
}

// find returns the first frame for which match is true.
func (f *frames) find(match func(map[string]any) bool) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.got {
		if match(m) {
			return m
		}
	}
	return nil
}

// TestSystemPresenceAndTyping: Presence(name) opts in under that name (the other member's
// presence lists it), Typing reaches the other member's OnFrame, and after Stop Typing
// answers ErrNotConnected. A subscription without Presence gets neither kind of frame.
func TestSystemPresenceAndTyping(t *testing.T) {
	s := startSystem(t)
	p := s.pusher(pusherConfig())
	c := newClient(t, []string{p.url})
	var annFrames, bobFrames, plainFrames frames
	ann := subscribe(t, c, "presence", &collector{}, chatclient.Presence("Ann"), annFrames.option())
	subscribe(t, c, "presence", &collector{}, plainFrames.option())
	subscribe(t, c, "presence", &collector{}, chatclient.Presence("Bob"), bobFrames.option())

	isType := func(typ string) func(map[string]any) bool {
		return func(m map[string]any) bool { return m["type"] == typ }
	}
	chattest.Eventually(t, 10*time.Second, func() bool { return bobFrames.find(isType("presence")) != nil }, "Bob got no presence frame")
	// Bob's frame shows what the room's watchers were last told (Bob himself comes in the
	// next join frame): Ann, named, is in it.
	pres := bobFrames.find(isType("presence"))
	if b, _ := json.Marshal(pres["members"]); string(b) != `[{"connections":1,"name":"Ann"}]` {
		t.Errorf("Bob's presence members %s, want Ann's one connection", b)
	}

	if err := ann.Typing(); err != nil {
		t.Fatal(err)
	}
	chattest.Eventually(t, 10*time.Second, func() bool { return bobFrames.find(isType("typing")) != nil }, "Bob got no typing frame")
	if ty := bobFrames.find(isType("typing")); ty["name"] != "Ann" || ty["room"] != "presence" {
		t.Errorf("typing frame %v", ty)
	}
	if m := plainFrames.find(func(m map[string]any) bool { return m["type"] != "subscribed" }); m != nil {
		t.Errorf("a subscription without Presence got %v", m)
	}

	ann.Stop()
	<-ann.Closed()
	if err := ann.Typing(); !errors.Is(err, chatclient.ErrNotConnected) {
		t.Errorf("Typing after Stop: %v, want ErrNotConnected", err)
	}
}
