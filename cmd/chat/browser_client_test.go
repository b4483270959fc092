package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/browsertest"
	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/auth"
	"github.com/chromedp/chromedp"
)

// Browser tests of /chat.js used by a page on another origin (issue 10, points 7 and 8).

// otherOrigin is a web server on its own port, so a browser origin of its own, serving
// one page that loads the system's /chat.js and builds a ChatClient from pageConfig.
type otherOrigin struct {
	srv  *httptest.Server
	page atomic.Pointer[string]
}

func startOrigin(t *testing.T) *otherOrigin {
	t.Helper()
	o := &otherOrigin{}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page := o.page.Load()
		if r.URL.Path != "/" || page == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, *page)
	}))
	t.Cleanup(o.srv.Close)
	return o
}

// origin is the page's Origin: scheme://host:port.
func (o *otherOrigin) origin() string { return o.srv.URL }

// pageConfig configures the ChatClient of the test page.
type pageConfig struct {
	System   string `json:"system"` // the system's base URL: chat.js and baseURL
	WS       string `json:"ws"`     // the websocket URL
	Room     string `json:"room"`
	Token    string `json:"token,omitempty"`
	GetToken bool   `json:"getToken"` // pass a getToken that waits for releaseToken(t)
	MinDelay int    `json:"minDelay"` // reconnect backoff, ms
	MaxDelay int    `json:"maxDelay"`
}

// pageScript shows the client's state, errors and messages in the elements the tab
// helpers read (#state, #error, #messages li .text), and records in window.log every
// state, error and getToken call.
const pageScript = `
window.log = { states: [], errors: [], tokenCalls: [], changes: [] };
window.got = new Map(); // id -> message in its state (onMessage, then onChange applied)
const cfg = window.pageConfig;
let release;
const fresh = new Promise((r) => { release = r; });
window.releaseToken = (t) => release(t);
const opts = {
  baseURL: cfg.system, url: cfg.ws, token: cfg.token || null, minDelay: cfg.minDelay, maxDelay: cfg.maxDelay,
  onMessage(m) {
    const li = document.createElement('li');
    li.dataset.seq = String(m.seq);
    const text = document.createElement('div');
    text.className = 'text';
    text.textContent = m.message;
    li.append(text);
    document.getElementById('messages').append(li);
    got.set(m.id, m);
  },
  onChange(c) { log.changes.push(c); ChatClient.applyChange(got.get(c.id), c); },
  onState(s) { log.states.push(s); document.getElementById('state').textContent = s; },
  onError(e) { log.errors.push(e); document.getElementById('error').textContent = JSON.stringify(e); },
};
if (cfg.getToken) opts.getToken = (info) => { log.tokenCalls.push(info); return fresh; };
window.client = new ChatClient(opts);
client.subscribe(cfg.room, 0);
`

func (o *otherOrigin) setPage(t *testing.T, cfg pageConfig) {
	t.Helper()
	b, err := json.Marshal(cfg) // escapes < and >: safe inside <script>
	if err != nil {
		t.Fatal(err)
	}
	page := `<!doctype html><html><head><meta charset="utf-8"><title>another origin</title>
<script src="` + cfg.System + `/chat.js"></script></head><body>
<span id="state"></span><p id="error"></p><ol id="messages"></ol>
<script>window.pageConfig = ` + string(b) + `;` + pageScript + `</script></body></html>`
	o.page.Store(&page)
}

