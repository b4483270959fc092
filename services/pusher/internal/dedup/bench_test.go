package dedup

import (
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
)

var derivedIDs = func() []string {
	ids := make([]string, 1<<10)
	for i := range ids {
		ids[i] = "js.gjdgxs." + strconv.FormatUint(uint64(i+1), 10)
	}
	return ids
}()

type nopSink struct{}

func (nopSink) Fanout(*chat.Message) {}
func (nopSink) Advance(uint64)       {}
func (nopSink) NewEpoch(time.Time)   {}

// BenchmarkFilterFanout: the live path's cost per message in front of the hub, for the
// api's ids (fresh ULIDs, decided by the index, which is full and evicting) and for ids
// derived for messages published without one.
func BenchmarkFilterFanout(b *testing.B) {
	for _, kind := range []string{"ulid", "derived"} {
		b.Run(kind, func(b *testing.B) {
			f := New(Config{IndexBytes: 1 << 20}, nopSink{}, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
			f.idx.horizon = time.Now().Add(-time.Minute)
			// More distinct ids than the index holds: each is evicted before it recurs.
			msgs := make([]chat.Message, 1<<16)
			for i := range msgs {
				msgs[i] = chat.Message{ID: chat.NewID(time.Now()), Room: "r"}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m := &msgs[i%len(msgs)]
				m.Seq = uint64(i + 1)
				if kind == "derived" {
					m.ID = derivedIDs[i%len(derivedIDs)]
					m.Seq = uint64(i%len(derivedIDs) + 1)
				}
				f.Fanout(m)
			}
		})
	}
}
