// Package history_test checks pkg/history against an embedded FerretDB. It lives in the
// harness module so that pkg's go.mod does not require FerretDB and SQLite.
package history_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func TestInsertManyIsIdempotentAndPagesBySeq(t *testing.T) {
	mongo := chattest.StartMongo(t)
	store := history.New(mongo.Connect(t))
	ctx := context.Background()
	if err := store.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	var msgs []chat.Message
	for i := 1; i <= 10; i++ {
		msgs = append(msgs, chat.Message{ID: fmt.Sprintf("id-%d", i), Room: "r", Name: "n", Message: fmt.Sprint(i),
			SentAt: chat.NormalizeTime(time.Now()), Seq: uint64(i * 2)})
	}
	if err := store.InsertMany(ctx, msgs[:6]); err != nil {
		t.Fatal(err)
	}
	// A redelivered batch overlapping what is stored: only duplicates fail, which is success.
	if err := store.InsertMany(ctx, msgs); err != nil {
		t.Fatalf("overlapping batch: %v", err)
	}
	if n, err := store.Count(ctx, "r"); err != nil || n != 10 {
		t.Fatalf("count = %d, %v; want 10", n, err)
	}
	seqs := func(ms []chat.Message) (s []uint64) {
		for _, m := range ms {
			s = append(s, m.Seq)
		}
		return s
	}
	latest, err := store.Latest(ctx, "r", 3)
	if err != nil || fmt.Sprint(seqs(latest)) != "[16 18 20]" {
		t.Fatalf("latest = %v, %v", seqs(latest), err)
	}
	before, err := store.Before(ctx, "r", 7, 2)
	if err != nil || fmt.Sprint(seqs(before)) != "[4 6]" {
		t.Fatalf("before = %v, %v", seqs(before), err)
	}
	after, err := store.After(ctx, "r", 7, 2)
	if err != nil || fmt.Sprint(seqs(after)) != "[8 10]" {
		t.Fatalf("after = %v, %v", seqs(after), err)
	}
	rng, err := store.Range(ctx, "r", 4, 10, 100)
	if err != nil || fmt.Sprint(seqs(rng)) != "[6 8]" {
		t.Fatalf("range = %v, %v", seqs(rng), err)
	}
	if !latest[2].Equal(msgs[9]) {
		t.Fatalf("stored %+v, read back %+v", msgs[9], latest[2])
	}
	next, err := store.NextSeq(ctx)
	if err != nil || next != 20+1+history.SeqMargin {
		t.Fatalf("NextSeq = %d, %v; want %d", next, err, 20+1+history.SeqMargin)
	}
	if n, err := history.New(mongo.Connect(t)).NextSeq(ctx); err != nil || n == 0 {
		t.Fatalf("NextSeq = %d, %v", n, err)
	}
	// Restart the server: data survives.
	mongo.Stop()
	mongo.Start()
	chattest.Eventually(t, 20*time.Second, func() bool {
		n, err := store.Count(ctx, "r")
		return err == nil && n == 10
	}, "data did not survive a restart")
}

func TestNextSeqOnEmptyStore(t *testing.T) {
	store := history.New(chattest.StartMongo(t).Connect(t))
	if n, err := store.NextSeq(context.Background()); err != nil || n != 1 {
		t.Fatalf("NextSeq on an empty store = %d, %v; want 1", n, err)
	}
}

// An id stored twice in the stream is one message, the copy with the lowest seq, whatever
// order (and batches) the copies are written in; Seqs tells which seq is stored.
func TestInsertManyKeepsTheLowestSeq(t *testing.T) { bothPaths(t, testInsertManyKeepsTheLowestSeq) }

func testInsertManyKeepsTheLowestSeq(t *testing.T, newStore func(*mongo.Client) *history.Store) {
	store := newStore(chattest.StartMongo(t).Connect(t))
	ctx := context.Background()
	at := chat.NormalizeTime(time.Now())
	copyOf := func(id string, seq uint64, room, text string) chat.Message {
		return chat.Message{ID: id, Room: room, Name: "n", Message: text, SentAt: at, Seq: seq}
	}
	// Later copies first, one in another room; then the first copies; then a replay of all.
	steps := [][]chat.Message{
		{copyOf("a", 9, "r", "a later"), copyOf("b", 8, "other", "b later")},
		{copyOf("a", 3, "r", "a first"), copyOf("b", 4, "r", "b first"), copyOf("c", 5, "r", "c"), copyOf("a", 7, "r", "a middle")},
		{copyOf("a", 9, "r", "a later"), copyOf("c", 6, "r", "c later"), copyOf("b", 8, "other", "b later")},
	}
	for _, batch := range steps {
		if err := store.InsertMany(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	got, err := store.After(ctx, "r", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, m := range got {
		texts = append(texts, fmt.Sprintf("%d:%s", m.Seq, m.Message))
	}
	if fmt.Sprint(texts) != "[3:a first 4:b first 5:c]" {
		t.Fatalf("history %v, want the lowest seq of each id", texts)
	}
	if n, _ := store.Count(ctx, "other"); n != 0 {
		t.Fatalf("room other holds %d messages, want 0 (b's lowest copy is in r)", n)
	}
	seqs, err := store.Seqs(ctx, []string{"a", "b", "c", "nope"})
	if err != nil || fmt.Sprint(seqs) != "map[a:3 b:4 c:5]" {
		t.Fatalf("Seqs = %v, %v", seqs, err)
	}
}

// TestGetAndLatestVisible (placeholder until history11 merges): Get finds a message by
// room and id with its author; LatestVisible leaves deleted messages out.
func TestGetAndLatestVisible(t *testing.T) {
	mongo := chattest.StartMongo(t)
	client := mongo.Connect(t)
	store := history.New(client)
	ctx := context.Background()
	now := chat.NormalizeTime(time.Now())
	msgs := []chat.Message{
		{ID: "a", Room: "r", Name: "n", Message: "1", SentAt: now, Seq: 1, Author: "sha256:x"},
		{ID: "b", Room: "r", Name: "n", Message: "2", SentAt: now, Seq: 2},
	}
	if err := store.InsertMany(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	m, st, err := store.Get(ctx, "r", "a")
	if err != nil || !m.Equal(msgs[0]) || st.ContentSeq != 0 || st.Deleted {
		t.Fatalf("Get = %+v %+v %v", m, st, err)
	}
	for _, k := range [][2]string{{"r", "c"}, {"other", "a"}} {
		if _, _, err := store.Get(ctx, k[0], k[1]); err != history.ErrNotFound {
			t.Fatalf("Get(%q, %q) err %v, want ErrNotFound", k[0], k[1], err)
		}
	}
	coll := client.Database(history.Database).Collection(history.Collection)
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "$set", Value: bson.D{
		{Key: "deleted", Value: true}, {Key: "name", Value: ""}, {Key: "message", Value: ""}, {Key: "content_seq", Value: int64(5)}}}}); err != nil {
		t.Fatal(err)
	}
	if m, st, err = store.Get(ctx, "r", "a"); err != nil || !m.Deleted || !st.Deleted || st.ContentSeq != 5 {
		t.Fatalf("Get of a tombstone = %+v %+v %v", m, st, err)
	}
	vis, err := store.LatestVisible(ctx, "r", 10)
	if err != nil || len(vis) != 1 || vis[0].ID != "b" {
		t.Fatalf("LatestVisible = %+v, %v", vis, err)
	}
}
