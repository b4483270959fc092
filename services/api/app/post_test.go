package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/chatrt/chat/pkg/chat"
)

const xss = `<img src=x onerror=alert(1)> & "quoted" é 🙂`

func TestPost(t *testing.T) {
	e := newEnv(t, nil)

	t.Run("json", func(t *testing.T) {
		before := e.count()
		resp, body := e.postJSON("/messages", `{"name":" Ann ","message":"hi\r\nthere "}`)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		m := decodeMessage(t, body)
		if m.Room != "general" || m.Name != "Ann" || m.Message != "hi\nthere" {
			t.Fatalf("stored %+v", m)
		}
		if got := e.count(); got != before+1 {
			t.Fatalf("stream has %d messages, want %d", got, before+1)
		}
		raw := e.stored(m.Seq)
		if raw.Subject != "chat.messages.general" || raw.Header.Get("Nats-Msg-Id") != m.ID {
			t.Fatalf("stream message subject %q Nats-Msg-Id %q, want id %q", raw.Subject, raw.Header.Get("Nats-Msg-Id"), m.ID)
		}
		var p wireMessage
		if err := json.Unmarshal(raw.Data, &p); err != nil || p.Name != "Ann" || p.Message != "hi\nthere" || p.ID != m.ID || p.SentAt != m.SentAt {
			t.Fatalf("payload %s (%v)", raw.Data, err)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Request-Id") == "" {
			t.Fatalf("missing security header or request id: %v", resp.Header)
		}
	})

	t.Run("form", func(t *testing.T) {
		before := e.count()
		form := url.Values{"name": {"Bob"}, "message": {xss}, "room": {"lobby"}}.Encode()
		resp, body := e.do("POST", "/messages", form, "Content-Type", "application/x-www-form-urlencoded")
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		m := decodeMessage(t, body)
		if m.Room != "lobby" || m.Name != "Bob" || m.Message != xss {
			t.Fatalf("stored %+v", m)
		}
		if !strings.Contains(string(body), `<img src=x onerror=alert(1)> & \"quoted\" é 🙂`) {
			t.Fatalf("text not byte-exact in %s", body)
		}
		if e.count() != before+1 || e.stored(m.Seq).Subject != "chat.messages.lobby" {
			t.Fatal("message not in the stream under its room")
		}
	})

	t.Run("seed form without room and empty room", func(t *testing.T) {
		for _, form := range []string{"name=Seed&message=hello", "name=Seed&message=hello&room="} {
			resp, body := e.do("POST", "/messages", form, "Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
			if resp.StatusCode != http.StatusCreated || decodeMessage(t, body).Room != "general" {
				t.Fatalf("%q: status %d body %s", form, resp.StatusCode, body)
			}
		}
	})

	t.Run("room route", func(t *testing.T) {
		for _, b := range []string{`{"name":"a","message":"b"}`, `{"name":"a","message":"b","room":"r-1_X"}`, `{"name":"a","message":"b","room":""}`} {
			resp, body := e.postJSON("/rooms/r-1_X/messages", b, "Content-Type", "application/json; charset=utf-8")
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("%s: status %d body %s", b, resp.StatusCode, body)
			}
			if m := decodeMessage(t, body); m.Room != "r-1_X" || e.stored(m.Seq).Subject != "chat.messages.r-1_X" {
				t.Fatalf("%s: stored in %q", b, m.Room)
			}
		}
	})

	t.Run("xss text round-trips", func(t *testing.T) {
		b, _ := json.Marshal(map[string]string{"name": "<b>n</b>&", "message": xss})
		resp, body := e.postJSON("/messages", string(b))
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		m := decodeMessage(t, body)
		if m.Message != xss || m.Name != "<b>n</b>&" {
			t.Fatalf("stored %+v", m)
		}
		for _, want := range []string{`"name":"<b>n</b>&"`, `<img src=x onerror=alert(1)> &`} {
			if !strings.Contains(string(body), want) {
				t.Fatalf("%q not byte-exact in %s", want, body)
			}
		}
		if !strings.Contains(string(e.stored(m.Seq).Data), `<img src=x onerror=alert(1)> &`) {
			t.Fatalf("payload escaped: %s", e.stored(m.Seq).Data)
		}
	})

	t.Run("body of exactly 65536 bytes", func(t *testing.T) {
		b := `{"name":"a","message":"b"}`
		b += strings.Repeat(" ", 65536-len(b))
		resp, body := e.postJSON("/messages", b)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	})
}

