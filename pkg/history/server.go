package history

import (
	"context"
	"fmt"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// What kind of server the store writes to. MongoDB looks a document up by its _id
// whatever else a filter holds, so a guarded update (changes.go) costs one index lookup
// there. FerretDB v1 (the tests' and the all-in-one's store, on SQLite) turns only a
// filter that is exactly {_id: <string>} into a lookup and scans the whole collection
// for any other: every guarded update of a change then reads every stored message, and
// under load (the fault tests: thousands of messages, changes each second) those scans
// took the store's time from the posts. On FerretDB the store therefore reads each
// document by its _id, computes the new state in Go and writes it back by _id alone
// (changes.go, insert.go), under the process-wide update turn, which FerretDB's own
// non-atomic updates need anyway.
const (
	serverUnknown int32 = iota
	serverMongoDB
	serverFerretDB
)

// idLookupsOnly reports whether the server looks documents up by exact _id filters
// only (FerretDB), asking it once (buildInfo; FerretDB adds ferretdbVersion).
func (s *Store) idLookupsOnly(ctx context.Context) (bool, error) {
	switch s.server.Load() {
	case serverMongoDB:
		return false, nil
	case serverFerretDB:
		return true, nil
	}
	var info bson.M
	if err := s.client.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		return false, fmt.Errorf("buildInfo: %w", err)
	}
	kind := serverMongoDB
	if _, ok := info["ferretdbVersion"]; ok {
		kind = serverFerretDB
	}
	s.server.Store(kind)
	return kind == serverFerretDB, nil
}

// serverKind is the field of Store that caches idLookupsOnly's answer.
type serverKind = atomic.Int32

// WithGuardedUpdates makes s write with guarded updates (MongoDB's way) whatever the
// server, and returns s. On FerretDB they are correct but scan the collection: the tests
// use it to run that path there.
func (s *Store) WithGuardedUpdates() *Store {
	s.server.Store(serverMongoDB)
	return s
}
