package httpapi

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/chatrt/chat/pkg/chat"
)

// FuzzDecodeJSON: any body decodes or fails with a 400, never a panic; decoded fields are
// the strings the body held.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"name":"a","message":"b"}`, `{"name":"a","message":"b","room":"r"}`, `{`, `[]`, `null`,
		`{"name":1}`, `{"name":"a"} {}`, `{"name":"\u0000","message":null}`, "{\"name\":\"\xff\"}", `"str"`, `{"name":"a","name":"b"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var b postBody
		herr := decodeJSON(data, &b)
		if herr != nil {
			if herr.status != http.StatusBadRequest || herr.reason == "" {
				t.Fatalf("error %d %q", herr.status, herr.reason)
			}
			return
		}
		for _, p := range []*string{b.Name, b.Message, b.Room} {
			if p != nil && !utf8.ValidString(*p) {
				t.Fatalf("invalid UTF-8 decoded from %q", data)
			}
		}
	})
}

// FuzzDecodeForm: any form body decodes or fails with a 400; a field given twice is an error.
func FuzzDecodeForm(f *testing.F) {
	for _, s := range []string{"name=a&message=b", "name=a&name=b", "room=&name=%zz", "message=%E2%82", ";;&&==", "name=a+b&message=c%0Ad"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		var b postBody
		herr := decodeForm([]byte(data), &b)
		if herr != nil {
			if herr.status != http.StatusBadRequest {
				t.Fatalf("status %d", herr.status)
			}
			return
		}
		vals, err := url.ParseQuery(data)
		if err != nil {
			t.Fatalf("accepted %q that ParseQuery refuses", data)
		}
		if b.Name != nil && (len(vals["name"]) != 1 || *b.Name != vals["name"][0]) {
			t.Fatalf("name %q from %q", *b.Name, data)
		}
	})
}

// FuzzBodyKind: any Content-Type is accepted as json/form or refused with 415.
func FuzzBodyKind(f *testing.F) {
	for _, s := range []string{"application/json", "application/json; charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", "text/plain", "application/json; charset=latin1", ";;;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ct string) {
		kind, herr := bodyKind(ct)
		if herr != nil {
			if herr.status != http.StatusUnsupportedMediaType {
				t.Fatalf("status %d", herr.status)
			}
			return
		}
		if kind != "json" && kind != "form" {
			t.Fatalf("kind %q for %q", kind, ct)
		}
	})
}

// FuzzHistoryQuery: any room and query string is a valid page or a 400.
func FuzzHistoryQuery(f *testing.F) {
	for _, c := range [][2]string{{"general", ""}, {"general", "limit=200"}, {"r", "before=5&after=3"}, {"r", "after=18446744073709551615"},
		{"r", "before=-1"}, {"r", "limit=0"}, {"r", "limit=1e3"}, {"bad room", ""}, {"r", "before=9223372036854775808"}, {"r", "limit=%zz"}} {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, room, query string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.RawQuery = query
		p, herr := readPage(r, room)
		if herr != nil {
			if herr.status != http.StatusBadRequest {
				t.Fatalf("status %d", herr.status)
			}
			return
		}
		if p.limit < 1 || p.limit > MaxLimit || (p.hasBefore && p.hasAfter) || p.room != room || strings.ContainsAny(room, " /") {
			t.Fatalf("page %+v from room %q query %q", p, room, query)
		}
		if p.hasBefore && p.before > 1<<63-1 {
			t.Fatalf("before %d beyond int64", p.before)
		}
	})
}

// FuzzReadPost: a whole POST (content type, body, path room, Idempotency-Key) is a valid
// message to publish or an error answer with a 4xx status.
func FuzzReadPost(f *testing.F) {
	f.Add("application/json", `{"name":"a","message":"b"}`, "", "")
	f.Add("application/x-www-form-urlencoded", "name=a&message=b&room=r", "r", "key-1")
	f.Add("application/json", `{"name":"a","message":"b","room":"x"}`, "y", "")
	f.Add("text/plain", "x", "", "")
	f.Add("application/json", `{"name":"a","message":"b"}`, "", "bad key")
	f.Fuzz(func(t *testing.T, ct, body, pathRoom, key string) {
		s := &Server{}
		r := httptest.NewRequest("POST", "/messages", strings.NewReader(body))
		r.Header.Set("Content-Type", ct)
		if key != "" {
			r.Header.Set(HeaderIdempotencyKey, key)
		}
		m, author, herr := s.readPost(httptest.NewRecorder(), r, pathRoom, nil)
		if herr != nil {
			if herr.status < 400 || herr.status > 499 || herr.reason == "" {
				t.Fatalf("error %d %q", herr.status, herr.reason)
			}
			return
		}
		if _, err := chat.NewMessage(chat.Post{Room: m.Room, Name: m.Name, Message: m.Message, ID: m.ID}, m.SentAt); err != nil {
			t.Fatalf("invalid message accepted: %+v (%v)", m, err)
		}
		if pathRoom != "" && m.Room != pathRoom {
			t.Fatalf("room %q, path %q", m.Room, pathRoom)
		}
		if author != "" {
			t.Fatalf("author %q without a token", author)
		}
		if key != "" && m.ID != key {
			t.Fatalf("id %q, key %q", m.ID, key)
		}
	})
}
