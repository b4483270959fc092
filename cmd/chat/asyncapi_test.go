package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/auth"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/ops"
	"github.com/chatrt/chat/pkg/presence"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v4"
)

// The AsyncAPI document (docs/asyncapi.yaml) checked against real traffic: every frame a
// real pusher sends and every command the test sends must match the payload schema of
// the document's message for its type, every message on the bus (posts and changes the
// api publishes, dead letters, presence and typing between the services, stats requests)
// the schemas of its channel's message, every reply to a stats request the schema of the
// operation's reply, and each message of the document must be seen at least once. The
// document itself is validated against the AsyncAPI 3.0.0 JSON Schema and its $refs
// must resolve.

const asyncAPIPath = "../../docs/asyncapi.yaml"

type asyncMessage struct {
	key     string // components/messages key
	since   string // x-chat-since
	payload *jsonschema.Schema
	headers *jsonschema.Schema // nil: none documented
}

type asyncSpec struct {
	doc      any
	frames   map[string]*asyncMessage   // server frame type → message
	commands map[string]*asyncMessage   // client command type → message
	channels map[string][]*asyncMessage // NATS channel address → its operations' messages
	replies  map[string][]*asyncMessage // NATS channel address → the replies to its requests

	mu   sync.Mutex
	seen map[string]bool // components/messages keys
}

func loadAsyncSpec(t *testing.T) *asyncSpec {
	t.Helper()
	src, err := os.ReadFile(asyncAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	var y any
	if err := yaml.Unmarshal(src, &y); err != nil {
		t.Fatalf("%s: %v", asyncAPIPath, err)
	}
	j, err := json.Marshal(y)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	// The document is an AsyncAPI 3.0.0 document, and every $ref in it resolves.
	meta, err := jsonschema.NewCompiler().Compile("testdata/asyncapi-3.0.0.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := meta.Validate(doc); err != nil {
		t.Fatalf("%s is not a valid AsyncAPI 3.0.0 document: %v", asyncAPIPath, err)
	}
	checkRefs(t, doc, doc, "")

	s := &asyncSpec{doc: doc, frames: map[string]*asyncMessage{}, commands: map[string]*asyncMessage{},
		channels: map[string][]*asyncMessage{}, replies: map[string][]*asyncMessage{}, seen: map[string]bool{}}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7) // AsyncAPI 3.0's schema format is JSON Schema draft-07's superset
	const url = "file:///asyncapi.json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	compile := func(ref string) *jsonschema.Schema {
		sch, err := c.Compile(url + ref)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		return sch
	}
	messages := map[string]*asyncMessage{}
	for key, v := range lookup(t, doc, "#/components/messages").(map[string]any) {
		msg := v.(map[string]any)
		m := &asyncMessage{key: key}
		m.since, _ = msg["x-chat-since"].(string)
		if p, ok := msg["payload"].(map[string]any)["$ref"].(string); ok {
			m.payload = compile(p)
		}
		if h, ok := msg["headers"].(map[string]any); ok {
			m.headers = compile(h["$ref"].(string))
		}
		messages[key] = m
	}
	// A frame's or command's type is its payload schema's type const.
	opMessages := func(at string) []*asyncMessage {
		var out []*asyncMessage
		for _, r := range lookup(t, doc, at+"/messages").([]any) {
			ref := lookup(t, doc, r.(map[string]any)["$ref"].(string)).(map[string]any)["$ref"].(string)
			out = append(out, messages[strings.TrimPrefix(ref, "#/components/messages/")])
		}
		return out
	}
	typeOf := func(m *asyncMessage) string {
		ref := lookup(t, doc, "#/components/messages/"+m.key+"/payload/$ref").(string)
		return lookup(t, doc, ref+"/properties/type/const").(string)
	}
	for _, m := range opMessages("#/operations/sendFrames") {
		s.frames[typeOf(m)] = m
	}
	for _, m := range opMessages("#/operations/receiveCommands") {
		s.commands[typeOf(m)] = m
	}
	// Every other operation is on a NATS channel.
	for op := range lookup(t, doc, "#/operations").(map[string]any) {
		if op == "sendFrames" || op == "receiveCommands" {
			continue
		}
		at := "#/operations/" + op
		ch := lookup(t, doc, at+"/channel/$ref").(string)
		addr, ok := lookup(t, doc, ch+"/address").(string)
		if !ok {
			t.Fatalf("%s: operation %s is on %s, which has no address", asyncAPIPath, op, ch)
		}
		s.channels[addr] = append(s.channels[addr], opMessages(at)...)
		if _, ok := resolve(doc, at+"/reply"); ok {
			s.replies[addr] = append(s.replies[addr], opMessages(at+"/reply")...)
		}
	}
	return s
}

