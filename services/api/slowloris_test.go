package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/natsconn"
	"github.com/chatrt/chat/services/api/app"
)

// TestSlowlorisDoesNotStarveOthers: clients that send their headers one byte at a time
// are cut off by ReadHeaderTimeout, and meanwhile every normal post is served.
func TestSlowlorisDoesNotStarveOthers(t *testing.T) {
	n := chattest.StartNATS(t)
	m := chattest.StartMongo(t)
	cfg := app.Config{
		NATS: natsconn.NATS{URL: n.URL()}, MongoURI: m.URI(), Stream: chat.DefaultStreamOptions(),
		ShutdownTimeout: 5 * time.Second, PublishTimeout: 5 * time.Second, PublishMaxPending: 64,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { done <- serve(ctx, cfg, log, ln) }()
	defer func() {
		cancel()
		<-done
	}()
	chattest.Eventually(t, 20*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "api never became ready")

	const slow = 50
	cut := make(chan time.Duration, slow)
	start := time.Now()
	for range slow {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			req := "POST /messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Slow: " + strings.Repeat("a", 1000)
			for i := 0; i < len(req); i++ {
				if _, err := c.Write([]byte{req[i]}); err != nil {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			cut <- time.Since(start)
		}()
	}
	// Normal clients are served while the slow ones hold their connections.
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range 20 {
		resp, err := client.Post("http://"+addr+"/messages", "application/json", strings.NewReader(`{"name":"a","message":"b"}`))
		if err != nil {
			t.Fatalf("post %d during slowloris: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("post %d during slowloris: %d", i, resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// ReadHeaderTimeout (5s) ends every slow connection: the server closes it and the
	// next write fails.
	for range slow {
		select {
		case d := <-cut:
			if d > 12*time.Second {
				t.Fatalf("slow client cut after %v", d)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("a slowloris connection was never cut")
		}
	}
}
