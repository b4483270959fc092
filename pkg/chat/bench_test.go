package chat

import (
	"strings"
	"testing"
	"time"
)

func benchMessage() Message {
	return Message{ID: "01JDQ7R4W0Z8Y3XG5N2M6K9P1T", Room: "general", Name: "alice",
		Message: strings.Repeat("hello <world> & friends ", 4), SentAt: time.Now(), Seq: 123456789}
}

// BenchmarkAppendJSON is the pusher's encode-once step: one websocket frame payload per
// message, whatever the number of subscribers.
func BenchmarkAppendJSON(b *testing.B) {
	m := benchMessage()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = m.AppendJSON(buf[:0], "message")
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkFromStored is what the pusher and persister do with every stream message.
func BenchmarkFromStored(b *testing.B) {
	m := benchMessage()
	st := Stored{Subject: Subject(m.Room), MsgID: m.ID, Data: m.AppendPayload(nil), Seq: m.Seq, Time: time.Now()}
	epoch := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(st.Data)))
	for b.Loop() {
		if _, err := FromStored(st, epoch); err != nil {
			b.Fatal(err)
		}
	}
}