func TestPostRejectsBadInput(t *testing.T) {
	e := newEnv(t, nil)
	const js = "application/json"
	const form = "application/x-www-form-urlencoded"
	const small = `{"name":"a","message":"b"}`
	long := func(n int) string { return strings.Repeat("é", n) }
	jsonBody := func(name, message string) string {
		b, _ := json.Marshal(map[string]string{"name": name, "message": message})
		return string(b)
	}
	cases := []struct {
		name   string
		path   string
		ctype  string // "" sends no Content-Type
		body   string
		hdr    []string
		status int
	}{
		{"bad json", "/messages", js, `{"name":`, nil, 400},
		{"json array", "/messages", js, `[]`, nil, 400},
		{"json string", "/messages", js, `"hi"`, nil, 400},
		{"json null", "/messages", js, `null`, nil, 400},
		{"trailing data", "/messages", js, `{"name":"a","message":"b"}{}`, nil, 400},
		{"name not a string", "/messages", js, `{"name":1,"message":"b"}`, nil, 400},
		{"missing name", "/messages", js, `{"message":"b"}`, nil, 400},
		{"missing message", "/messages", js, `{"name":"a"}`, nil, 400},
		{"empty body", "/messages", js, ``, nil, 400},
		{"blank name", "/messages", js, `{"name":"  \t ","message":"b"}`, nil, 400},
		{"blank message", "/messages", js, `{"name":"a","message":" \r\n "}`, nil, 400},
		{"name too long", "/messages", js, jsonBody(long(65), "b"), nil, 400},
		{"message too long", "/messages", js, jsonBody("a", long(4097)), nil, 400},
		{"control char in name", "/messages", js, `{"name":"a\u0001b","message":"b"}`, nil, 400},
		{"newline in name", "/messages", js, `{"name":"a\nb","message":"b"}`, nil, 400},
		{"C1 control in name", "/messages", js, `{"name":"a\u0085b","message":"b"}`, nil, 400},
		{"DEL in message", "/messages", js, `{"name":"a","message":"b\u007f"}`, nil, 400},
		{"bell in message", "/messages", js, `{"name":"a","message":"b\u0007"}`, nil, 400},
		{"bad utf-8 json", "/messages", js, "{\"name\":\"a\xff\",\"message\":\"b\"}", nil, 400},
		{"bad utf-8 form", "/messages", form, "name=a%FF&message=b", nil, 400},
		{"bad form escape", "/messages", form, "name=a%zz&message=b", nil, 400},
		{"form field twice", "/messages", form, "name=a&name=b&message=b", nil, 400},
		{"bad room in json", "/messages", js, `{"name":"a","message":"b","room":"no spaces"}`, nil, 400},
		{"bad room in form", "/messages", form, "name=a&message=b&room=a.b", nil, 400},
		{"room too long", "/messages", js, `{"name":"a","message":"b","room":"` + strings.Repeat("r", 65) + `"}`, nil, 400},
		{"bad path room", "/rooms/a.b/messages", js, `{"name":"a","message":"b"}`, nil, 400},
		{"path room too long", "/rooms/" + strings.Repeat("r", 65) + "/messages", js, `{"name":"a","message":"b"}`, nil, 400},
		{"escaped slash path room", "/rooms/a%2Fb/messages", js, `{"name":"a","message":"b"}`, nil, 400},
		{"room mismatch", "/rooms/lobby/messages", js, `{"name":"a","message":"b","room":"other"}`, nil, 400},
		{"room mismatch form", "/rooms/lobby/messages", form, "name=a&message=b&room=other", nil, 400},
		{"idempotency key with space", "/messages", js, `{"name":"a","message":"b"}`, []string{"Idempotency-Key", "bad key"}, 400},
		{"idempotency key too long", "/messages", js, `{"name":"a","message":"b"}`, []string{"Idempotency-Key", strings.Repeat("k", 129)}, 400},
		{"idempotency key empty", "/messages", js, `{"name":"a","message":"b"}`, []string{"Idempotency-Key", ""}, 400},
		{"idempotency key twice", "/messages", js, `{"name":"a","message":"b"}`, []string{"Idempotency-Key", "k1", "Idempotency-Key", "k2"}, 400},
		{"too large", "/messages", js, `{"name":"a","message":"` + strings.Repeat("x", 70000) + `"}`, nil, 413},
		{"too large by one", "/messages", js, small + strings.Repeat(" ", 65537-len(small)), nil, 413},
		{"multipart", "/messages", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\na\r\n--x--\r\n", nil, 415},
		{"no content type", "/messages", "", `{"name":"a","message":"b"}`, nil, 415},
		{"text/plain", "/messages", "text/plain", `{"name":"a","message":"b"}`, nil, 415},
		{"latin1 json", "/messages", "application/json; charset=iso-8859-1", `{"name":"a","message":"b"}`, nil, 415},
		{"broken content type", "/messages", "application/", `{"name":"a","message":"b"}`, nil, 415},
		{"415 on room route", "/rooms/lobby/messages", "text/plain", `{"name":"a","message":"b"}`, nil, 415},
	}
	before := e.count()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr := tc.hdr
			if tc.ctype != "" {
				hdr = append([]string{"Content-Type", tc.ctype}, hdr...)
			}
			resp, body := e.do("POST", tc.path, tc.body, hdr...)
			wantError(t, resp, body, tc.status)
			if got := e.count(); got != before {
				t.Fatalf("stream grew to %d messages (was %d)", got, before)
			}
		})
	}

	t.Run("too large chunked", func(t *testing.T) {
		body := io.MultiReader(strings.NewReader(`{"name":"a","message":"`), strings.NewReader(strings.Repeat("x", 70000)), strings.NewReader(`"}`))
		resp, b := doOn(t, e.srv.URL, "POST", "/messages", body, "Content-Type", "application/json")
		wantError(t, resp, b, 413)
		if got := e.count(); got != before {
			t.Fatalf("stream grew to %d messages (was %d)", got, before)
		}
	})
}

