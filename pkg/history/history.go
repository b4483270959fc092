// Package history is the MongoDB side of the contract: database "chat", collection
// "messages", one document per message {_id, room, name, message, sent_at, seq, author}
// with its state (issue 11: edited_at, deleted, content_seq, reactions, reactions_seq;
// doc.go), a unique _id and indexes on (room, seq), (room, content_seq) and
// (room, reactions_seq). The persister writes messages (insert.go) and their changes
// (changes.go) through it; the api reads history pages and single messages, and the
// pusher reads resumes older than the stream's window (read.go).
package history

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Names from the contract.
const (
	Database   = "chat"
	Collection = "messages"
)

// Connect opens a client for uri and checks that the server answers. The driver keeps
// reconnecting on its own afterwards.
func Connect(ctx context.Context, uri string) (*mongo.Client, error) {
	c, err := mongo.Connect(options.Client().ApplyURI(uri).
		SetServerSelectionTimeout(5 * time.Second).
		SetConnectTimeout(5 * time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect mongodb: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := c.Ping(pctx, nil); err != nil {
		_ = c.Disconnect(context.Background())
		return nil, fmt.Errorf("ping mongodb: %w", err)
	}
	return c, nil
}

// Disconnect closes c, waiting up to timeout for connections in use to be returned. Every
// main calls it last, after the consumers drained.
func Disconnect(c *mongo.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.Disconnect(ctx); err != nil {
		return fmt.Errorf("disconnect mongodb: %w", err)
	}
	return nil
}

// Store reads and writes chat messages in MongoDB.
type Store struct {
	client *mongo.Client
	coll   *mongo.Collection
	rooms  *mongo.Collection
	server serverKind // MongoDB or FerretDB, once asked (server.go)
}

// New returns a store on the contract's collection.
func New(client *mongo.Client) *Store {
	db := client.Database(Database)
	return &Store{client: client, coll: db.Collection(Collection), rooms: db.Collection(RoomsCollection)}
}

// Ping checks that MongoDB answers (for /readyz).
func (s *Store) Ping(ctx context.Context) error { return s.client.Ping(ctx, nil) }

// EnsureIndexes creates the indexes: (room, seq) for pages and resumes, (room,
// content_seq) and (room, reactions_seq) for the changes a resume from MongoDB sends.
// _id is unique by definition.
//
// On FerretDB v1 (the all-in-one's and the tests' store) it creates none: FerretDB v1 on
// SQLite pushes only a filter that is exactly {_id: <value>} and a $natural sort down to
// SQLite (backends/sqlite/collection.go, query.go) and scans for every other query, so a
// secondary index there is never read, only written: with the three of them an insert
// cost 93 µs of CPU per message instead of 62 (batches of 100, embedded FerretDB, this
// machine), a third of what the all-in-one spends storing a post. (FerretDB v1 on
// PostgreSQL would read them; production runs MongoDB.)
func (s *Store) EnsureIndexes(ctx context.Context) error {
	if ferret, err := s.ferretDB1(ctx); err != nil {
		return fmt.Errorf("ensure indexes: %w", err)
	} else if ferret {
		return nil
	}
	for _, field := range []string{fSeq, fContentSeq, fReactionsSeq} {
		name := "room_" + field
		_, err := s.coll.Indexes().CreateOne(ctx, mongo.IndexModel{
			Keys:    bson.D{{Key: fRoom, Value: 1}, {Key: field, Value: 1}},
			Options: options.Index().SetName(name),
		})
		if err != nil {
			return fmt.Errorf("create index %s: %w", name, err)
		}
	}
	// The room list pages by last_seq (issue 12).
	if _, err := s.rooms.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: fLastSeq, Value: -1}},
		Options: options.Index().SetName(fLastSeq)}); err != nil {
		return fmt.Errorf("create index rooms.%s: %w", fLastSeq, err)
	}
	return nil
}

// SeqMargin is how far a recreated stream's first seq lies beyond the highest seq in
// MongoDB: room for messages the lost stream had acknowledged but the persister had not
// stored yet, so no new message reuses a seq that a client may already have seen.
const SeqMargin = 1_000_000

// NextSeq is the first seq for a CHAT stream created now: 1 on an empty store, else the
// highest stored seq + 1 + SeqMargin. Pass it as chat.StreamOptions.NextSeq.
func (s *Store) NextSeq(ctx context.Context) (uint64, error) {
	var d doc
	err := s.coll.FindOne(ctx, bson.D{{Key: fSeq, Value: bson.D{{Key: "$gt", Value: 0}}}},
		options.FindOne().SetSort(bson.D{{Key: fSeq, Value: -1}})).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("highest stored seq: %w", err)
	}
	return uint64(d.Seq) + 1 + SeqMargin, nil
}

// Count returns how many messages room has, tombstones included (tests and tools).
func (s *Store) Count(ctx context.Context, room string) (int64, error) {
	return s.coll.CountDocuments(ctx, bson.D{{Key: fRoom, Value: room}, {Key: fSeq, Value: bson.D{{Key: "$gt", Value: 0}}}})
}
