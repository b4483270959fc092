package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/auth"
	"github.com/gorilla/websocket"
)

// TestAuthAllInOne: one CHAT_AUTH_HS256_SECRET configures both the api and the pusher;
// a token for "team-*" posts and subscribes there, and is refused elsewhere on both.
func TestAuthAllInOne(t *testing.T) {
	const secret = "all-in-one-secret-all-in-one-secret"
	t.Setenv("CHAT_AUTH_HS256_SECRET", secret)
	env, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if env.API.HS256Secret != secret || env.Pusher.HS256Secret != secret {
		t.Fatal("CHAT_AUTH_HS256_SECRET does not reach both the api and the pusher")
	}
	cfg := testConfig(t)
	cfg.API.Config = env.API.Config
	cfg.Pusher.Config = env.Pusher.Config
	sys := startSystemWith(t, cfg)
	tok, err := auth.Sign([]byte(secret), map[string]any{"sub": "ann", "name": "Ann", "rooms": "team-*",
		"exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	ws := "ws" + strings.TrimPrefix(sys.url, "http") + "/ws"

	// Without a token the socket opens but must authenticate first: a command closes it 4401.
	anon, _, err := websocket.DefaultDialer.Dial(ws+"?room=team-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	_ = anon.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","room":"team-b"}`))
	_ = anon.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, data, err := anon.ReadMessage(); !websocket.IsCloseError(err, 4401) {
		t.Fatalf("unauthenticated command: got %s %v, want close 4401", data, err)
	}
	if _, resp, err := websocket.DefaultDialer.Dial(ws+"?room=general&access_token="+tok, nil); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("forbidden room: %v", err)
	}
	conn, _, err := websocket.DefaultDialer.Dial(ws+"?room=team-a&access_token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &wsClient{t: t, conn: conn}
	if f := c.next(); f["type"] != "subscribed" {
		t.Fatalf("got %v", f)
	}

	post := func(path, token string) int {
		req, _ := http.NewRequest("POST", sys.url+path, strings.NewReader(`{"name":"Mallory","message":"hi"}`))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := post("/rooms/team-a/messages", ""); s != http.StatusUnauthorized {
		t.Fatalf("post without token: %d", s)
	}
	if s := post("/rooms/general/messages", tok); s != http.StatusForbidden {
		t.Fatalf("post to a forbidden room: %d", s)
	}
	if s := post("/rooms/team-a/messages", tok); s != http.StatusCreated {
		t.Fatalf("post: %d", s)
	}
	if f := c.next(); f["type"] != "message" || f["name"] != "Ann" || f["message"] != "hi" {
		t.Fatalf("pushed %v, want Ann's message", f)
	}
}
