package app_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestFlood is not a test but the load behind the README's memory figure: with
// CHAT_FLOOD_NATS_URL set it publishes CHAT_FLOOD_ROOMS (default 200,000) messages of
// 4,000 characters, each to a new room, straight to JetStream. Skipped otherwise.
func TestFlood(t *testing.T) {
	url := os.Getenv("CHAT_FLOOD_NATS_URL")
	if url == "" {
		t.Skip("CHAT_FLOOD_NATS_URL not set")
	}
	rooms := 200000
	if s := os.Getenv("CHAT_FLOOD_ROOMS"); s != "" {
		var err error
		if rooms, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	pub := chat.NewPoster(js)
	text := strings.Repeat("f", 4000)
	prefix := fmt.Sprint("flood-", time.Now().UnixNano(), "-")
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)); i <= rooms; i = int(next.Add(1)) {
				if _, _, err := pub.Post(context.Background(), chat.Post{Room: prefix + strconv.Itoa(i), Name: "flood", Message: text}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d posts in %v", rooms, time.Since(start).Round(time.Millisecond))
}
