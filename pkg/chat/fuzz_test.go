package chat

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// FuzzNormalizeMessage: accepted text is valid, trimmed, has no \r and no control
// characters but \n and \t, is within the limit, and normalizing it again changes nothing.
func FuzzNormalizeMessage(f *testing.F) {
	for _, s := range []string{"hi", " a\r\nb\rc ", "\x00", "\xff", "<b>&amp;</b>", "\t\n", strings.Repeat("é", 4097), "a\u0085b", "🙂"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizeMessage(in)
		if err != nil {
			if _, ok := err.(*FieldError); !ok {
				t.Fatalf("error %T %v", err, err)
			}
			return
		}
		if !utf8.ValidString(out) || out == "" || strings.TrimSpace(out) != out || strings.ContainsRune(out, '\r') ||
			utf8.RuneCountInString(out) > MaxMessageRunes {
			t.Fatalf("NormalizeMessage(%q) = %q", in, out)
		}
		for _, r := range out {
			if unicode.IsControl(r) && r != '\n' && r != '\t' {
				t.Fatalf("control %U kept in %q", r, out)
			}
		}
		if again, err := NormalizeMessage(out); err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q (%v)", out, again, err)
		}
	})
}

// FuzzNormalizeName: accepted names are valid, trimmed, short and free of controls.
func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{"Ann", " Ann ", "a\x7fb", "\u200b", strings.Repeat("n", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizeName(in)
		if err != nil {
			return
		}
		if !utf8.ValidString(out) || out == "" || strings.TrimSpace(out) != out || utf8.RuneCountInString(out) > MaxNameRunes {
			t.Fatalf("NormalizeName(%q) = %q", in, out)
		}
		for _, r := range out {
			if unicode.IsControl(r) {
				t.Fatalf("control %U kept in %q", r, out)
			}
		}
	})
}

// FuzzFromStored: any payload either decodes to a valid message or fails with an
// InvalidError (never a panic); a decoded message survives a round trip through the
// payload the api publishes and through its client JSON.
func FuzzFromStored(f *testing.F) {
	for _, c := range []struct{ subject, id, data string }{
		{"chat.messages.general", "", `{"name":"n","message":"m"}`},
		{"chat.messages.r1", "k1", `{"id":"k1","room":"r1","name":"n","message":"m","sent_at":"2026-11-26T10:00:00.5+01:00"}`},
		{"chat.messages.r1", "", `{"name":"n","message":"m","sent_at":"yesterday"}`},
		{"chat.messages.r1", "a", `{"name":"n","message":"m","id":"b"}`},
		{"chat.messages.bad.room", "", `{"name":"n","message":"m"}`},
		{"chat.messages.x", "", "{\"name\":\"n\",\"message\":\"\xff\"}"},
		{"chat.messages.x", "", `{"name":null,"message":"m"}`},
		{"chat.messages.x", "", ` {"name":"<i>","message":"a\u2028b\\u0000"} `},
	} {
		f.Add(c.subject, c.id, []byte(c.data), uint64(7))
	}
	epoch := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	stored := time.Date(2026, 11, 26, 12, 0, 0, 987654321, time.UTC)
	f.Fuzz(func(t *testing.T, subject, msgID string, data []byte, seq uint64) {
		m, err := FromStored(Stored{Subject: subject, MsgID: msgID, Data: data, Seq: seq, Time: stored}, epoch)
		if err != nil {
			if !IsInvalid(err) {
				t.Fatalf("error is not an InvalidError: %v", err)
			}
			return
		}
		if ValidRoom(m.Room) != nil || ValidID(m.ID) != nil || m.Seq != seq {
			t.Fatalf("invalid message accepted: %+v", m)
		}
		if n, err := NormalizeName(m.Name); err != nil || n != m.Name {
			t.Fatalf("name %q not normalized", m.Name)
		}
		if s, err := NormalizeMessage(m.Message); err != nil || s != m.Message {
			t.Fatalf("message %q not normalized", m.Message)
		}
		again, err := FromStored(Stored{Subject: Subject(m.Room), MsgID: m.ID, Data: m.AppendPayload(nil), Seq: seq, Time: stored}, epoch)
		if err != nil || !again.Equal(m) {
			t.Fatalf("payload round trip: %+v -> %+v (%v)", m, again, err)
		}
		var raw map[string]any
		frame := m.AppendJSON(nil, "message")
		if err := json.Unmarshal(frame, &raw); err != nil {
			t.Fatalf("client JSON %q: %v", frame, err)
		}
		if raw["name"] != m.Name || raw["message"] != m.Message || raw["room"] != m.Room || raw["id"] != m.ID || raw["type"] != "message" {
			t.Fatalf("client JSON %s does not carry %+v", frame, m)
		}
	})
}
