package history_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
)

func roomsSummary(t *testing.T, store *history.Store, limit int, before uint64, allow func(string) bool) string {
	t.Helper()
	rooms, err := store.Rooms(context.Background(), limit, before, allow)
	if err != nil {
		t.Fatal(err)
	}
	s := ""
	for _, r := range rooms {
		s += fmt.Sprintf("%s:%d:%d ", r.Room, r.LastSeq, r.Messages)
	}
	return s
}

// The room list counts each message once, however often and by however many writers its
// batch is written (redeliveries, concurrent replicas), counts a message completing a
// partial document, ignores a later copy of a stored id, and its last_seq only grows.
func TestRoomsAreKeptAsMessagesAreStored(t *testing.T) {
	store := history.New(chattest.StartMongo(t).Connect(t))
	ctx := context.Background()
	if err := store.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	base := chat.NormalizeTime(time.Now())
	msg := func(id, room string, seq uint64) chat.Message {
		return chat.Message{ID: id, Room: room, Name: "n", Message: id, SentAt: base.Add(time.Duration(seq) * time.Millisecond), Seq: seq}
	}
	var all []chat.Message
	for i := 1; i <= 40; i++ {
		all = append(all, msg(fmt.Sprintf("m%d", i), []string{"a", "b", "c"}[i%3], uint64(i)))
	}
	// Four writers store overlapping batches at once, then the whole range again.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 4 {
		wg.Go(func() {
			for lo := w * 5; lo < len(all); lo += 10 {
				if err := store.InsertMany(ctx, all[lo:min(lo+15, len(all))]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := store.InsertMany(ctx, all); err != nil {
		t.Fatal(err)
	}
	// Room a holds seqs 3, 6, ..., 39 (13), b 1, 4, ..., 40 (14), c 2, 5, ..., 38 (13).
	if got, want := roomsSummary(t, store, 10, 0, nil), "b:40:14 a:39:13 c:38:13 "; got != want {
		t.Fatalf("rooms = %q, want %q", got, want)
	}
	// A later copy of a stored id (higher seq) is not activity; an older batch does not
	// lower last_seq; a message whose changes came first (a partial document) counts.
	if err := store.ApplyChanges(ctx, []chat.Message{{ID: "p", Room: "c", Event: chat.EventDeleted, Seq: 60}}); err != nil {
		t.Fatal(err)
	}
	if err := store.InsertMany(ctx, []chat.Message{msg("m1", "b", 50), msg("m2", "c", 2), msg("p", "c", 41)}); err != nil {
		t.Fatal(err)
	}
	if got, want := roomsSummary(t, store, 10, 0, nil), "c:41:14 b:40:14 a:39:13 "; got != want {
		t.Fatalf("rooms = %q, want %q", got, want)
	}
	rooms, err := store.Rooms(ctx, 1, 0, nil)
	if err != nil || len(rooms) != 1 || !rooms[0].LastSentAt.Equal(base.Add(41*time.Millisecond)) {
		t.Fatalf("rooms = %+v, %v; want c last sent at %v", rooms, err, base.Add(41*time.Millisecond))
	}
	// Paging by last_seq and the allow filter (not counted against the limit).
	if got, want := roomsSummary(t, store, 1, 41, nil), "b:40:14 "; got != want {
		t.Fatalf("page before 41 = %q, want %q", got, want)
	}
	if got, want := roomsSummary(t, store, 1, 0, func(r string) bool { return r == "a" }), "a:39:13 "; got != want {
		t.Fatalf("allowed = %q, want %q", got, want)
	}
	if got := roomsSummary(t, store, 5, 0, func(string) bool { return false }); got != "" {
		t.Fatalf("none allowed = %q", got)
	}
}
