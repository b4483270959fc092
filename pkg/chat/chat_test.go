package chat

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestNormalizeMessage(t *testing.T) {
	cases := []struct {
		in, want, err string
	}{
		{"  hi  ", "hi", ""},
		{"a\r\nb\rc", "a\nb\nc", ""},
		{"tab\there", "tab\there", ""},
		{"<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)>", ""},
		{"   ", "", "message: must not be empty"},
		{"bell\a", "", "message: must not contain control characters other than newline and tab"},
		{"c1\u0085x", "", "message: must not contain control characters other than newline and tab"},
		{"bad\xffutf8", "", "message: must be valid UTF-8"},
		{strings.Repeat("é", 4096), strings.Repeat("é", 4096), ""},
		{strings.Repeat("é", 4097), "", "message: must be at most 4096 characters"},
	}
	for _, c := range cases {
		got, err := NormalizeMessage(c.in)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("NormalizeMessage(%q) error = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("NormalizeMessage(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestNormalizeName(t *testing.T) {
	for _, bad := range []string{"", " \t", "a\nb", "del\x7f", strings.Repeat("n", 65), "\xc3"} {
		if _, err := NormalizeName(bad); err == nil {
			t.Errorf("NormalizeName(%q) accepted", bad)
		}
	}
	if got, err := NormalizeName("  Ada Lovelace "); err != nil || got != "Ada Lovelace" {
		t.Errorf("NormalizeName = %q, %v", got, err)
	}
	var fe *FieldError
	if _, err := NormalizeName(""); !errors.As(err, &fe) || fe.Field != "name" {
		t.Errorf("want a FieldError for name, got %v", err)
	}
}

func TestValidRoomAndID(t *testing.T) {
	for _, ok := range []string{"general", "a", "A-b_9", strings.Repeat("r", 64)} {
		if err := ValidRoom(ok); err != nil {
			t.Errorf("ValidRoom(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a.b", "a b", "*", ">", strings.Repeat("r", 65), "é"} {
		if ValidRoom(bad) == nil {
			t.Errorf("ValidRoom(%q) accepted", bad)
		}
	}
	for _, ok := range []string{"k", "a.b:c-d_e", strings.Repeat("i", 128)} {
		if err := ValidID(ok); err != nil {
			t.Errorf("ValidID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a b", "a/b", strings.Repeat("i", 129)} {
		if ValidID(bad) == nil {
			t.Errorf("ValidID(%q) accepted", bad)
		}
	}
}

func TestMessageJSONRoundTrip(t *testing.T) {
	m := Message{ID: "01J", Room: "general", Name: "Ann <b>", Message: "x & y\n\"q\"\t\u2028 \x01",
		SentAt: time.Date(2026, 11, 26, 12, 0, 0, 123456789, time.FixedZone("X", 3600)), Seq: 42}
	// encoding/json re-escapes <, > and & of any MarshalJSON output; callers that write
	// responses use MarshalJSON/AppendJSON directly or an Encoder without HTML escaping.
	b, err := m.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"01J","room":"general","name":"Ann <b>","message":"x & y\n\"q\"\t\u2028 \u0001","sent_at":"2026-11-26T11:00:00.123Z","seq":42}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var back Message
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Message != m.Message || back.Name != m.Name || back.Seq != 42 || !back.SentAt.Equal(NormalizeTime(m.SentAt)) {
		t.Fatalf("round trip changed the message: %+v", back)
	}
	frame := string(m.AppendJSON(nil, "message"))
	if !strings.HasPrefix(frame, `{"type":"message","id":"01J",`) {
		t.Fatalf("frame = %s", frame)
	}
}

func TestFromStored(t *testing.T) {
	epoch := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	stored := time.Date(2026, 11, 26, 12, 0, 0, 987654321, time.UTC)
	st := func(subject, msgID, data string) Stored {
		return Stored{Subject: subject, MsgID: msgID, Data: []byte(data), Seq: 7, Time: stored}
	}
	m, err := FromStored(st("chat.messages.r1", "", `{"name":" n ","message":"m\r\n"}`), epoch)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != DeriveID(epoch, 7) || m.Room != "r1" || m.Name != "n" || m.Message != "m" || m.Seq != 7 ||
		!m.SentAt.Equal(stored.Truncate(time.Millisecond)) {
		t.Fatalf("got %+v", m)
	}
	if DeriveID(epoch, 7) == DeriveID(epoch.Add(time.Nanosecond), 7) {
		t.Fatal("derived id does not depend on the stream epoch")
	}
	m, err = FromStored(st("chat.messages.r1", "k1", `{"id":"k1","room":"r1","name":"n","message":"m","sent_at":"2026-11-26T10:00:00.5+01:00"}`), epoch)
	if err != nil || m.ID != "k1" || FormatTime(m.SentAt) != "2026-11-26T09:00:00.500Z" {
		t.Fatalf("got %+v, %v", m, err)
	}
	m, err = FromStored(st("chat.messages.r1", "", `{"name":"n","message":"m","sent_at":"yesterday"}`), epoch)
	if err != nil || !m.SentAt.Equal(stored.Truncate(time.Millisecond)) {
		t.Fatalf("invalid sent_at should fall back to the stored time: %+v, %v", m, err)
	}
	for _, bad := range []Stored{
		st("chat.messages.r1", "", `not json`),
		st("chat.messages.r1", "", `[1]`),
		st("chat.messages.r1", "", `{"message":"m"}`),
		st("chat.messages.r1", "", `{"name":"n"}`),
		st("chat.messages.r1", "", `{"name":1,"message":"m"}`),
		st("chat.messages.r1", "", `{"name":"n","message":"m","room":"r2"}`),
		st("chat.messages.r1", "a", `{"name":"n","message":"m","id":"b"}`),
		st("chat.messages.r1", "", `{"name":"n","message":"m","id":"a b"}`),
		st("chat.messages.r1", "", "{\"name\":\"n\",\"message\":\"\xff\"}"),
		st("chat.messages.r1", "", `{"name":"n","message":"`+strings.Repeat("x", 4097)+`"}`),
		st("chat.messages.bad.room", "", `{"name":"n","message":"m"}`),
	} {
		if _, err := FromStored(bad, epoch); !IsInvalid(err) {
			t.Errorf("FromStored(%q, %q) = %v, want an InvalidError", bad.Subject, bad.Data, err)
		}
	}
}

func TestNewMessageAndPayload(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	m, err := NewMessage(Post{Name: "a", Message: "b"}, now)
	if err != nil || m.Room != DefaultRoom || len(m.ID) != 26 {
		t.Fatalf("got %+v, %v", m, err)
	}
	nm := m.NATSMsg("")
	if nm.Subject != "chat.messages.general" || nm.Header.Get(HeaderMsgID) != m.ID {
		t.Fatalf("nats msg %q %v", nm.Subject, nm.Header)
	}
	back, err := FromStored(Stored{Subject: nm.Subject, MsgID: m.ID, Data: nm.Data, Seq: 3, Time: now.Add(time.Second)}, now)
	m.Seq = 3
	if err != nil || !back.Equal(m) {
		t.Fatalf("payload round trip: %+v, %v; want %+v", back, err, m)
	}
	if _, err := NewMessage(Post{Room: "bad room", Name: "a", Message: "b"}, now); err == nil {
		t.Fatal("invalid room accepted")
	}
	if _, err := NewMessage(Post{Name: "a", Message: "b", ID: "bad key"}, now); err == nil {
		t.Fatal("invalid id accepted")
	}
}

// TestEncodingsAreByteExact pins both encodings byte for byte: the client JSON (api
// answers, history, websocket frames) and the payload published to the stream.
func TestEncodingsAreByteExact(t *testing.T) {
	m := Message{ID: "k:1", Room: "r-1", Name: "Ann <b>", Message: "x & y\n\"q\"\t\u2028\u2029 \x01\\ é🙂\xff",
		SentAt: time.Date(2026, 11, 26, 12, 0, 0, 123456789, time.FixedZone("X", 3600)), Seq: 18446744073709551615}
	const fields = `"id":"k:1","room":"r-1","name":"Ann <b>","message":"x & y\n\"q\"\t\u2028\u2029 \u0001\\ é🙂\ufffd","sent_at":"2026-11-26T11:00:00.123Z"`
	for _, c := range []struct{ got, want string }{
		{string(m.AppendJSON([]byte("pre"), "")), `pre{` + fields + `,"seq":18446744073709551615}`},
		{string(m.AppendJSON(nil, "message")), `{"type":"message",` + fields + `,"seq":18446744073709551615}`},
		{string(m.AppendJSON(nil, `a"b`)), `{"type":"a\"b",` + fields + `,"seq":18446744073709551615}`},
		{string(m.AppendPayload([]byte("p,re"))), `p,re{` + fields + `}`},
		{string((&Message{SentAt: m.SentAt}).AppendPayload(nil)), `{"id":"","room":"","name":"","message":"","sent_at":"2026-11-26T11:00:00.123Z"}`},
	} {
		if c.got != c.want {
			t.Errorf("got  %s\nwant %s", c.got, c.want)
		}
	}
}

// TestNewIDIsUnguessable: ids the api generates carry 80 bits of fresh randomness each,
// also within one millisecond (a monotonic ULID source would make the next id the
// previous one plus a small step, guessable by whoever saw one).
func TestNewIDIsUnguessable(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	const n = 64
	ids := make([]string, n)
	for i := range ids {
		ids[i] = NewID(now)
		if len(ids[i]) != 26 || ids[i][:10] != ids[0][:10] {
			t.Fatalf("id %q: want a ULID of timestamp %q", ids[i], ids[0][:10])
		}
	}
	increasing := true
	for i := 1; i < n; i++ {
		// Characters 10..17 are the high 40 bits of the entropy.
		if ids[i][10:18] == ids[i-1][10:18] {
			t.Fatalf("ids %q and %q share their high entropy bits", ids[i-1], ids[i])
		}
		increasing = increasing && ids[i] > ids[i-1]
	}
	if increasing {
		t.Fatalf("%d ids of one millisecond are strictly increasing: the entropy is a counter", n)
	}
}

func TestResolveRoom(t *testing.T) {
	for _, c := range []struct{ in, want string }{{"", DefaultRoom}, {DefaultRoom, DefaultRoom}, {"r-1_X", "r-1_X"}} {
		r, err := ResolveRoom(c.in)
		if err != nil || r.String() != c.want {
			t.Errorf("ResolveRoom(%q) = %q, %v; want %q", c.in, r, err, c.want)
		}
	}
	if (Room{}).String() != DefaultRoom {
		t.Error("the zero Room is not the default room")
	}
	var fe *FieldError
	for _, bad := range []string{"a b", "a.b", strings.Repeat("r", 65)} {
		if _, err := ResolveRoom(bad); !errors.As(err, &fe) || fe.Field != "room" {
			t.Errorf("ResolveRoom(%q) = %v, want a room FieldError", bad, err)
		}
	}
	r, _ := ResolveRoom("lobby")
	m, err := r.NewMessage(" n ", " t ", "", time.Now())
	if err != nil || m.Room != "lobby" || m.Name != "n" || m.Message != "t" || ValidID(m.ID) != nil {
		t.Fatalf("Room.NewMessage = %+v, %v", m, err)
	}
}

func TestAuthorID(t *testing.T) {
	if AuthorID("iss", "") != "" || AuthorID("", "") != "" {
		t.Fatal("no subject must mean no author")
	}
	a := AuthorID("https://idp", "ann")
	if a != AuthorID("https://idp", "ann") {
		t.Fatal("not deterministic")
	}
	seen := map[string]string{a: "idp/ann"}
	for _, c := range [][2]string{{"https://idp", "bob"}, {"https://other", "ann"}, {"", "ann"}, {"https://idpann", ""}, {"https://id", "pann"}, {"", "https://idpann"}} {
		id := AuthorID(c[0], c[1])
		if id == "" && c[1] != "" {
			t.Fatalf("AuthorID(%q, %q) is empty", c[0], c[1])
		}
		if id == "" {
			continue
		}
		if prev, dup := seen[id]; dup {
			t.Fatalf("AuthorID(%q, %q) = AuthorID of %s", c[0], c[1], prev)
		}
		seen[id] = c[0] + "/" + c[1]
	}
	// Whatever the subject holds, the id is short, printable ASCII and safe in a header.
	for _, sub := range []string{"ann", "a\r\nNats-Msg-Id: x", strings.Repeat("é", 5000), "\x00"} {
		id := AuthorID("iss", sub)
		if len(id) > 64 || strings.Contains(id, sub) {
			t.Fatalf("AuthorID(%q) = %q", sub, id)
		}
		for _, c := range []byte(id) {
			if c <= ' ' || c >= 0x7f {
				t.Fatalf("AuthorID(%q) = %q has byte %#x", sub, id, c)
			}
		}
	}
}

// TestAuthorHeader: NATSMsg records the author; every reader of a stored message gets it
// back in Stored.Author, and it never reaches the Message (clients, history).
func TestAuthorHeader(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	m, err := NewMessage(Post{Room: "r", Name: "a", Message: "b"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if h := m.NATSMsg("").Header; len(h.Values(HeaderAuthor)) != 0 {
		t.Fatalf("anonymous message has %s: %v", HeaderAuthor, h)
	}
	author := AuthorID("iss", "ann")
	nm := m.NATSMsg(author)
	if nm.Header.Get(HeaderAuthor) != author || nm.Header.Get(HeaderMsgID) != m.ID || string(nm.Data) != string(m.AppendPayload(nil)) {
		t.Fatalf("nats msg %v %s", nm.Header, nm.Data)
	}
	st := StoredFromRaw(&jetstream.RawStreamMsg{Subject: nm.Subject, Header: nm.Header, Data: nm.Data, Sequence: 9, Time: now})
	if st.Author != author || st.MsgID != m.ID || st.Seq != 9 {
		t.Fatalf("stored %+v", st)
	}
	back, err := FromStored(st, now)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := back.MarshalJSON(); strings.Contains(string(b), author) {
		t.Fatalf("the author id reached the message JSON: %s", b)
	}
}
