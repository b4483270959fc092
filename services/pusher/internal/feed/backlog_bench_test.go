package feed

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkBacklogFetch reads a room's 1,000 messages back from JetStream in batches of
// 256, the room's messages interleaved with nine other rooms' (and, in "changes", with
// one change per three messages of its own). ns/op is one whole resume.
func BenchmarkBacklogFetch(b *testing.B) {
	for _, changes := range []bool{false, true} {
		b.Run(fmt.Sprintf("changes=%v", changes), func(b *testing.B) {
			n := chattest.StartNATS(b)
			_, js := n.Connect(b)
			stream := n.EnsureStreams(b, js)
			ctx := context.Background()
			pub := chat.NewPoster(js)
			want := 0
			for i := range 1000 {
				for r := range 10 {
					m, _, err := pub.Post(ctx, chat.Post{Room: fmt.Sprint("room", r), Name: "n", Message: "some text of a message"})
					if err != nil {
						b.Fatal(err)
					}
					if r == 0 {
						want++
					}
					if changes && r == 0 && i%3 == 0 {
						c := chat.Message{ID: m.ID, Room: m.Room, Event: chat.EventReactions, Reactions: chat.Reactions{"👍": {"ann"}}}
						if _, err := js.PublishMsg(ctx, c.ChangeMsg("")); err != nil {
							b.Fatal(err)
						}
						want++
					}
				}
			}
			info, err := stream.Info(ctx)
			if err != nil {
				b.Fatal(err)
			}
			bl := NewBacklog(NewSource(js, stream, func(context.Context) (jetstream.Stream, error) { return stream, nil }), nil, nil)
			b.ResetTimer()
			for range b.N {
				got, after := 0, uint64(0)
				for after < info.State.LastSeq {
					msgs, next, err := bl.Fetch(ctx, "room0", after, info.State.LastSeq, 256)
					if err != nil {
						b.Fatal(err)
					}
					got, after = got+len(msgs), next
				}
				if got != want {
					b.Fatalf("read %d, want %d", got, want)
				}
			}
		})
	}
}

// BenchmarkBacklogFetchManySubjects resumes a room 10 messages before its end in a stream
// that has 80,000 change subjects (changed messages) of other rooms after it: past 64K
// subjects, a "next on the wildcard" without a match walks every block to the stream's
// end; the changes' cursor, bounded by the room's newest change, does not ask.
func BenchmarkBacklogFetchManySubjects(b *testing.B) {
	n := chattest.StartNATS(b)
	_, js := n.Connect(b)
	stream := n.EnsureStreams(b, js)
	ctx := context.Background()
	for range 1000 {
		m := chat.Message{ID: chat.NewID(time.Now()), Room: "room0", Name: "n", Message: "x"}
		if _, err := js.PublishMsgAsync(m.NATSMsg("")); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 80000 {
		c := chat.Message{ID: fmt.Sprint("id-", i), Room: fmt.Sprint("other", i%50), Event: chat.EventDeleted}
		if _, err := js.PublishMsgAsync(c.ChangeMsg("")); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	info, err := stream.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	bl := NewBacklog(NewSource(js, stream, func(context.Context) (jetstream.Stream, error) { return stream, nil }), nil, nil)
	b.ResetTimer()
	for range b.N {
		msgs, next, err := bl.Fetch(ctx, "room0", 990, info.State.LastSeq, 256)
		if err != nil || len(msgs) != 10 || next != info.State.LastSeq {
			b.Fatalf("read %d to %d: %v", len(msgs), next, err)
		}
	}
}
