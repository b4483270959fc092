package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/auth"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// adminStats is the part of GET /admin/api/stats the tests read.
type adminStats struct {
	Nodes []struct {
		Service  string             `json:"service"`
		Node     string             `json:"node"`
		Version  string             `json:"version"`
		Ready    bool               `json:"ready"`
		Draining bool               `json:"draining"`
		Uptime   float64            `json:"uptime_seconds"`
		Metrics  map[string]float64 `json:"metrics"`
	} `json:"nodes"`
	Stream *struct {
		Messages uint64 `json:"messages"`
		FirstSeq uint64 `json:"first_seq"`
		LastSeq  uint64 `json:"last_seq"`
		Epoch    string `json:"epoch"`
	} `json:"stream"`
	DeadLetter *struct {
		Messages uint64 `json:"messages"`
	} `json:"deadletter"`
	Consumer *struct {
		Pending    uint64 `json:"pending"`
		AckPending int    `json:"ack_pending"`
		AckFloor   uint64 `json:"ack_floor"`
	} `json:"consumer"`
	Rooms []struct {
		Room        string  `json:"room"`
		Subscribers int     `json:"subscribers"`
		Rate        float64 `json:"messages_per_second"`
	} `json:"rooms"`
	Errors []string `json:"errors"`
}

type deadLetters struct {
	Total uint64 `json:"total"`
	Items []struct {
		Seq     uint64 `json:"seq"`
		Reason  string `json:"reason"`
		Subject string `json:"subject"`
		Preview string `json:"preview"`
	} `json:"items"`
}

// adminDo sends a request to the admin routes and returns status and body.
func adminDo(t *testing.T, method, url, token string, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func getAdmin[T any](t *testing.T, url, token string) T {
	t.Helper()
	status, b := adminDo(t, http.MethodGet, url, token)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, status, b)
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, b)
	}
	return v
}

