package history_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
)

// BenchmarkSeqs: the pushers' duplicate check (Store.Seqs) for a batch of ids against a
// history of 5000 messages, on the embedded FerretDB.
//
//	go test -run '^$' -bench Seqs ./pkgtest/history/   (in harness/)
func BenchmarkSeqs(b *testing.B) {
	m := chattest.StartMongo(b)
	store := history.New(m.Connect(b))
	ctx := context.Background()
	if err := store.EnsureIndexes(ctx); err != nil {
		b.Fatal(err)
	}
	const stored = 5000
	msgs := make([]chat.Message, 0, 500)
	for i := 1; i <= stored; i++ {
		msgs = append(msgs, chat.Message{ID: fmt.Sprintf("id-%d", i), Room: "r", Name: "n", Message: "hello there",
			SentAt: chat.NormalizeTime(time.Now()), Seq: uint64(i)})
		if len(msgs) == cap(msgs) {
			if err := store.InsertMany(ctx, msgs); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	for _, n := range []int{16, 64, 65, 256} {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("id-%d", stored-2*i) // stored ones, every other from the newest
		}
		b.Run(fmt.Sprintf("ids=%d", n), func(b *testing.B) {
			for b.Loop() {
				got, err := store.Seqs(ctx, ids)
				if err != nil || len(got) != n {
					b.Fatalf("%d seqs, %v; want %d", len(got), err, n)
				}
			}
		})
	}
}
