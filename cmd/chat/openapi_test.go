package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/auth"
	"github.com/chatrt/chat/pkg/chat"
	apiapp "github.com/chatrt/chat/services/api/app"
	persisterapp "github.com/chatrt/chat/services/persister/app"
	pusherapp "github.com/chatrt/chat/services/pusher/app"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// The headers of a websocket upgrade, and more.
func upgrade(more ...string) []string {
	return append([]string{"Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13",
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="}, more...)
}

const (
	specSecret = "openapi-test-secret-of-32-bytes-or-more"
	form       = "Content-Type: application/x-www-form-urlencoded"
	textPlain  = "Content-Type: text/plain"
	limited    = "X-Forwarded-For: 198.51.100.9" // a client whose rate limit is used up
)

// Cases on the all-in-one without authentication, after the fixture: m1 (key1) to change,
// m2 (key2) deleted, m3 (key3) to delete. One line each.
var openCases = []httpCase{
	{"", "GET", "/messages", "", nil, 200},
	{"", "GET", "/messages?room=spec&limit=2", "", nil, 200},
	{"", "GET", "/messages?room=bad!", "", nil, 400},
	{"", "GET", "/rooms/spec/messages", "", nil, 200},
	{"", "GET", "/rooms/spec/messages?after=0&limit=200", "", nil, 200},
	{"", "GET", "/rooms/spec/messages?before=99999", "", nil, 200},
	{"", "GET", "/rooms/spec/messages?before=1&after=2", "", nil, 400},
	{"", "GET", "/rooms/spec/messages?limit=0", "", nil, 400},
	{"", "GET", "/rooms/bad!/messages", "", nil, 400},

	{"", "POST", "/messages", `{"name":"Ann","message":"hi <b>&"}`, nil, 201},
	{"", "POST", "/messages", "name=Ann&message=hi&room=spec", []string{form}, 201},
	{"", "POST", "/messages", `{"name":" ","message":"hi"}`, nil, 400},
	{"", "POST", "/messages", `{"name":"Ann","message":"hi"}`, []string{textPlain}, 415},
	{"", "POST", "/messages", "{big}", nil, 413},
	{"", "POST", "/rooms/spec/messages", `{"name":"Ann","message":"once"}`, []string{"Idempotency-Key: spec-key-1"}, 201},
	{"", "POST", "/rooms/spec/messages", `{"name":"Ann","message":"once"}`, []string{"Idempotency-Key: spec-key-1"}, 201},
	{"", "POST", "/rooms/other/messages", `{"name":"Ann","message":"once"}`, []string{"Idempotency-Key: spec-key-1"}, 409},
	{"", "POST", "/messages", `{"name":"Ann","message":"once"}`, []string{"Idempotency-Key: spec-key-1"}, 409},
	{"", "POST", "/rooms/spec/messages", `{"name":"Ann","message":"x"}`, []string{"Idempotency-Key: bad key"}, 400},
	{"", "POST", "/rooms/bad!/messages", `{"name":"Ann","message":"x"}`, nil, 400},
	{"", "POST", "/rooms/spec/messages", `{"name":"Ann","message":"x","room":"other"}`, nil, 400},
	{"", "POST", "/rooms/spec/messages", "", nil, 415},
	{"", "POST", "/rooms/spec/messages", "{big}", nil, 413},

	{"", "PATCH", "/rooms/spec/messages/{m1}", `{"message":"edited"}`, []string{"Edit-Key: {key1}"}, 200},
	{"", "PATCH", "/rooms/spec/messages/{m1}", "message=edited+again", []string{form, "Edit-Key: {key1}"}, 200},
	{"", "PATCH", "/rooms/spec/messages/{m1}", `{"message":"x"}`, nil, 403},
	{"", "PATCH", "/rooms/spec/messages/{m1}", `{"message":"x"}`, []string{"Edit-Key: {key2}"}, 403},
	{"", "PATCH", "/rooms/spec/messages/{m1}", `{"message":""}`, []string{"Edit-Key: {key1}"}, 400},
	{"", "PATCH", "/rooms/spec/messages/bad%20id", `{"message":"x"}`, nil, 400},
	{"", "PATCH", "/rooms/spec/messages/nope-1", `{"message":"x"}`, []string{"Edit-Key: {key1}"}, 404},
	{"", "PATCH", "/rooms/spec/messages/{m2}", `{"message":"x"}`, []string{"Edit-Key: {key2}"}, 409},
	{"", "PATCH", "/rooms/spec/messages/{m1}", `{"message":"x"}`, []string{textPlain}, 415},
	{"", "PATCH", "/rooms/spec/messages/{m1}", "{big}", nil, 413},

	{"", "DELETE", "/rooms/spec/messages/{m3}", "", []string{"Edit-Key: {key3}"}, 200},
	{"", "DELETE", "/rooms/spec/messages/{m3}", "", []string{"Edit-Key: {key3}"}, 200},
	{"", "DELETE", "/rooms/spec/messages/{m1}", "", nil, 403},
	{"", "DELETE", "/rooms/spec/messages/nope-1", "", nil, 404},
	{"", "DELETE", "/rooms/bad!/messages/{m1}", "", nil, 400},

	{"", "POST", "/rooms/spec/messages/{m1}/reactions", `{"emoji":"👍","name":"Ann"}`, nil, 200},
	{"", "POST", "/rooms/spec/messages/{m1}/reactions", "emoji=%F0%9F%91%8D&name=Ann", []string{form}, 200},
	{"", "POST", "/rooms/spec/messages/{m1}/reactions", `{"emoji":"🎉","name":"Bob"}`, nil, 200},
	{"", "POST", "/rooms/spec/messages/{m1}/reactions", `{"emoji":"🦄","name":"Ann"}`, nil, 400},
	{"", "POST", "/rooms/spec/messages/{m1}/reactions", `{"emoji":"👍"}`, nil, 400},
	{"", "POST", "/rooms/spec/messages/nope-1/reactions", `{"emoji":"👍","name":"Ann"}`, nil, 404},
	{"", "POST", "/rooms/spec/messages/{m2}/reactions", `{"emoji":"👍","name":"Ann"}`, nil, 409},
	{"", "POST", "/rooms/spec/messages/{m1}/reactions", `{"emoji":"👍"}`, []string{textPlain}, 415},
	{"", "POST", "/rooms/spec/messages/{m1}/reactions", "{big}", nil, 413},
	{"", "DELETE", "/rooms/spec/messages/{m1}/reactions/%F0%9F%8E%89?name=Bob", "", nil, 200},
	{"", "DELETE", "/rooms/spec/messages/{m1}/reactions/%F0%9F%8E%89?name=Bob", "", nil, 200},
	{"", "DELETE", "/rooms/spec/messages/{m1}/reactions/%F0%9F%91%8D", "", nil, 400},
	{"", "DELETE", "/rooms/spec/messages/nope-1/reactions/%F0%9F%91%8D?name=Ann", "", nil, 404},
	{"", "DELETE", "/rooms/spec/messages/{m2}/reactions/%F0%9F%91%8D?name=Ann", "", nil, 409},

	{"", "POST", "/messages", `{"name":"Ann","message":"x"}`, []string{limited}, 429},
	{"", "POST", "/rooms/spec/messages", `{"name":"Ann","message":"x"}`, []string{limited}, 429},
	{"", "PATCH", "/rooms/spec/messages/{m1}", `{"message":"x"}`, []string{limited}, 429},
	{"", "DELETE", "/rooms/spec/messages/{m1}", "", []string{limited}, 429},
	{"", "POST", "/rooms/spec/messages/{m1}/reactions", `{"emoji":"👍","name":"Ann"}`, []string{limited}, 429},
	{"", "DELETE", "/rooms/spec/messages/{m1}/reactions/%F0%9F%91%8D?name=Ann", "", []string{limited}, 429},

	{"", "GET", "/rooms", "", nil, 200},
	{"", "GET", "/rooms?limit=1&before=99999", "", nil, 200},
	{"", "GET", "/rooms?limit=0", "", nil, 400},
	{"", "GET", "/rooms?limit=201", "", nil, 400},
	{"", "GET", "/rooms?before=x", "", nil, 400},
	{"", "GET", "/rooms/spec/presence", "", nil, 200},
	{"", "GET", "/rooms/bad!/presence", "", nil, 400},

	{"", "GET", "/admin", "", nil, 200},
	{"", "GET", "/admin/", "", nil, 200},
	{"", "GET", "/admin/admin.js", "", nil, 200},
	{"", "GET", "/admin/admin.css", "", nil, 200},
	{"", "GET", "/admin/api/stats", "", nil, 200},
	{"", "GET", "/admin/api/deadletters", "", nil, 200},
	{"", "GET", "/admin/api/deadletters?limit=1", "", nil, 200},
	{"", "GET", "/admin/api/deadletters?limit=0", "", nil, 400},
	{"", "GET", "/admin/api/deadletters?limit=201", "", nil, 400},
	{"", "POST", "/admin/api/deadletters/{dlRequeue}/requeue", "", []string{"Origin: http://evil.example"}, 403},
	{"", "POST", "/admin/api/deadletters/{dlRequeue}/requeue", "", nil, 200},
	{"", "POST", "/admin/api/deadletters/{dlRequeue}/requeue", "", nil, 404},
	{"", "POST", "/admin/api/deadletters/x/requeue", "", nil, 400},
	{"", "POST", "/admin/api/deadletters/{dlDup}/requeue", "", nil, 409},
	{"", "POST", "/admin/api/deadletters/{dlBadSubject}/requeue", "", nil, 422},
	{"", "DELETE", "/admin/api/deadletters/{dlDiscard}", "", []string{"Origin: http://evil.example"}, 403},
	{"", "DELETE", "/admin/api/deadletters/{dlDiscard}", "", []string{"Origin: {self}"}, 200},
	{"", "DELETE", "/admin/api/deadletters/{dlDiscard}", "", nil, 404},
	{"", "DELETE", "/admin/api/deadletters/0", "", nil, 400},
	// Authentication off: the admin paths answer loopback peers only, whatever
	// X-Forwarded-For says.
	{"remote", "GET", "/admin", "", nil, 403},
	{"remote", "GET", "/admin/", "", nil, 403},
	{"remote", "GET", "/admin/admin.js", "", nil, 403},
	{"remote", "GET", "/admin/admin.css", "", nil, 403},
	{"remote", "GET", "/admin/api/stats", "", []string{"X-Forwarded-For: 127.0.0.1"}, 403},
	{"remote", "GET", "/admin/api/deadletters", "", nil, 403},
	{"remote", "POST", "/admin/api/deadletters/1/requeue", "", nil, 403},
	{"remote", "DELETE", "/admin/api/deadletters/1", "", nil, 403},
	{"remote", "GET", "/healthz", "", nil, 200},

	{"", "GET", "/healthz", "", nil, 200},
	{"", "GET", "/readyz", "", nil, 200},
	{"", "GET", "/metrics", "", nil, 200},
	{"", "GET", "/openapi.json", "", nil, 200},
	{"api", "GET", "/readyz", "", nil, 200},
	{"pusher", "GET", "/healthz", "", nil, 200},
	{"pusher", "GET", "/readyz", "", nil, 200},
	{"pusher", "GET", "/metrics", "", nil, 200},
	{"persister", "GET", "/healthz", "", nil, 200},
	{"persister", "GET", "/readyz", "", nil, 200},
	{"persister", "GET", "/metrics", "", nil, 200},

	{"", "GET", "/ws?room=spec&since=0", "", upgrade(), 101},
	{"", "GET", "/ws?room=bad!", "", upgrade(), 400},
	{"", "GET", "/ws?since=1", "", upgrade(), 400},
	{"", "GET", "/ws?room=spec&since=-1", "", upgrade(), 400},
	{"", "GET", "/ws?room=spec", "", nil, 400},
	{"", "GET", "/ws?room=spec&presence=1&name=Bob", "", upgrade(), 101},
	{"", "GET", "/ws?room=spec&presence=true", "", upgrade(), 101},
	{"", "GET", "/ws?room=spec&presence=0", "", upgrade(), 101},
	{"", "GET", "/ws?room=spec&presence=2", "", upgrade(), 400},
	{"", "GET", "/ws?presence=1", "", upgrade(), 400},
	{"", "GET", "/ws?name=Ann", "", upgrade(), 400},
	{"", "GET", "/ws?room=spec&presence=1&name=", "", upgrade(), 400},
	{"", "GET", "/ws?room=spec&presence=1&name=%07", "", upgrade(), 400},
	{"", "GET", "/ws?room=spec&presence=1&name=" + strings.Repeat("n", 65), "", upgrade(), 400},
	{"", "GET", "/ws?room=spec", "", upgrade("Origin: http://evil.example"), 403},
	{"", "GET", "/ws", "", upgrade("X-Forwarded-For: 198.51.100.10"), 429}, // after 20 sockets from that address
	{"pusher", "GET", "/ws", "", upgrade(), 503},                           // after 1 socket: CHAT_MAX_CONNECTIONS=1
}

// Cases on the all-in-one with authentication: tokens tokA (sub a), tokB (sub b),
// tokRoom (room other only), tokNoSub, tokMod (moderator), tokBad; a1, a2 posted by tokA.
var authCases = []httpCase{
	{"auth", "GET", "/messages?room=spec", "", nil, 401},
	{"auth", "GET", "/messages?room=spec", "", []string{"Authorization: Bearer {tokRoom}"}, 403},
	{"auth", "GET", "/messages?room=spec", "", []string{"Authorization: Bearer {tokA}"}, 200},
	{"auth", "GET", "/rooms/spec/messages", "", []string{"Authorization: Bearer {tokBad}"}, 401},
	{"auth", "GET", "/rooms/spec/messages", "", []string{"Authorization: Bearer {tokRoom}"}, 403},
	{"auth", "POST", "/messages", `{"message":"x","room":"spec"}`, nil, 401},
	{"auth", "POST", "/messages", `{"message":"x","room":"spec"}`, []string{"Authorization: Bearer {tokRoom}"}, 403},
	{"auth", "POST", "/messages", `{"message":"x","room":"other"}`, []string{"Authorization: Bearer {tokRoom}"}, 201},
	{"auth", "POST", "/rooms/spec/messages", `{"message":"x"}`, []string{"Authorization: Bearer {tokBad}"}, 401},
	{"auth", "POST", "/rooms/spec/messages", `{"message":"x"}`, []string{"Authorization: Bearer {tokRoom}"}, 403},
	{"auth", "PATCH", "/rooms/spec/messages/{a1}", `{"message":"x"}`, nil, 401},
	{"auth", "PATCH", "/rooms/spec/messages/{a1}", `{"message":"x"}`, []string{"Authorization: Bearer {tokB}"}, 403},
	{"auth", "PATCH", "/rooms/spec/messages/{a1}", `{"message":"by the author"}`, []string{"Authorization: Bearer {tokA}"}, 200},
	{"auth", "PATCH", "/rooms/spec/messages/{a1}", `{"message":"by a moderator"}`, []string{"Authorization: Bearer {tokMod}"}, 200},
	{"auth", "DELETE", "/rooms/spec/messages/{a2}", "", nil, 401},
	{"auth", "DELETE", "/rooms/spec/messages/{a2}", "", []string{"Authorization: Bearer {tokB}"}, 403},
	{"auth", "DELETE", "/rooms/spec/messages/{a2}", "", []string{"Authorization: Bearer {tokMod}"}, 200},
	{"auth", "POST", "/rooms/spec/messages/{a1}/reactions", `{"emoji":"👍"}`, nil, 401},
	{"auth", "POST", "/rooms/spec/messages/{a1}/reactions", `{"emoji":"👍"}`, []string{"Authorization: Bearer {tokNoSub}"}, 403},
	{"auth", "POST", "/rooms/spec/messages/{a1}/reactions", `{"emoji":"👍"}`, []string{"Authorization: Bearer {tokB}"}, 200},
	{"auth", "DELETE", "/rooms/spec/messages/{a1}/reactions/%F0%9F%91%8D", "", nil, 401},
	{"auth", "DELETE", "/rooms/spec/messages/{a1}/reactions/%F0%9F%91%8D", "", []string{"Authorization: Bearer {tokNoSub}"}, 403},
	{"auth", "DELETE", "/rooms/spec/messages/{a1}/reactions/%F0%9F%91%8D", "", []string{"Authorization: Bearer {tokB}"}, 200},
	{"auth", "GET", "/ws?room=spec", "", upgrade("Authorization: Bearer {tokBad}"), 401},
	{"auth", "GET", "/ws?room=spec", "", upgrade("Authorization: Bearer {tokRoom}"), 403},
	{"auth", "GET", "/ws?room=spec&access_token={tokA}", "", upgrade(), 101},
	{"auth", "GET", "/ws?room=spec&presence=1&name=Ignored&access_token={tokA}", "", upgrade(), 101},
	{"auth", "GET", "/rooms", "", nil, 401},
	{"auth", "GET", "/rooms", "", []string{"Authorization: Bearer {tokRoom}"}, 200},
	{"auth", "GET", "/rooms/spec/presence", "", []string{"Authorization: Bearer {tokBad}"}, 401},
	{"auth", "GET", "/rooms/spec/presence", "", []string{"Authorization: Bearer {tokRoom}"}, 403},
	{"auth", "GET", "/rooms/spec/presence", "", []string{"Authorization: Bearer {tokA}"}, 200},
	// The admin page needs no token; its routes need the admin role.
	{"auth", "GET", "/admin", "", nil, 200},
	{"auth", "GET", "/admin/admin.js", "", nil, 200},
	{"auth", "GET", "/admin/api/stats", "", nil, 401},
	{"auth", "GET", "/admin/api/stats", "", []string{"Authorization: Bearer {tokMod}"}, 403},
	{"auth", "GET", "/admin/api/stats", "", []string{"Authorization: Bearer {tokAdmin}"}, 200},
	{"auth", "GET", "/admin/api/deadletters", "", []string{"Authorization: Bearer {tokBad}"}, 401},
	{"auth", "GET", "/admin/api/deadletters", "", []string{"Authorization: Bearer {tokA}"}, 403},
	{"auth", "GET", "/admin/api/deadletters", "", []string{"Authorization: Bearer {tokAdmin}"}, 200},
	{"auth", "GET", "/admin/api/deadletters?access_token={tokAdmin}", "", nil, 401}, // the header only
	{"auth", "POST", "/admin/api/deadletters/999999/requeue", "", nil, 401},
	{"auth", "POST", "/admin/api/deadletters/999999/requeue", "", []string{"Authorization: Bearer {tokA}"}, 403},
	{"auth", "POST", "/admin/api/deadletters/999999/requeue", "", []string{"Authorization: Bearer {tokAdmin}"}, 404},
	{"auth", "DELETE", "/admin/api/deadletters/999999", "", nil, 401},
	{"auth", "DELETE", "/admin/api/deadletters/999999", "", []string{"Authorization: Bearer {tokA}"}, 403},
	{"auth", "DELETE", "/admin/api/deadletters/999999", "", []string{"Authorization: Bearer {tokAdmin}", "Origin: http://evil.example"}, 403},
	{"auth", "DELETE", "/admin/api/deadletters/999999", "", []string{"Authorization: Bearer {tokAdmin}"}, 404},
}

// Cases with MongoDB stopped, then NATS too.
var mongoDownCases = []httpCase{
	{"", "GET", "/messages", "", nil, 503},
	{"", "GET", "/rooms/spec/messages", "", nil, 503},
	{"", "GET", "/rooms", "", nil, 503},
	{"", "GET", "/readyz", "", nil, 503},
	{"api", "GET", "/readyz", "", nil, 503},
	{"persister", "GET", "/readyz", "", nil, 503},
}

var natsDownCases = []httpCase{
	{"", "POST", "/messages", `{"name":"Ann","message":"x"}`, nil, 503},
	{"", "POST", "/rooms/spec/messages", `{"name":"Ann","message":"x"}`, nil, 503},
	{"", "PATCH", "/rooms/spec/messages/{m1}", `{"message":"x"}`, []string{"Edit-Key: {key1}"}, 503},
	{"", "DELETE", "/rooms/spec/messages/{m1}", "", []string{"Edit-Key: {key1}"}, 503},
	{"", "POST", "/rooms/spec/messages/{m1}/reactions", `{"emoji":"👍","name":"Ann"}`, nil, 503},
	{"", "DELETE", "/rooms/spec/messages/{m1}/reactions/%F0%9F%91%8D?name=Ann", "", nil, 503},
	{"pusher", "GET", "/readyz", "", nil, 503},
	{"", "GET", "/admin/api/deadletters", "", nil, 503},
	{"", "POST", "/admin/api/deadletters/1/requeue", "", nil, 503},
	{"", "DELETE", "/admin/api/deadletters/1", "", nil, 503},
}

// unreached are the documented responses no test can get, and why.
var unreached = map[string]string{
	"DELETE /rooms/{room}/messages/{id} 409": "only too many concurrent changes to one message: a race the test cannot force",
}

// TestOpenAPI validates real answers of every route, success and each error, against
// docs/openapi.yaml.
func TestOpenAPI(t *testing.T) {
	spec := loadAPISpec(t)
	n := chattest.StartNATS(t)
	m := chattest.StartMongo(t)
	cfg := testConfig(t)
	cfg.NATSURL, cfg.MongoURI = n.URL(), m.URI()
	// Each client address gets 300 posts and changes, refilled once every 100 s: the
	// cases from 127.0.0.1 stay under it, the address in `limited` exhausts it.
	cfg.API.RateLimit, cfg.API.RateBurst = 0.01, 300
	cfg.API.TrustedProxies, cfg.Pusher.TrustedProxies = []string{"127.0.0.1"}, []string{"127.0.0.1"}
	cfg.API.AllowedOrigins = []string{"http://page.example"}
	cfg.API.HistoryTimeout = time.Second
	cfg.Pusher.MaxConnectionsPerIP = 20
	// On every interface: "remote" is the same server reached from a non-loopback address.
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	sys := startSystemOn(t, cfg, ln, nil)
	authCfg := testConfig(t)
	authCfg.API.HS256Secret, authCfg.Pusher.HS256Secret = specSecret, specSecret
	authSys := startSystemWith(t, authCfg)
	f := &fixture{base: map[string]string{"": sys.url, "auth": authSys.url,
		"remote": fmt.Sprintf("http://%s:%d", nonLoopbackIP(t), ln.Addr().(*net.TCPAddr).Port)},
		vals: map[string]string{"big": `{"name":"Ann","message":"` + strings.Repeat("x", 70000) + `"}`, "self": sys.url}}
	startServices(t, cfg, n, m, f)

	// The fixture's messages, posted and deleted through validated cases.
	for i, name := range []string{"m1", "m2", "m3"} {
		_, body := spec.do(t, f, httpCase{"", "POST", "/rooms/spec/messages", `{"name":"Ann","message":"fixture ` + name + `"}`, nil, 201})
		f.vals[name], f.vals["key"+string(rune('1'+i))] = jsonField(t, body, "id"), jsonField(t, body, "edit_key")
	}
	spec.do(t, f, httpCase{"", "DELETE", "/rooms/spec/messages/{m2}", "", []string{"Edit-Key: {key2}"}, 200})
	for claims, name := range map[string]map[string]any{
		"tokA": {"sub": "a", "name": "Ann"}, "tokB": {"sub": "b", "name": "Bob"}, "tokRoom": {"sub": "r", "name": "Rae", "rooms": []string{"other"}},
		"tokNoSub": {"name": "Anon"}, "tokMod": {"sub": "m", "name": "Mod", "roles": []string{"moderator"}},
		"tokAdmin": {"sub": "root", "roles": []string{"admin"}},
	} {
		name["exp"] = time.Now().Add(time.Hour).Unix()
		tok, err := auth.Sign([]byte(specSecret), name)
		if err != nil {
			t.Fatal(err)
		}
		f.vals[claims] = tok
	}
	f.vals["tokBad"] = "not-a-token"
	for _, a := range []string{"a1", "a2"} {
		_, body := spec.do(t, f, httpCase{"auth", "POST", "/rooms/spec/messages", `{"message":"by a"}`, []string{"Authorization: Bearer {tokA}"}, 201})
		f.vals[a] = jsonField(t, body, "id")
	}

	deadLetterFixture(t, n, f)
	// A room with a named member, listed and present (the api learns both over time).
	dialWS(t, sys.url, "?room=spec&presence=1&name=Ann")
	chattest.Eventually(t, 15*time.Second, func() bool {
		var rooms []struct{ Room string }
		var pres struct{ Members []struct{ Name string } }
		getJSON(t, sys.url+"/rooms", &rooms)
		getJSON(t, sys.url+"/rooms/spec/presence", &pres)
		return len(rooms) > 0 && rooms[0].Room == "spec" && len(pres.Members) == 1 && pres.Members[0].Name == "Ann"
	}, "room spec not listed with Ann present")

	// The address in `limited` uses up its rate limit; 20 sockets from 198.51.100.10 fill
	// its per-address cap; one socket fills the lone pusher.
	for i := 0; ; i++ {
		req, _ := http.NewRequest(http.MethodPost, sys.url+"/messages", nil)
		req.Header.Set("X-Forwarded-For", "198.51.100.9")
		resp, err := specClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			break
		}
		if i > 1000 {
			t.Fatal("no 429 after 1000 posts")
		}
	}
	for range 20 {
		dialHeader(t, sys.url+"/ws", http.Header{"X-Forwarded-For": {"198.51.100.10"}})
	}
	dialHeader(t, f.base["pusher"]+"/ws", nil)

	for _, c := range append(openCases, authCases...) {
		if c.want == http.StatusNotFound && c.srv == "" {
			persisterCaughtUp(t, f.js)
		}
		spec.do(t, f, c)
	}
	for _, path := range []string{"/", "/index.html", "/app.js", "/chat.js", "/style.css", "/favicon.svg"} {
		hdr, _ := spec.do(t, f, httpCase{"", "GET", path, "", nil, 200})
		spec.do(t, f, httpCase{"", "GET", path, "", []string{"If-None-Match: " + hdr.Get("ETag")}, 304})
	}
	// Every path answers a CORS preflight from an allowed origin, and OPTIONS otherwise 405.
	for _, path := range spec.doc.Paths.InMatchingOrder() {
		if spec.doc.Paths.Value(path).Options != nil {
			spec.do(t, f, httpCase{"", "OPTIONS", samplePath(path), "", []string{"Origin: http://page.example", "Access-Control-Request-Method: POST"}, 204})
			spec.do(t, f, httpCase{"", "OPTIONS", samplePath(path), "", nil, 405})
		}
	}
	spec.checkMethodNotAllowed(t, sys.url)
	// What /openapi.json serves is a valid document, the one in docs/openapi.yaml.
	_, served := spec.do(t, f, httpCase{"", "GET", "/openapi.json", "", nil, 200})
	doc, err := openapi3.NewLoader().LoadFromData(served)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("/openapi.json: %v", err)
	}
	if a, b := mustMarshal(t, doc), mustMarshal(t, spec.doc); a != b {
		t.Fatal("/openapi.json is not docs/openapi.yaml: go test ./services/api/internal/apidoc -update")
	}

	m.Stop()
	for _, c := range mongoDownCases {
		spec.do(t, f, c)
	}
	n.Stop()
	chattest.Eventually(t, 10*time.Second, func() bool { return natsDown(t, f) }, "NATS seen down")
	for _, c := range natsDownCases {
		spec.do(t, f, c)
	}
	n.Start()
	m.Start()
	spec.checkCoverage(t, unreached)
}