// lookup resolves a local JSON pointer ("#/a/b") in doc.
func lookup(t *testing.T, doc any, ref string) any {
	t.Helper()
	v, ok := resolve(doc, ref)
	if !ok {
		t.Fatalf("%s: %s does not resolve", asyncAPIPath, ref)
	}
	return v
}

func resolve(doc any, ref string) (any, bool) {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	v := doc
	for _, tok := range strings.Split(p, "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		switch x := v.(type) {
		case map[string]any:
			if v, ok = x[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

func checkRefs(t *testing.T, doc, v any, at string) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if r, ok := c.(string); ok && k == "$ref" {
				if _, ok := resolve(doc, r); !ok {
					t.Errorf("%s: %s: $ref %s does not resolve", asyncAPIPath, at, r)
				}
				continue
			}
			checkRefs(t, doc, c, at+"/"+k)
		}
	case []any:
		for i, c := range x {
			checkRefs(t, doc, c, at+"/"+strconv.Itoa(i))
		}
	}
}

func (s *asyncSpec) check(t *testing.T, byType map[string]*asyncMessage, what string, data []byte) map[string]any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s %s: %v", what, data, err)
	}
	obj, _ := v.(map[string]any)
	typ, _ := obj["type"].(string)
	m := byType[typ]
	if m == nil {
		t.Fatalf("%s %s: type %q is not in %s", what, data, typ, asyncAPIPath)
	}
	if err := m.payload.Validate(v); err != nil {
		t.Errorf("%s %s does not match %s: %v", what, data, m.key, err)
	}
	s.mu.Lock()
	s.seen[m.key] = true
	s.mu.Unlock()
	return obj
}

// frame reads the next frame and validates it.
func (s *asyncSpec) frame(t *testing.T, conn *websocket.Conn) map[string]any {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	typ, data, err := conn.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.TextMessage {
		t.Fatalf("frame of type %d", typ)
	}
	return s.check(t, s.frames, "frame", data)
}

// expect reads frames until one of type typ (validating each).
func (s *asyncSpec) expect(t *testing.T, conn *websocket.Conn, typ string) map[string]any {
	t.Helper()
	for {
		if f := s.frame(t, conn); f["type"] == typ {
			return f
		}
	}
}

// send validates a command and sends it.
func (s *asyncSpec) send(t *testing.T, conn *websocket.Conn, cmd string) {
	t.Helper()
	s.check(t, s.commands, "command", []byte(cmd))
	if err := conn.WriteMessage(websocket.TextMessage, []byte(cmd)); err != nil {
		t.Fatal(err)
	}
}

// sendRaw sends a command the document does not allow (to get an error frame).
func sendRaw(t *testing.T, conn *websocket.Conn, cmd string) {
	t.Helper()
	if err := conn.WriteMessage(websocket.TextMessage, []byte(cmd)); err != nil {
		t.Fatal(err)
	}
}

// bus validates a NATS message against its channel's messages (by subject).
func (s *asyncSpec) bus(t *testing.T, msg *nats.Msg) {
	t.Helper()
	for addr, msgs := range s.channels {
		re := regexp.MustCompile("^" + regexp.MustCompile(`\\\{[A-Za-z]+\\\}`).ReplaceAllString(regexp.QuoteMeta(addr), `[^.]+`) + "$")
		if re.MatchString(msg.Subject) {
			s.validateBus(t, addr, msgs, msg)
			return
		}
	}
	t.Errorf("subject %s is not a channel of %s", msg.Subject, asyncAPIPath)
}

// reply validates a reply to a request published on the channel at addr.
func (s *asyncSpec) reply(t *testing.T, addr string, msg *nats.Msg) {
	t.Helper()
	msgs := s.replies[addr]
	if len(msgs) == 0 {
		t.Fatalf("%s: no operation on %s has a reply", asyncAPIPath, addr)
	}
	s.validateBus(t, "the reply to "+addr, msgs, msg)
}

