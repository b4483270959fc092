package dedup

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
)

// A node that starts indexes what the stream stored just before (within 2*skew), so a
// copy of one of those ids is dropped by the index and a fresh ULID needs no store.
func TestWarmIndexesRecentStream(t *testing.T) {
	n := chattest.StartNATS(t)
	_, js := n.Connect(t)
	stream := n.EnsureStreams(t, js)
	ctx := context.Background()
	pub := chat.NewPoster(js)
	var last chat.Message
	for i := 0; i < 3; i++ {
		m, _, err := pub.Post(ctx, chat.Post{Room: "r", Name: "n", Message: "x", ID: "ext-" + string(rune('a'+i))})
		if err != nil {
			t.Fatal(err)
		}
		last = m
	}
	if _, err := js.Publish(ctx, chat.Subject("r"), []byte(`{"name":"n","message":"no id"}`)); err != nil {
		t.Fatal(err)
	}
	// Changes carry their message's id at their own seq: not indexed.
	for _, c := range []chat.Message{{ID: "ext-a", Room: "r", Event: chat.EventDeleted}, {ID: "ext-z", Room: "r", Event: chat.EventDeleted}} {
		if _, err := js.PublishMsg(ctx, c.ChangeMsg("")); err != nil {
			t.Fatal(err)
		}
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	st := &store{}
	f := New(Config{Skew: time.Minute}, rec, st, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := f.Warm(ctx, stream, info.Created, info.State.LastSeq); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	n3, horizon := f.idx.n, f.idx.horizon
	f.mu.Unlock()
	if n3 != 3 || time.Since(horizon) < 2*time.Minute-time.Second {
		t.Fatalf("warm index holds %d ids (want 3: the derived one and the changes are not indexed), horizon %v ago", n3, time.Since(horizon))
	}
	f.Fanout(msg("r", "ext-b", last.Seq+2)) // a later copy
	f.Fanout(msg("r", chat.NewID(time.Now()), last.Seq+3))
	if got, _ := rec.state(); len(got) != 1 || st.calls() != 0 {
		t.Fatalf("delivered %v with %d store calls; want only the ULID, decided by the index", got, st.calls())
	}
}
