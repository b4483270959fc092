package chattest_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// A restarted FerretDB child keeps its address and its data, and Stop twice is harmless.
func TestMongoRestartKeepsAddressAndData(t *testing.T) {
	m := chattest.StartMongo(t)
	uri := m.URI()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	coll := m.Connect(t).Database("chattest").Collection("restart")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "kept"}}); err != nil {
		t.Fatal(err)
	}

	m.Stop()
	m.Stop()
	if c, err := net.DialTimeout("tcp", uri[len("mongodb://"):len(uri)-1], time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Stop", uri)
	}
	m.Start()
	if m.URI() != uri {
		t.Fatalf("URI after restart = %s, want %s", m.URI(), uri)
	}
	n, err := m.Connect(t).Database("chattest").Collection("restart").CountDocuments(ctx, bson.D{{Key: "_id", Value: "kept"}})
	if err != nil || n != 1 {
		t.Fatalf("after restart: %d documents, %v; want 1", n, err)
	}
}