func TestIdempotencyKey(t *testing.T) {
	e := newEnv(t, nil)

	t.Run("sequential, first body wins", func(t *testing.T) {
		before := e.count()
		const key = "order-42:retry.1_A"
		resp1, body1 := e.postJSON("/messages", `{"name":"a","message":"first"}`, "Idempotency-Key", key)
		if resp1.StatusCode != http.StatusCreated {
			t.Fatalf("status %d: %s", resp1.StatusCode, body1)
		}
		if m := decodeMessage(t, body1); m.ID != key || m.Message != "first" {
			t.Fatalf("first answer %s", body1)
		}
		retries := []struct{ path, ctype, body string }{
			{"/messages", "application/json", `{"name":"a","message":"first"}`},
			{"/messages", "application/json", `{"name":"b","message":"second, different"}`},
			{"/messages", "application/x-www-form-urlencoded", "name=c&message=third"},
			{"/rooms/general/messages", "application/json", `{"name":"d","message":"fourth"}`},
		}
		for _, r := range retries {
			resp, body := e.do("POST", r.path, r.body, "Content-Type", r.ctype, "Idempotency-Key", key)
			if resp.StatusCode != resp1.StatusCode || string(body) != string(body1) {
				t.Fatalf("retry %s %s: status %d body %s, want %d %s", r.path, r.body, resp.StatusCode, body, resp1.StatusCode, body1)
			}
		}
		if got := e.count(); got != before+1 {
			t.Fatalf("stream has %d new messages, want 1", got-before)
		}
		if e.stored(decodeMessage(t, body1).Seq).Header.Get("Nats-Msg-Id") != key {
			t.Fatal("stored without the key as Nats-Msg-Id")
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		before := e.count()
		const key = "concurrent-key"
		const n = 20
		var wg sync.WaitGroup
		statuses := make([]int, n)
		bodies := make([]string, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("POST", e.srv.URL+"/messages",
					strings.NewReader(`{"name":"g","message":"body `+string(rune('A'+i))+`"}`))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				statuses[i], bodies[i] = resp.StatusCode, string(b)
			}()
		}
		wg.Wait()
		for i := range n {
			if statuses[i] != http.StatusCreated || bodies[i] != bodies[0] {
				t.Fatalf("answer %d: %d %s; answer 0: %d %s", i, statuses[i], bodies[i], statuses[0], bodies[0])
			}
		}
		if got := e.count(); got != before+1 {
			t.Fatalf("stream has %d new messages, want 1", got-before)
		}
		m := decodeMessage(t, []byte(bodies[0]))
		raw := e.stored(m.Seq)
		var p wireMessage
		if err := json.Unmarshal(raw.Data, &p); err != nil || p.Message != m.Message || raw.Header.Get("Nats-Msg-Id") != key {
			t.Fatalf("answered %+v but stored %s", m, raw.Data)
		}
	})

	t.Run("invalid retry body is still 400", func(t *testing.T) {
		before := e.count()
		resp, body := e.postJSON("/messages", `{"name":"","message":"x"}`, "Idempotency-Key", "order-42:retry.1_A")
		wantError(t, resp, body, 400)
		if e.count() != before {
			t.Fatal("stream grew")
		}
	})
}

func TestPostMessageJSONMatchesChatPackage(t *testing.T) {
	// The 201 body is exactly chat.Message's encoding of the stored message, plus (auth
	// off) its edit key: HMAC-SHA256 of room and id with the secret in CHAT_SECRETS.
	e := newEnv(t, nil)
	resp, body := e.postJSON("/rooms/x/messages", `{"name":"n","message":"m"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	w := decodeMessage(t, body)
	raw := e.stored(w.Seq)
	m, err := chat.FromStored(chat.StoredFromRaw(raw), e.streamCreated())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := m.MarshalJSON()
	want = append(want[:len(want)-1], `,"edit_key":"`+e.editKey("x", m.ID)+`"}`...)
	if string(want) != string(body) {
		t.Fatalf("201 body %s, stored message encodes as %s", body, want)
	}
}
