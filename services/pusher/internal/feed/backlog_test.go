package feed

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Fetch's JetStream tier returns a room's messages and changes with after < seq <= upTo
// merged in seq order, at most limit of them, and next: the last one's seq when it
// returned limit, else upTo; for every after, upTo and limit. Other rooms' events, a
// room whose name extends this one's, invalid changes and changes beyond upTo do not
// show.
func TestFetchMergesChangesInSeqOrder(t *testing.T) {
	n := chattest.StartNATS(t)
	_, js := n.Connect(t)
	stream := n.EnsureStreams(t, js)
	ctx := context.Background()
	pub := chat.NewPoster(js)
	var want []uint64 // room r's valid events
	var ids []string
	publish := func(msg *nats.Msg, valid bool) {
		t.Helper()
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		if valid {
			want = append(want, ack.Sequence)
		}
	}
	for i := range 40 {
		switch {
		case i%7 == 3: // another room, and one whose name starts with this one's
			for _, room := range []string{"s", "r2"} {
				m, _, err := pub.Post(ctx, chat.Post{Room: room, Name: "n", Message: "x"})
				if err != nil {
					t.Fatal(err)
				}
				c := chat.Message{ID: m.ID, Room: room, Event: chat.EventDeleted}
				publish(c.ChangeMsg(""), false)
			}
		case i%5 == 4 && len(ids) > 0:
			c := chat.Message{ID: ids[i%len(ids)], Room: "r", Event: chat.EventEdited, Message: fmt.Sprint("edit ", i)}
			publish(c.ChangeMsg(""), true)
			if i%2 == 0 {
				c = chat.Message{ID: ids[0], Room: "r", Event: chat.EventReactions, Reactions: chat.Reactions{"👍": {"a"}}}
				publish(c.ChangeMsg(""), true)
			}
		case i%11 == 10:
			bad := nats.NewMsg(chat.ChangeSubject("r", ids[0]))
			bad.Data = []byte(`{"type":"nope"}`)
			publish(bad, false)
		default:
			m := chat.Message{ID: chat.NewID(time.Now()), Room: "r", Name: "n", Message: fmt.Sprint("m ", i)}
			publish(m.NATSMsg(""), true)
			ids = append(ids, m.ID)
		}
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := info.State.LastSeq
	bl := NewBacklog(NewSource(js, stream, func(context.Context) (jetstream.Stream, error) { return stream, nil }), nil, nil)
	for after := uint64(0); after <= last; after += 3 {
		for upTo := after + 1; upTo <= last+2; upTo += 5 {
			for _, limit := range []int{1, 2, 5, 100} {
				var exp []uint64
				for _, s := range want {
					if s > after && s <= upTo && len(exp) < limit {
						exp = append(exp, s)
					}
				}
				expNext := upTo
				if len(exp) == limit {
					expNext = exp[limit-1]
				}
				msgs, next, err := bl.Fetch(ctx, "r", after, upTo, limit)
				if err != nil {
					t.Fatal(err)
				}
				var got []uint64
				for _, m := range msgs {
					got = append(got, m.Seq)
				}
				if fmt.Sprint(got) != fmt.Sprint(exp) || next != expNext {
					t.Fatalf("Fetch(after %d, upTo %d, limit %d) = %v next %d, want %v next %d", after, upTo, limit, got, next, exp, expNext)
				}
			}
		}
	}
}

// The JetStream API prefix of hand-made requests follows the client's domain or prefix.
func TestAPIPrefix(t *testing.T) {
	n := chattest.StartNATS(t)
	nc, js := n.Connect(t)
	stream := n.EnsureStreams(t, js)
	for _, c := range []struct {
		make func() (jetstream.JetStream, error)
		want string
	}{
		{func() (jetstream.JetStream, error) { return jetstream.New(nc) }, "$JS.API."},
		{func() (jetstream.JetStream, error) { return jetstream.NewWithDomain(nc, "hub") }, "$JS.hub.API."},
		{func() (jetstream.JetStream, error) { return jetstream.NewWithAPIPrefix(nc, "acc.JS.API") }, "acc.JS.API."},
		{func() (jetstream.JetStream, error) { return jetstream.NewWithAPIPrefix(nc, "acc.JS.API.") }, "acc.JS.API."},
	} {
		js, err := c.make()
		if err != nil {
			t.Fatal(err)
		}
		if got := NewSource(js, stream, nil).apiPrefix(); got != c.want {
			t.Errorf("prefix %q, want %q", got, c.want)
		}
	}
}