// await evaluates a JavaScript expression that may be a promise and returns its value
// as a string.
func (tb *tab) await(expr string) string {
	tb.t.Helper()
	v, err := browsertest.Run(tb.ctx, chromedp.Evaluate[string](`Promise.resolve(`+expr+`).then(String)`, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("tab %s: evaluate %s: %v\n%s", tb.name, expr, err, tb.dump())
	}
	return v
}

// pagePost posts through the page's client and returns "ok <seq>" or "error <status> <reason>".
func pagePost(tb *tab, room, text string) string {
	tb.t.Helper()
	return tb.await(fmt.Sprintf(`client.post(%q, 'Page', %q).then((m) => 'ok ' + m.seq, (e) => 'error ' + e.status + ' ' + e.error)`, room, text))
}

func wsURL(base string) string { return "ws" + strings.TrimPrefix(base, "http") + "/ws" }

// TestAllowedOriginsAllInOne: one CHAT_ALLOWED_ORIGINS configures the api (CORS) and
// the pusher (websocket Origin check) of the all-in-one alike.
func TestAllowedOriginsAllInOne(t *testing.T) {
	t.Setenv("CHAT_ALLOWED_ORIGINS", "https://a.example,http://b.example:8000")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := "https://a.example http://b.example:8000"
	if got := strings.Join(cfg.API.AllowedOrigins, " "); got != want {
		t.Errorf("api AllowedOrigins %q, want %q", got, want)
	}
	if got := strings.Join(cfg.Pusher.AllowedOrigins, " "); got != want {
		t.Errorf("pusher AllowedOrigins %q, want %q", got, want)
	}
}

// TestBrowserOtherOrigin: a page served from another origin listed in
// CHAT_ALLOWED_ORIGINS posts, reads history and receives live messages through
// new ChatClient({baseURL}) (CORS on the api, the Origin check on the pusher); a page
// from an origin not listed can do none of it.
func TestBrowserOtherOrigin(t *testing.T) {
	allocCtx := newBrowser(t)
	allowed, other := startOrigin(t), startOrigin(t)
	cfg := testConfig(t)
	cfg.API.AllowedOrigins = []string{allowed.origin()}
	cfg.Pusher.AllowedOrigins = []string{allowed.origin()}
	sys := startSystemWith(t, cfg)

	const room = "cross-origin"
	allowed.setPage(t, pageConfig{System: sys.url, WS: wsURL(sys.url), Room: room, MinDelay: 500, MaxDelay: 2000})
	a := newTab(t, allocCtx, "allowed")
	a.do(chromedp.Navigate(allowed.origin() + "/"))
	a.waitLive()
	if got := a.eval(`location.origin !== new URL(client.baseURL).origin`); got != "true" {
		t.Fatal("the page and the api share an origin: the test proves nothing")
	}
	// A POST with a JSON body and an Idempotency-Key needs a preflight.
	if got := pagePost(a, room, "hello from another origin"); !strings.HasPrefix(got, "ok ") {
		t.Fatalf("post from the allowed origin: %s\n%s", got, a.dump())
	}
	postMessage(t, sys.url, room, "Bob", "hello back")
	a.waitTexts("hello from another origin", "hello back")
	chattest.Eventually(t, 10*time.Second, func() bool { return historyLen(t, sys.url, room) == 2 },
		"the posted messages reach the history")
	if got := a.await(`client.history('` + room + `').then((l) => l.map((m) => m.message).join('|'))`); got != "hello from another origin|hello back" {
		t.Fatalf("history from the allowed origin: %q", got)
	}

	// Another origin: the browser refuses the api's answers (no CORS headers) and the
	// pusher refuses the upgrade.
	other.setPage(t, pageConfig{System: sys.url, WS: wsURL(sys.url), Room: room, MinDelay: 500, MaxDelay: 2000})
	b := newTab(t, a.ctx, "other")
	b.do(chromedp.Navigate(other.origin() + "/"))
	if got := pagePost(b, room, "from a stranger"); !strings.HasPrefix(got, "error 0 ") {
		t.Fatalf("post from an origin not allowed: %s, want a network error (CORS)", got)
	}
	if got := b.await(`client.history('` + room + `').then(() => 'read', (e) => 'error ' + e.status)`); got != "error 0" {
		t.Fatalf("history from an origin not allowed: %s", got)
	}
	b.poll(`log.states.includes('reconnecting')`) // the first upgrade was refused
	if got := b.eval(`log.states.includes('live')`); got != "false" {
		t.Fatalf("the socket from an origin not allowed went live: %s", b.eval(`JSON.stringify(log.states)`))
	}
	if n := historyLen(t, sys.url, room); n != 2 {
		t.Fatalf("history holds %d messages, want 2 (nothing from the other origin)", n)
	}
	a.checkNoExceptions()
	b.checkNoExceptions()
}

// upgradeCounter is a reverse proxy in front of the system that counts websocket
// upgrade requests, so a test sees every connection attempt of a client.
type upgradeCounter struct {
	srv      *httptest.Server
	upgrades atomic.Int64
}

func startUpgradeCounter(t *testing.T, target string) *upgradeCounter {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	c := &upgradeCounter{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			c.upgrades.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// authSystem is the all-in-one with HS256 auth, no leeway (sockets close and tokens are
// refused exactly at exp), and a page origin allowed.
func authSystem(t *testing.T, secret string, origins ...string) *system {
	t.Helper()
	cfg := testConfig(t)
	cfg.API.HS256Secret, cfg.Pusher.HS256Secret = secret, secret
	cfg.API.Leeway, cfg.Pusher.Leeway = 0, 0
	cfg.API.AllowedOrigins, cfg.Pusher.AllowedOrigins = origins, origins
	return startSystemWith(t, cfg)
}

func signToken(t *testing.T, secret, sub string, exp time.Time) string {
	t.Helper()
	tok, err := auth.Sign([]byte(secret), map[string]any{"sub": sub, "rooms": "*", "exp": exp.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func postWithToken(t *testing.T, base, room, token, text string) {
	t.Helper()
	status, body := postJSONAuth(t, base+"/rooms/"+room+"/messages", token, map[string]string{"name": "x", "message": text})
	if status != http.StatusCreated {
		t.Fatalf("post %q: %d %s", text, status, body)
	}
}

func postJSONAuth(t *testing.T, url, token string, body any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(rb)
}

// TestBrowserClientRefreshesToken: when the pusher closes the socket with 4401 (token
// expired), chat.js asks getToken, waits for it without reconnecting, then reconnects
// with the fresh token and resumes with since: a message posted while it waited arrives
// once, nothing twice. A post refused with 401 gets a fresh token and is sent once more.
func TestBrowserClientRefreshesToken(t *testing.T) {
	allocCtx := newBrowser(t)
	const secret = "browser-refresh-secret-browser-refresh"
	page := startOrigin(t)
	sys := authSystem(t, secret, page.origin())
	ws := startUpgradeCounter(t, sys.url)
	admin := signToken(t, secret, "admin", time.Now().Add(time.Hour))
	fresh := signToken(t, secret, "ann", time.Now().Add(time.Hour))

	const room = "refresh"
	tb := newTab(t, allocCtx, "page") // the browser is up: the short token's time starts now
	short := signToken(t, secret, "ann", time.Now().Add(4*time.Second))
	page.setPage(t, pageConfig{System: sys.url, WS: wsURL(ws.srv.URL), Room: room, Token: short, GetToken: true,
		MinDelay: 50, MaxDelay: 100})
	tb.do(chromedp.Navigate(page.origin() + "/"))
	postWithToken(t, sys.url, room, admin, "m1")

	// The token expires: close 4401, getToken is called and nothing reconnects meanwhile.
	tb.poll(`log.tokenCalls.length === 1`)
	if got := tb.eval(`JSON.stringify(log.tokenCalls[0])`); got != `{"source":"ws","code":4401}` {
		t.Fatalf("getToken(%s), want the websocket close 4401", got)
	}
	postWithToken(t, sys.url, room, admin, "m2") // while the client has no socket
	if n := ws.upgrades.Load(); n != 1 {
		t.Fatalf("%d upgrades while getToken was pending, want 1", n)
	}
	if got := tb.eval(`client.state`); got != "reconnecting" {
		t.Fatalf("state %q while getToken is pending, want reconnecting", got)
	}

	tb.eval(`releaseToken(` + jsString(fresh) + `), ''`)
	tb.waitLive()
	tb.waitTexts("m1", "m2")
	if got := pagePost(tb, room, "m3"); !strings.HasPrefix(got, "ok ") {
		t.Fatalf("post with the fresh token: %s", got)
	}
	tb.waitTexts("m1", "m2", "m3")

	// A post with a refused token: 401, a fresh token, the same request once more.
	tb.eval(`client.token = ` + jsString(short) + `, ''`)
	if got := pagePost(tb, room, "m4"); !strings.HasPrefix(got, "ok ") {
		t.Fatalf("post with the expired token and getToken: %s", got)
	}
	tb.waitTexts("m1", "m2", "m3", "m4")
	if got := tb.eval(`JSON.stringify(log.tokenCalls[1])`); got != `{"source":"http","status":401}` {
		t.Fatalf("second getToken(%s), want the HTTP 401", got)
	}
	if got := tb.eval(`client.token === ` + jsString(fresh)); got != "true" {
		t.Fatal("the client does not keep the fresh token")
	}
	if n := ws.upgrades.Load(); n != 2 {
		t.Fatalf("%d upgrades, want 2 (the first socket and the one with the fresh token)", n)
	}
	if got := tb.eval(`JSON.stringify(log.errors)`); got != "[]" {
		t.Fatalf("errors reported although a fresh token was available: %s", got)
	}
	tb.checkNoExceptions()
}

// TestBrowserClientStopsOnAuthFailure: without getToken, a socket closed with 4401
// (token expired) stops the client: state 'auth_failed', an error with auth: true, and
// no further connection attempt (counted at the server) although its backoff is 50-100 ms;
// a post with the expired token is refused with 401 and not retried. connect() with a new
// token resumes. The chat UI shows the same failure to its user.
func TestBrowserClientStopsOnAuthFailure(t *testing.T) {
	allocCtx := newBrowser(t)
	const secret = "browser-stop-secret-browser-stop-secret"
	page := startOrigin(t)
	sys := authSystem(t, secret, page.origin())
	ws := startUpgradeCounter(t, sys.url)
	admin := signToken(t, secret, "admin", time.Now().Add(time.Hour))

	const room = "stop"
	tb := newTab(t, allocCtx, "page")
	ui := newTab(t, tb.ctx, "ui")
	short := signToken(t, secret, "ann", time.Now().Add(5*time.Second))
	// The UI's token expires two seconds after the page's: waiting for the UI to show it
	// spans the time in which a reconnect loop of the page would show at the server.
	uiShort := signToken(t, secret, "ann", time.Now().Add(7*time.Second))
	page.setPage(t, pageConfig{System: sys.url, WS: wsURL(ws.srv.URL), Room: room, Token: short, MinDelay: 50, MaxDelay: 100})
	tb.do(chromedp.Navigate(page.origin() + "/"))
	ui.do(chromedp.Navigate(sys.url + "/?token=" + uiShort + "#" + room))
	postWithToken(t, sys.url, room, admin, "m1")
	tb.waitTexts("m1")

	tb.poll(`client.state === 'auth_failed'`)
	if got := tb.eval(`JSON.stringify(log.errors.map((e) => [e.source, e.code, e.auth]))`); got != `[["ws",4401,true]]` {
		t.Fatalf("errors %s, want the 4401 close reported once", got)
	}
	upgrades := ws.upgrades.Load()
	ui.poll(`document.getElementById('state').dataset.state === 'auth_failed'`)
	if got := ui.eval(`document.getElementById('state').textContent`); got != "signed out" {
		t.Fatalf("UI state %q, want signed out", got)
	}
	if got := ui.eval(`document.getElementById('error').hidden ? '' : document.getElementById('error').textContent`); !strings.Contains(got, "fresh ?token=") {
		t.Fatalf("UI error %q, want the sign-in hint", got)
	}
	if n := ws.upgrades.Load(); n != upgrades || n > 2 {
		t.Fatalf("upgrades: %d when auth_failed was reported, %d later: the client kept connecting", upgrades, n)
	}
	if got := tb.eval(`client.state + ' ' + log.states.filter((s) => s === 'auth_failed').length`); got != "auth_failed 1" {
		t.Fatalf("state after the wait: %s", got)
	}

	// HTTP: 401, reported, not retried.
	postWithToken(t, sys.url, room, admin, "m2")
	if got := pagePost(tb, room, "refused"); !strings.HasPrefix(got, "error 401 ") {
		t.Fatalf("post with the expired token: %s, want 401", got)
	}
	if got := tb.eval(`JSON.stringify(log.errors.slice(1).map((e) => [e.source, e.status, e.auth]))`); got != `[["http",401,true]]` {
		t.Fatalf("errors after the post: %s", got)
	}

	// A new token and connect(): resumes with since, m2 (posted while stopped) arrives.
	tb.eval(`client.token = ` + jsString(signToken(t, secret, "ann", time.Now().Add(time.Hour))) + `, client.connect(), ''`)
	tb.waitLive()
	tb.waitTexts("m1", "m2")

	// A getToken that throws, or gives back the refused token, has no fresh token either:
	// the client stops the same way (the bad token is refused at its first frame: 4401).
	for _, getToken := range []string{`() => { throw new Error('no session') }`, `() => Promise.resolve('bad-token')`} {
		before := ws.upgrades.Load()
		tb.eval(`client.getToken = ` + getToken + `, client.disconnect(), client.token = 'bad-token', client.connect(), ''`)
		tb.poll(`client.state === 'auth_failed'`)
		if n := ws.upgrades.Load(); n != before+1 {
			t.Fatalf("getToken %s: %d upgrades, want 1", getToken, n-before)
		}
	}
	// Those failures leave nothing behind: a getToken with a fresh token is used next time.
	good := jsString(signToken(t, secret, "ann", time.Now().Add(time.Hour)))
	tb.eval(`client.getToken = () => ` + good + `, client.disconnect(), client.token = 'bad-token', client.connect(), ''`)
	tb.poll(`client.state === 'live' && client.token === ` + good)
	postWithToken(t, sys.url, room, admin, "m3")
	tb.waitTexts("m1", "m2", "m3")
	tb.checkNoExceptions()
	ui.checkNoExceptions()
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
