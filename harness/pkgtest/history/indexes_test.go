package history_test

import (
	"context"
	"testing"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/history"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// On FerretDB v1 (SQLite) a secondary index is never read (only exact _id filters reach
// SQLite), so EnsureIndexes leaves them out there; with MongoDB's way of writing forced
// on (what the store does against MongoDB) it creates them all.
func TestEnsureIndexesByServer(t *testing.T) {
	m := chattest.StartMongo(t)
	mc := m.Connect(t)
	ctx := context.Background()
	names := func(c *mongo.Collection) map[string]bool {
		t.Helper()
		specs, err := c.Indexes().ListSpecifications(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, s := range specs {
			got[s.Name] = true
		}
		return got
	}
	db := mc.Database(history.Database)
	if err := history.New(mc).EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	// Inserting creates the collections with their _id index only.
	for _, c := range []string{history.Collection, history.RoomsCollection} {
		if _, err := db.Collection(c).InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}}); err != nil {
			t.Fatal(err)
		}
		if got := names(db.Collection(c)); len(got) != 1 || !got["_id_"] {
			t.Errorf("FerretDB: %s has indexes %v, want only _id_", c, got)
		}
	}
	if err := history.New(mc).WithGuardedUpdates().EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	if got := names(db.Collection(history.Collection)); !got["room_seq"] || !got["room_content_seq"] || !got["room_reactions_seq"] {
		t.Errorf("MongoDB's way: %s has indexes %v, want room_seq, room_content_seq, room_reactions_seq", history.Collection, got)
	}
	if got := names(db.Collection(history.RoomsCollection)); !got["last_seq"] {
		t.Errorf("MongoDB's way: %s has indexes %v, want last_seq", history.RoomsCollection, got)
	}
}