// publishDeadLetter puts a dead letter into DEADLETTER as the persister does: data, the
// reason and the original subject in headers.
func publishDeadLetter(t *testing.T, js jetstream.JetStream, subject, reason string, data []byte) uint64 {
	t.Helper()
	m := nats.NewMsg(chat.DeadLetterSubject)
	m.Data = data
	m.Header.Set(chat.HeaderDeadLetterReason, reason)
	m.Header.Set(chat.HeaderOriginalSubject, subject)
	ack, err := js.PublishMsg(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// lockedBuffer collects the system's JSON log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// records returns the log records whose msg is msg.
func (l *lockedBuffer) records(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.b.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// nonLoopbackIP is an address of this host that is not loopback, for a client that the
// server sees as remote.
func nonLoopbackIP(t *testing.T) net.IP {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP
		}
	}
	t.Fatal("this host has no non-loopback IPv4 address to test a remote client with")
	return nil
}

// connectNATS connects to the system's embedded NATS server.
func connectNATS(t *testing.T, s *system) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect("nats://" + s.cfg.EmbeddedNATSAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// TestAdminAllInOne: with authentication off the admin page and its routes answer
// loopback clients only (a client on another address gets 403, X-Forwarded-For is not
// believed). The stats list every node (the all-in-one's api, persister and pusher,
// each answering chat.ops.stats), the streams, the consumer and the busiest room; dead
// letters are listed, discarded and requeued (and stored), each action logged.
func TestAdminAllInOne(t *testing.T) {
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	cfg := testConfig(t)
	cfg.API.TrustedProxies = []string{"0.0.0.0/0"} // X-Forwarded-For believed for rate limits, never for /admin
	sys := startSystemOn(t, cfg, ln, slog.New(slog.NewJSONHandler(logs, nil)))
	base := sys.url
	_, js := connectNATS(t, sys)

	// Access: loopback yes, another address no, whatever X-Forwarded-For says.
	status, page := adminDo(t, http.MethodGet, base+"/admin", "")
	if status != http.StatusOK || !bytes.Contains(page, []byte(`<script src="/admin/admin.js"`)) {
		t.Fatalf("GET /admin: %d %.200s", status, page)
	}
	remote := fmt.Sprintf("http://%s:%d", nonLoopbackIP(t), ln.Addr().(*net.TCPAddr).Port)
	for _, path := range []string{"/admin", "/admin/admin.js", "/admin/api/stats", "/admin/api/deadletters"} {
		if status, b := adminDo(t, http.MethodGet, remote+path, "", "X-Forwarded-For", "127.0.0.1"); status != http.StatusForbidden {
			t.Fatalf("GET %s from a non-loopback client: %d %s, want 403", path, status, b)
		}
	}
	if status, b := adminDo(t, http.MethodDelete, remote+"/admin/api/deadletters/1", ""); status != http.StatusForbidden {
		t.Fatalf("DELETE from a non-loopback client: %d %s, want 403", status, b)
	}
	if status, _ := adminDo(t, http.MethodGet, remote+"/healthz", ""); status != http.StatusOK {
		t.Fatalf("the rest of the api from a non-loopback client: %d", status)
	}

	// Stats: three nodes, ready, with their numbers; a busy room.
	ws := dialWS(t, base, "?room=hot")
	if f := ws.next(); f["type"] != "subscribed" {
		t.Fatalf("got %v", f)
	}
	var st adminStats
	chattest.Eventually(t, 30*time.Second, func() bool {
		if status, _ := postJSON(t, base+"/rooms/hot/messages", map[string]string{"name": "a", "message": "hi"}); status != http.StatusCreated {
			t.Fatalf("post: %d", status)
		}
		st = getAdmin[adminStats](t, base+"/admin/api/stats", "")
		return len(st.Nodes) == 3 && len(st.Rooms) > 0 && st.Rooms[0].Room == "hot" && st.Rooms[0].Rate > 0
	}, "stats: %+v", &st)
	services := map[string]bool{}
	for _, n := range st.Nodes {
		services[n.Service] = true
		if !n.Ready || n.Draining || n.Version == "" || n.Uptime <= 0 || n.Node == "" {
			t.Errorf("node %+v", n)
		}
		if n.Metrics[`chat_build_info{commit="",service="chat",version="(devel)"}`] != 1 { // the all-in-one's
			t.Errorf("%s: no build info among %v", n.Service, n.Metrics)
		}
	}
	if !services["api"] || !services["persister"] || !services["pusher"] {
		t.Fatalf("services %v", services)
	}
	for _, n := range st.Nodes {
		var want string
		switch n.Service {
		case "api":
			want = `chat_api_posts_total{status="201"}`
		case "persister":
			want = "chat_persister_lag_seconds_count"
		case "pusher":
			want = "chat_pusher_frames_sent_total"
		}
		if n.Metrics[want] <= 0 {
			t.Errorf("%s: %s = %v", n.Service, want, n.Metrics[want])
		}
		for k := range n.Metrics {
			if strings.HasPrefix(k, "chat_") && !strings.HasPrefix(k, "chat_"+n.Service+"_") && !strings.HasPrefix(k, "chat_build_info") {
				t.Errorf("%s reports another service's series %s", n.Service, k)
			}
		}
	}
	if st.Rooms[0].Subscribers != 1 {
		t.Errorf("room hot: %+v", st.Rooms[0])
	}
	if st.Stream == nil || st.Stream.LastSeq == 0 || st.Stream.Messages == 0 || st.Stream.Epoch == "" ||
		st.Consumer == nil || st.DeadLetter == nil || len(st.Errors) != 0 {
		t.Fatalf("streams: %+v %+v %+v %v", st.Stream, st.Consumer, st.DeadLetter, st.Errors)
	}

	// Dead letters: an invalid post is dead-lettered by the persister and listed.
	if _, err := js.Publish(t.Context(), "chat.messages.dl", []byte(`{"name":"x"}`)); err != nil {
		t.Fatal(err)
	}
	var dls deadLetters
	chattest.Eventually(t, 10*time.Second, func() bool {
		dls = getAdmin[deadLetters](t, base+"/admin/api/deadletters", "")
		return len(dls.Items) == 1
	}, "dead letters: %+v", &dls)
	d := dls.Items[0]
	if d.Subject != "chat.messages.dl" || d.Reason == "" || d.Preview != `{"name":"x"}` || dls.Total != 1 {
		t.Fatalf("dead letter %+v", dls)
	}
	// Discard: gone, logged; a cross-origin request is refused first.
	del := fmt.Sprintf("%s/admin/api/deadletters/%d", base, d.Seq)
	if status, b := adminDo(t, http.MethodDelete, del, "", "Origin", "http://evil.example"); status != http.StatusForbidden {
		t.Fatalf("cross-origin discard: %d %s", status, b)
	}
	if status, b := adminDo(t, http.MethodDelete, del, "", "Origin", base); status != http.StatusOK {
		t.Fatalf("discard: %d %s", status, b)
	}
	if status, b := adminDo(t, http.MethodDelete, del, ""); status != http.StatusNotFound {
		t.Fatalf("discard again: %d %s", status, b)
	}
	if dls = getAdmin[deadLetters](t, base+"/admin/api/deadletters", ""); len(dls.Items) != 0 || dls.Total != 0 {
		t.Fatalf("after discard: %+v", dls)
	}

	// Requeue: a valid message dead-lettered for a transient reason is stored on requeue.
	seq := publishDeadLetter(t, js, "chat.messages.requeued", "test: transient", []byte(`{"name":"Ann","message":"back again"}`))
	status, b := adminDo(t, http.MethodPost, fmt.Sprintf("%s/admin/api/deadletters/%d/requeue", base, seq), "")
	if status != http.StatusOK {
		t.Fatalf("requeue: %d %s", status, b)
	}
	chattest.Eventually(t, 10*time.Second, func() bool {
		h := getHistory(t, base+"/rooms/requeued/messages")
		return len(h) == 1 && h[0]["message"] == "back again" && h[0]["name"] == "Ann"
	}, "requeued message not in history")
	if status, b := adminDo(t, http.MethodPost, fmt.Sprintf("%s/admin/api/deadletters/%d/requeue", base, seq), ""); status != http.StatusNotFound {
		t.Fatalf("requeue again: %d %s", status, b)
	}
	// Only to chat.messages subjects.
	bad := publishDeadLetter(t, js, "chat.ops.stats", "test", []byte(`{}`))
	if status, b := adminDo(t, http.MethodPost, fmt.Sprintf("%s/admin/api/deadletters/%d/requeue", base, bad), ""); status != http.StatusUnprocessableEntity {
		t.Fatalf("requeue to chat.ops.stats: %d %s", status, b)
	}
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/admin/api/deadletters?limit=0"}, {http.MethodGet, "/admin/api/deadletters?limit=201"},
		{http.MethodPost, "/admin/api/deadletters/x/requeue"}, {http.MethodDelete, "/admin/api/deadletters/0"},
	} {
		if status, b := adminDo(t, c.method, base+c.path, ""); status != http.StatusBadRequest {
			t.Errorf("%s %s: %d %s, want 400", c.method, c.path, status, b)
		}
	}
	if status, _ := adminDo(t, http.MethodPost, base+"/admin/api/stats", ""); status != http.StatusMethodNotAllowed {
		t.Errorf("POST stats: %d", status)
	}

	// Both actions are logged with stable keys.
	chattest.Eventually(t, 5*time.Second, func() bool {
		return len(logs.records("deadletter discarded")) == 1 && len(logs.records("deadletter requeued")) == 1
	}, "action logs")
	dis, req := logs.records("deadletter discarded")[0], logs.records("deadletter requeued")[0]
	if dis["deadletter_seq"] != float64(d.Seq) || dis["subject"] != "chat.messages.dl" || !strings.HasPrefix(dis["operator"].(string), "loopback ") {
		t.Errorf("discard log %v", dis)
	}
	if req["deadletter_seq"] != float64(seq) || req["subject"] != "chat.messages.requeued" || req["stream_seq"] == nil ||
		req["reason"] != "test: transient" || req["request_id"] == "" {
		t.Errorf("requeue log %v", req)
	}
}

// TestAdminWithAuth: with authentication on, the JSON routes need a token whose roles
// claim contains "admin" (none: 401, without the role: 403), from any address; the page
// itself holds no data and is served to anyone.
func TestAdminWithAuth(t *testing.T) {
	const secret = "admin-auth-secret-admin-auth-secret"
	sys := authSystem(t, secret)
	sign := func(claims map[string]any) string {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
		tok, err := auth.Sign([]byte(secret), claims)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	stats := sys.url + "/admin/api/stats"
	if status, b := adminDo(t, http.MethodGet, stats, ""); status != http.StatusUnauthorized {
		t.Fatalf("no token: %d %s", status, b)
	}
	if status, b := adminDo(t, http.MethodGet, stats, "not-a-token"); status != http.StatusUnauthorized {
		t.Fatalf("bad token: %d %s", status, b)
	}
	for _, roles := range []any{nil, "moderator", []string{"administrator"}} {
		c := map[string]any{"sub": "mallory"}
		if roles != nil {
			c["roles"] = roles
		}
		if status, b := adminDo(t, http.MethodGet, stats, sign(c)); status != http.StatusForbidden {
			t.Fatalf("roles %v: %d %s", roles, status, b)
		}
		if status, b := adminDo(t, http.MethodDelete, sys.url+"/admin/api/deadletters/1", sign(c)); status != http.StatusForbidden {
			t.Fatalf("discard with roles %v: %d %s", roles, status, b)
		}
	}
	for _, roles := range []any{"moderator,admin", []string{"admin"}} {
		st := getAdmin[adminStats](t, stats, sign(map[string]any{"sub": "root", "roles": roles}))
		if st.Stream == nil {
			t.Fatalf("roles %v: %+v", roles, st)
		}
	}
	if status, page := adminDo(t, http.MethodGet, sys.url+"/admin", ""); status != http.StatusOK || !bytes.Contains(page, []byte("admin.js")) {
		t.Fatalf("page: %d", status)
	}
}