// deadLetterFixture puts dead letters into DEADLETTER as the persister does: dlRequeue
// (valid, to requeue), dlDiscard, dlBadSubject (not a chat.messages subject) and dlDup,
// whose original message id is still in CHAT's duplicate window.
func deadLetterFixture(t *testing.T, n *chattest.NATS, f *fixture) {
	t.Helper()
	nc, js := n.Connect(t)
	t.Cleanup(nc.Close)
	f.js = js
	dup := nats.NewMsg("chat.messages.spec")
	dup.Data = []byte(`{"name":"Ann","message":"stored once"}`)
	dup.Header.Set(nats.MsgIdHdr, "spec-dup-1")
	ack, err := js.PublishMsg(t.Context(), dup)
	if err != nil {
		t.Fatal(err)
	}
	for name, dl := range map[string]struct{ subject, data, msgID string }{
		"dlRequeue":    {"chat.messages.spec", `{"name":"Ann","message":"requeued"}`, ""},
		"dlDiscard":    {"chat.messages.spec", "not json \xff", ""},
		"dlBadSubject": {"chat.ops.stats", `{}`, ""},
		"dlDup":        {"chat.messages.spec", string(dup.Data), "spec-dup-1"},
	} {
		m := nats.NewMsg(chat.DeadLetterSubject)
		m.Data = []byte(dl.data)
		m.Header.Set(chat.HeaderDeadLetterReason, "test: "+name)
		m.Header.Set(chat.HeaderOriginalSubject, dl.subject)
		if dl.msgID != "" {
			m.Header.Set("Chat-Original-Msg-Id", dl.msgID)
			m.Header.Set("Chat-Original-Seq", strconv.FormatUint(ack.Sequence, 10))
		}
		a, err := js.PublishMsg(t.Context(), m)
		if err != nil {
			t.Fatal(err)
		}
		f.vals[name] = strconv.FormatUint(a.Sequence, 10)
	}
}