// validateBus checks msg against msgs (one must match, headers and payload) and records
// the one that did as seen.
func (s *asyncSpec) validateBus(t *testing.T, where string, msgs []*asyncMessage, msg *nats.Msg) {
	t.Helper()
	h := map[string]any{}
	for k, v := range msg.Header {
		h[k] = v[0]
	}
	var errs []string
	for _, m := range msgs {
		if m.headers != nil {
			if err := m.headers.Validate(h); err != nil {
				errs = append(errs, m.key+": headers: "+err.Error())
				continue
			}
		}
		if m.payload != nil {
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(msg.Data))
			if err != nil {
				errs = append(errs, m.key+": "+err.Error())
				continue
			}
			if err := m.payload.Validate(v); err != nil {
				errs = append(errs, m.key+": "+err.Error())
				continue
			}
		}
		s.mu.Lock()
		s.seen[m.key] = true
		s.mu.Unlock()
		return
	}
	t.Errorf("%s %v %s matches none of %s's messages:\n%s", msg.Subject, msg.Header, msg.Data, where, strings.Join(errs, "\n"))
}

// TestAsyncAPI validates real frames, commands and bus messages against docs/asyncapi.yaml.
func TestAsyncAPI(t *testing.T) {
	as := loadAsyncSpec(t)
	cfg := testConfig(t)
	sys := startSystemWith(t, cfg)
	nc, err := nats.Connect("nats://" + cfg.EmbeddedNATSAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	tap := make(chan *nats.Msg, 1024)
	for _, subj := range []string{"chat.messages.>", "chat.deadletter", "chat.presence.>", "chat.ops.>"} {
		if _, err := nc.ChanSubscribe(subj, tap); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	conn := dialWS(t, sys.url, "?room=frames").conn
	as.expect(t, conn, "subscribed")
	as.send(t, conn, `{"type":"subscribe","room":"frames2","since":0}`)
	as.expect(t, conn, "subscribed")
	as.send(t, conn, `{"type":"unsubscribe","room":"frames2"}`)
	as.send(t, conn, `{"type":"unsubscribe","room":"frames2"}`)
	if f := as.expect(t, conn, "error"); f["room"] != "frames2" {
		t.Fatalf("error frame %v", f)
	}
	sendRaw(t, conn, `{"type":"subscribe","room":"bad!"}`)
	as.expect(t, conn, "error")
	sendRaw(t, conn, `{"type":"shout","room":"frames"}`)
	as.expect(t, conn, "error")

	// A post, an edit, reactions and a deletion through the api: their frames.
	status, posted := postJSON(t, sys.url+"/rooms/frames/messages", map[string]string{"name": "Ann", "message": "hello"})
	if status != http.StatusCreated {
		t.Fatalf("post: %d %v", status, posted)
	}
	id, key := posted["id"].(string), posted["edit_key"].(string)
	if f := as.expect(t, conn, "message"); f["id"] != id {
		t.Fatalf("message frame %v", f)
	}
	base := sys.url + "/rooms/frames/messages/" + id
	for _, c := range []struct{ method, url, body, frame string }{
		{"PATCH", base, `{"message":"hello again"}`, "edited"},
		{"POST", base + "/reactions", `{"emoji":"👍","name":"Bob"}`, "reactions"},
		{"DELETE", base, "", "deleted"},
	} {
		req, _ := http.NewRequest(c.method, c.url, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Edit-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d", c.method, c.url, resp.StatusCode)
		}
		if f := as.expect(t, conn, c.frame); f["id"] != id {
			t.Fatalf("%s frame %v", c.frame, f)
		}
	}

	// Another service publishes as the document says: a message, a change to it, and
	// bytes that are not a message (dead-lettered).
	publish := func(subject, payload string, hdr nats.Header) {
		t.Helper()
		m := &nats.Msg{Subject: subject, Data: []byte(payload), Header: hdr}
		as.bus(t, m)
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	publish("chat.messages.frames", `{"name":"bot","message":"from a service"}`, nats.Header{"Nats-Msg-Id": {"svc.1"}})
	as.expect(t, conn, "message")
	publish(chat.ChangeSubject("frames", "svc.1"), `{"type":"edited","id":"svc.1","message":"changed by a service"}`, nil)
	as.expect(t, conn, "edited")
	if err := nc.Publish("chat.messages.frames", []byte("not json")); err != nil {
		t.Fatal(err)
	}

	// Presence (v1.3): Ann opts in at the upgrade, Bob with a subscribe command; Ann sees
	// Bob join, type and leave.
	ann := dialWS(t, sys.url, "?room=pres&presence=1&name=Ann").conn
	as.expect(t, ann, "subscribed")
	if f := as.expect(t, ann, "presence"); !hasMember(f, "Ann") {
		t.Fatalf("presence frame %v", f)
	}
	bob := dialWS(t, sys.url, "").conn
	as.send(t, bob, `{"type":"subscribe","room":"pres","presence":true,"name":"Bob"}`)
	as.expect(t, bob, "subscribed")
	as.expect(t, bob, "presence")
	for f := as.expect(t, ann, "join"); !hasMember(f, "Bob"); f = as.expect(t, ann, "join") {
	}
	as.send(t, bob, `{"type":"typing","room":"pres"}`)
	if f := as.expect(t, ann, "typing"); f["name"] != "Bob" {
		t.Fatalf("typing frame %v", f)
	}
	bob.Close()
	for f := as.expect(t, ann, "leave"); !hasMember(f, "Bob"); f = as.expect(t, ann, "leave") {
	}
	// A presence listener that starts asks the pushers for their full state (the real
	// View the api and the pushers run).
	ctx, cancel := context.WithCancel(context.Background())
	view := presence.NewView(nc, presence.ViewConfig{Self: "asyncapi-test"})
	viewDone := make(chan error, 1)
	go func() { viewDone <- view.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-viewDone; err != nil {
			t.Errorf("view: %v", err)
		}
	})

	// Stats (v1.3): the admin page's request, and one of the test's: every node replies.
	if status, b := adminDo(t, http.MethodGet, sys.url+"/admin/api/stats", ""); status != http.StatusOK {
		t.Fatalf("stats: %d %s", status, b)
	}
	inbox := nc.NewInbox()
	replies, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	req := &nats.Msg{Subject: ops.SubjectStats, Reply: inbox, Data: []byte(`{}`)}
	as.bus(t, req)
	if err := nc.PublishMsg(req); err != nil {
		t.Fatal(err)
	}
	services := map[string]bool{}
	for len(services) < 3 {
		m, err := replies.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("stats replies from %v only: %v", services, err)
		}
		as.reply(t, ops.SubjectStats, m)
		var st struct{ Service string }
		mustJSON(t, m.Data, &st)
		services[st.Service] = true
	}

	// With authentication on, a socket without a token authenticates with its first frame.
	authCfg := testConfig(t)
	authCfg.API.HS256Secret, authCfg.Pusher.HS256Secret = specSecret, specSecret
	authSys := startSystemWith(t, authCfg)
	tok, err := auth.Sign([]byte(specSecret), map[string]any{"sub": "a", "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	aconn := dialWS(t, authSys.url, "?room=frames").conn
	as.send(t, aconn, `{"type":"auth","token":"`+tok+`"}`)
	as.expect(t, aconn, "subscribed")
	sendRaw(t, aconn, `{"type":"auth","token":"`+tok+`"}`)
	as.expect(t, aconn, "error")

	// Every bus message seen until the dead letter, the presence messages and the admin
	// page's stats request arrived matches the document (but the bytes published to be
	// dead-lettered).
	deadline := time.After(15 * time.Second)
	for _, key := range []string{"deadLetter", "presenceState", "presenceTyping", "presenceSync", "statsRequest"} {
		for !as.seen[key] {
			select {
			case m := <-tap:
				if string(m.Data) != "not json" || m.Subject == chat.DeadLetterSubject {
					as.bus(t, m)
				}
			case <-deadline:
				t.Fatalf("no %s within 15s", key)
			}
		}
	}
	for len(tap) > 0 {
		if m := <-tap; string(m.Data) != "not json" || m.Subject == chat.DeadLetterSubject {
			as.bus(t, m)
		}
	}

	var missing []string
	for key, v := range lookup(t, as.doc, "#/components/messages").(map[string]any) {
		if since, _ := v.(map[string]any)["x-chat-since"].(string); (buildingVersion == "" || since != buildingVersion) && !as.seen[key] {
			missing = append(missing, key)
		}
	}
	if len(missing) > 0 {
		t.Errorf("messages of %s never seen (add them to the test): %v", asyncAPIPath, missing)
	}
}

// hasMember reports whether a presence, join or leave frame lists name.
func hasMember(f map[string]any, name string) bool {
	members, _ := f["members"].([]any)
	for _, m := range members {
		if m, _ := m.(map[string]any); m["name"] == name {
			return true
		}
	}
	return false
}
