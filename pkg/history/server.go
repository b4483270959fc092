package history

import (
	"context"
	"fmt"
	"strings"
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
	// serverFerretDB1 is FerretDB v1 (or built from its v1 library, as the embedded
	// store is, which reports its version as "unknown"): on SQLite it reads no secondary
	// index (EnsureIndexes).
	serverFerretDB1
)

// idLookupsOnly reports whether the server looks documents up by exact _id filters
// only (FerretDB), asking it once (buildInfo; FerretDB adds ferretdbVersion).
func (s *Store) idLookupsOnly(ctx context.Context) (bool, error) {
	switch s.server.Load() {
	case serverMongoDB:
		return false, nil
	case serverFerretDB, serverFerretDB1:
		return true, nil
	}
	var info bson.M
	if err := s.client.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		return false, fmt.Errorf("buildInfo: %w", err)
	}
	kind := serverMongoDB
	if v, ok := info["ferretdbVersion"]; ok {
		kind = serverFerretDB
		if v, _ := v.(string); v == "unknown" || strings.HasPrefix(v, "v1.") {
			kind = serverFerretDB1
		}
	}
	s.server.Store(kind)
	return kind != serverMongoDB, nil
}

// ferretDB1 reports whether the server is FerretDB v1 (idLookupsOnly asks it).
func (s *Store) ferretDB1(ctx context.Context) (bool, error) {
	if _, err := s.idLookupsOnly(ctx); err != nil {
		return false, err
	}
	return s.server.Load() == serverFerretDB1, nil
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