// persisterCaughtUp waits until the persister has stored everything CHAT holds: only
// then may a change to a message history lacks answer 404 (before, 503: it may be one of
// those still to store).
func persisterCaughtUp(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	chattest.Eventually(t, 10*time.Second, func() bool {
		c, err := js.Consumer(t.Context(), chat.StreamName, chat.PersisterConsumer)
		if err != nil {
			t.Fatal(err)
		}
		info := c.CachedInfo()
		return info.NumPending == 0 && info.NumAckPending == 0
	}, "the persister did not catch up")
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := specClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	mustJSON(t, b, v)
}

// natsDown reports whether the all-in-one's and the lone pusher's connections noticed that
// NATS is gone.
func natsDown(t *testing.T, f *fixture) bool {
	var body struct{ Pusher string }
	resp, err := specClient.Get(f.base[""] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body.Pusher != "ready" && status(t, f.base["pusher"]+"/readyz") == http.StatusServiceUnavailable
}

// startServices runs the api, a pusher (CHAT_MAX_CONNECTIONS=1) and a persister alone,
// each on its own port, on the test's NATS and MongoDB.
func startServices(t *testing.T, cfg Config, n *chattest.NATS, m *chattest.Mongo, f *fixture) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	nc, _ := n.Connect(t)
	mc := m.Connect(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	api, err := apiapp.New(ctx, cfg.API, apiapp.Deps{NATS: nc, Mongo: mc, Metrics: prometheus.NewRegistry(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	pcfg := cfg.Pusher
	pcfg.MaxConnections = 1
	pusher, err := pusherapp.New(ctx, pcfg, pusherapp.Deps{NATS: nc, Mongo: mc, Metrics: prometheus.NewRegistry(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	persister, err := persisterapp.New(ctx, cfg.Persister, persisterapp.Deps{NATS: nc, Mongo: mc, Metrics: prometheus.NewRegistry(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pusher.Run(ctx) }()
	for name, h := range map[string]http.Handler{"api": api.Handler(), "pusher": pusher.Handler(), "persister": persister.Handler()} {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		f.base[name] = srv.URL
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("pusher: %v", err)
		}
	})
}

// TestOpenAPIDocumentsEveryRoute: each service's mux serves exactly the routes the
// document gives it (a route added to a mux without the document fails here).
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	spec := loadAPISpec(t)
	n := chattest.StartNATS(t)
	m := chattest.StartMongo(t)
	cfg := testConfig(t)
	ctx := context.Background()
	nc, _ := n.Connect(t)
	mc := m.Connect(t)
	api, err := apiapp.New(ctx, cfg.API, apiapp.Deps{NATS: nc, Mongo: mc})
	if err != nil {
		t.Fatal(err)
	}
	pusher, err := pusherapp.New(ctx, cfg.Pusher, pusherapp.Deps{NATS: nc, Mongo: mc, Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	persister, err := persisterapp.New(ctx, cfg.Persister, persisterapp.Deps{NATS: nc, Mongo: mc})
	if err != nil {
		t.Fatal(err)
	}
	spec.checkRoutesDocumented(t, "api", api.Routes())
	spec.checkRoutesDocumented(t, "pusher", pusher.Routes())
	spec.checkRoutesDocumented(t, "persister", persister.Routes())
}

func dialHeader(t *testing.T, url string, h http.Header) {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(url, "http"), h)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close() })
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := specClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}

func jsonField(t *testing.T, b []byte, key string) string {
	t.Helper()
	var v map[string]any
	mustJSON(t, b, &v)
	s, _ := v[key].(string)
	if s == "" {
		t.Fatalf("%s: no %s", b, key)
	}
	return s
}
