package embedded_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/harness/embedded"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// lookupPlan is SQLite's plan for the statement FerretDB v1 finds a document by _id with
// (backends/sqlite/collection.go Query: SELECT ... WHERE <IDColumn> = ?, IDColumn being
// _ferretdb_sjson->'$._id'); its UPDATE and DELETE by _id use the same WHERE.
func lookupPlan(t *testing.T, file, collection string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var table string
	if err := db.QueryRow(`SELECT table_name FROM _ferretdb_collections WHERE name = ?`, collection).Scan(&table); err != nil {
		return "no table: " + err.Error()
	}
	rows, err := db.Query(`EXPLAIN QUERY PLAN SELECT _ferretdb_sjson FROM "`+table+`" WHERE _ferretdb_sjson->'$._id' = ?`, `"a"`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return strings.Join(plan, "; ")
}

// TestLookupsByIDUseAnIndex: every collection's table, in every database, whenever it
// was created (also again after a drop of the collection or of its database), gets the
// index FerretDB's lookups by _id can use, and the lookups still find what they should.
func TestLookupsByIDUseAnIndex(t *testing.T) {
	dir := t.TempDir()
	f, err := embedded.StartFerret(embedded.FerretOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(f.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })

	colls := []*mongo.Collection{c.Database("chat").Collection("messages"), c.Database("other").Collection("things")}
	indexed := func(coll *mongo.Collection) {
		t.Helper()
		file := filepath.Join(dir, coll.Database().Name()+".sqlite")
		chattest.Eventually(t, 10*time.Second, func() bool {
			return strings.Contains(lookupPlan(t, file, coll.Name()), "USING INDEX _ferretdb_idpath_")
		}, "%s.%s: no index for lookups by _id", coll.Database().Name(), coll.Name())
		t.Logf("%s.%s: %s", coll.Database().Name(), coll.Name(), lookupPlan(t, file, coll.Name()))
	}
	for _, coll := range colls {
		if _, err := coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: "a"}, {Key: "n", Value: 1}},
			bson.D{{Key: "_id", Value: "b"}, {Key: "n", Value: 2}}}); err != nil {
			t.Fatal(err)
		}
		indexed(coll)
		if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "b"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 3}}}}); err != nil {
			t.Fatal(err)
		}
		var got struct{ N int }
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "b"}}).Decode(&got); err != nil || got.N != 3 {
			t.Fatalf("%s: find b after its update: %+v, %v", coll.Name(), got, err)
		}
		if _, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: "a"}}); err != nil {
			t.Fatal(err)
		}
		if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
			t.Fatalf("%s: %d documents after deleting a (%v), want 1", coll.Name(), n, err)
		}
	}
	// A dropped collection's table goes with its indexes; the new one gets its own.
	coll := colls[0]
	if err := coll.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "c"}}); err != nil {
		t.Fatal(err)
	}
	indexed(coll)
	// A dropped database's file goes; the database created again is a new file.
	coll = colls[1]
	if err := coll.Database().Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "d"}}); err != nil {
		t.Fatal(err)
	}
	indexed(coll)
	// Nothing of the dropped database comes back in the new one.
	if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
		t.Fatalf("%s after its database was dropped and created again: %d documents (%v), want 1", coll.Name(), n, err)
	}
}
