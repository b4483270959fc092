package history_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func seqsOf(ms []chat.Message) (s []uint64) {
	for _, m := range ms {
		s = append(s, m.Seq)
	}
	return s
}

// Changes that reach MongoDB before their message are invisible (Get, pages, Range,
// Seqs, Count, NextSeq) until the message is inserted, which then shows their state: an
// edited text, reactions, a tombstone (and stays one when a lower-seq copy of the id is
// stored later).
func TestChangesBeforeTheirMessage(t *testing.T) { bothPaths(t, testChangesBeforeTheirMessage) }

func testChangesBeforeTheirMessage(t *testing.T, newStore func(*mongo.Client) *history.Store) {
	store := newStore(chattest.StartMongo(t).Connect(t))
	ctx := context.Background()
	at := chat.NormalizeTime(time.Now())
	edited := at.Add(time.Minute)
	msg := func(id string, seq uint64) chat.Message {
		return chat.Message{ID: id, Room: "r", Name: "ann", Message: "original " + id, SentAt: at, Seq: seq, Author: "sub-ann"}
	}
	like := chat.Reactions{}.With("👍", "bob").With("👍", "cy").With("a.b", "bob")
	changes := []chat.Message{
		{ID: "a", Room: "r", Seq: 20, Event: chat.EventEdited, Message: "edited a", EditedAt: edited},
		{ID: "a", Room: "r", Seq: 21, Event: chat.EventReactions, Reactions: like},
		{ID: "b", Room: "r", Seq: 22, Event: chat.EventReactions, Reactions: like},
		{ID: "b", Room: "r", Seq: 23, Event: chat.EventDeleted},
		{ID: "c", Room: "other", Seq: 24, Event: chat.EventEdited, Message: "wrong room", EditedAt: edited},
	}
	if err := store.ApplyChanges(ctx, changes); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if _, _, err := store.Get(ctx, "r", id); !errors.Is(err, history.ErrNotFound) {
			t.Fatalf("Get %s before its message: %v, want ErrNotFound", id, err)
		}
	}
	for name, read := range map[string]func() ([]chat.Message, error){
		"Latest":        func() ([]chat.Message, error) { return store.Latest(ctx, "r", 10) },
		"LatestVisible": func() ([]chat.Message, error) { return store.LatestVisible(ctx, "r", 10) },
		"Before":        func() ([]chat.Message, error) { return store.Before(ctx, "r", 100, 10) },
		"After":         func() ([]chat.Message, error) { return store.After(ctx, "r", 0, 10) },
		"Range":         func() ([]chat.Message, error) { return store.Range(ctx, "r", 0, 100, 10) },
		"Range late":    func() ([]chat.Message, error) { return store.Range(ctx, "r", 15, 100, 10) },
	} {
		if got, err := read(); err != nil || len(got) != 0 {
			t.Fatalf("%s before any message = %v, %v; want nothing", name, got, err)
		}
	}
	if n, err := store.Count(ctx, "r"); err != nil || n != 0 {
		t.Fatalf("Count = %d, %v; want 0", n, err)
	}
	if s, err := store.Seqs(ctx, []string{"a", "b"}); err != nil || len(s) != 0 {
		t.Fatalf("Seqs = %v, %v; want none", s, err)
	}
	if n, err := store.NextSeq(ctx); err != nil || n != 1 {
		t.Fatalf("NextSeq = %d, %v; want 1", n, err)
	}

	// The messages arrive (c in room r, so the change to it in room other does not apply);
	// b's copy with seq 12 first, then its first copy, seq 11.
	b12 := msg("b", 12)
	b12.Name, b12.Message = "later copy", "later copy"
	if err := store.InsertMany(ctx, []chat.Message{msg("a", 10), b12, msg("c", 13)}); err != nil {
		t.Fatal(err)
	}
	if err := store.InsertMany(ctx, []chat.Message{msg("b", 11), msg("a", 10)}); err != nil {
		t.Fatal(err)
	}
	got, st, err := store.Get(ctx, "r", "a")
	want := msg("a", 10)
	want.Message, want.EditedAt, want.Reactions = "edited a", edited, like
	if err != nil || !got.Equal(want) {
		t.Fatalf("a = %s, %v\nwant %s", show(got), err, show(want))
	}
	if !stateEqual(st, chat.State{Message: "edited a", EditedAt: edited, ContentSeq: 20, Reactions: like, ReactionsSeq: 21}) {
		t.Fatalf("a's state = %+v", st)
	}
	got, st, err = store.Get(ctx, "r", "b")
	tomb := chat.Message{ID: "b", Room: "r", SentAt: at, Seq: 11, Author: "sub-ann", Deleted: true}
	if err != nil || !got.Equal(tomb) || !stateEqual(st, chat.State{Deleted: true, ContentSeq: 23}) {
		t.Fatalf("b = %s %+v, %v\nwant %s", show(got), st, err, show(tomb))
	}
	if string(got.AppendJSON(nil, "")) != `{"id":"b","room":"r","name":"","message":"","sent_at":"`+chat.FormatTime(at)+`","deleted":true,"seq":11}` {
		t.Fatalf("tombstone encodes as %s", got.AppendJSON(nil, ""))
	}
	if got, _, err := store.Get(ctx, "r", "c"); err != nil || !got.Equal(msg("c", 13)) {
		t.Fatalf("c = %s, %v: a change published to another room must not apply", show(got), err)
	}
	if _, _, err := store.Get(ctx, "other", "c"); !errors.Is(err, history.ErrNotFound) {
		t.Fatalf("Get of c in room other: %v, want ErrNotFound", err)
	}
	latest, err := store.Latest(ctx, "r", 10)
	if err != nil || fmt.Sprint(seqsOf(latest)) != "[10 11 13]" {
		t.Fatalf("Latest = %v, %v", seqsOf(latest), err)
	}
	visible, err := store.LatestVisible(ctx, "r", 10)
	if err != nil || fmt.Sprint(seqsOf(visible)) != "[10 13]" {
		t.Fatalf("LatestVisible = %v, %v; want the deleted one left out", seqsOf(visible), err)
	}
	if s, err := store.Seqs(ctx, []string{"a", "b", "c"}); err != nil || fmt.Sprint(s) != "map[a:10 b:11 c:13]" {
		t.Fatalf("Seqs = %v, %v", s, err)
	}
	// A deleted message stays deleted; a later edit or reaction does not bring it back,
	// and an earlier deletion seq wins.
	late := []chat.Message{
		{ID: "b", Room: "r", Seq: 30, Event: chat.EventEdited, Message: "back?", EditedAt: edited},
		{ID: "b", Room: "r", Seq: 31, Event: chat.EventReactions, Reactions: like},
		{ID: "b", Room: "r", Seq: 19, Event: chat.EventDeleted},
	}
	if err := store.ApplyChanges(ctx, late); err != nil {
		t.Fatal(err)
	}
	got, st, err = store.Get(ctx, "r", "b")
	if err != nil || !got.Equal(tomb) || !stateEqual(st, chat.State{Deleted: true, ContentSeq: 19}) {
		t.Fatalf("b after late changes = %s %+v, %v", show(got), st, err)
	}
}

// LatestVisible pages over deleted messages: it returns limit visible ones even when
// the newest are deleted.
func TestLatestVisible(t *testing.T) {
	store := history.New(chattest.StartMongo(t).Connect(t))
	ctx := context.Background()
	at := chat.NormalizeTime(time.Now())
	var msgs, dels []chat.Message
	for i := 1; i <= 8; i++ {
		id := fmt.Sprint("m", i)
		msgs = append(msgs, chat.Message{ID: id, Room: "r", Name: "n", Message: id, SentAt: at, Seq: uint64(i)})
		if i%2 == 0 || i == 7 {
			dels = append(dels, chat.Message{ID: id, Room: "r", Seq: uint64(100 + i), Event: chat.EventDeleted})
		}
	}
	if err := store.InsertMany(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if err := store.ApplyChanges(ctx, dels); err != nil {
		t.Fatal(err)
	}
	got, err := store.LatestVisible(ctx, "r", 2)
	if err != nil || fmt.Sprint(seqsOf(got)) != "[3 5]" {
		t.Fatalf("LatestVisible(2) = %v, %v; want [3 5]", seqsOf(got), err)
	}
	got, err = store.Latest(ctx, "r", 3)
	if err != nil || fmt.Sprint(seqsOf(got)) != "[6 7 8]" || !got[0].Deleted || got[0].Name != "" || got[0].Message != "" {
		t.Fatalf("Latest(3) = %v, %v; want the tombstones 6 7 8", got, err)
	}
}
