// Package history is the MongoDB side of the contract: database "chat", collection
// "messages", documents {_id, room, name, message, sent_at, seq}, a unique _id and an
// index on (room, seq). The persister writes through it; the api reads history pages and
// the pusher reads resumes older than the stream's window.
package history

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/chatrt/chat/pkg/chat"
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
}

// New returns a store on the contract's collection.
func New(client *mongo.Client) *Store {
	return &Store{client: client, coll: client.Database(Database).Collection(Collection)}
}

// Ping checks that MongoDB answers (for /readyz).
func (s *Store) Ping(ctx context.Context) error { return s.client.Ping(ctx, nil) }

// EnsureIndexes creates the (room, seq) index. _id is unique by definition.
func (s *Store) EnsureIndexes(ctx context.Context) error {
	_, err := s.coll.Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys:    bson.D{{Key: "room", Value: 1}, {Key: "seq", Value: 1}},
		Options: options.Index().SetName("room_seq"),
	})
	if err != nil {
		return fmt.Errorf("create index room_seq: %w", err)
	}
	return nil
}

type doc struct {
	ID      string    `bson:"_id"`
	Room    string    `bson:"room"`
	Name    string    `bson:"name"`
	Message string    `bson:"message"`
	SentAt  time.Time `bson:"sent_at"`
	Seq     int64     `bson:"seq"`
	// Issue 11's hidden and state fields (written by ApplyChanges, pending history11).
	Author       string              `bson:"author,omitempty"`
	EditedAt     time.Time           `bson:"edited_at,omitempty"`
	Deleted      bool                `bson:"deleted,omitempty"`
	ContentSeq   int64               `bson:"content_seq,omitempty"`
	Reactions    map[string][]string `bson:"reactions,omitempty"`
	ReactionsSeq int64               `bson:"reactions_seq,omitempty"`
}

func toDoc(m *chat.Message) doc {
	return doc{ID: m.ID, Room: m.Room, Name: m.Name, Message: m.Message, SentAt: m.SentAt, Seq: int64(m.Seq), Author: m.Author}
}

func (d *doc) message() chat.Message {
	return chat.Message{ID: d.ID, Room: d.Room, Name: d.Name, Message: d.Message, SentAt: chat.NormalizeTime(d.SentAt), Seq: uint64(d.Seq), Author: d.Author}
}

// state is the doc's State.
func (d *doc) state() chat.State {
	s := chat.State{Deleted: d.Deleted, ContentSeq: uint64(d.ContentSeq), ReactionsSeq: uint64(d.ReactionsSeq)}
	if !d.EditedAt.IsZero() {
		s.Message, s.EditedAt = d.Message, chat.NormalizeTime(d.EditedAt)
	}
	if len(d.Reactions) > 0 {
		s.Reactions = chat.Reactions(d.Reactions)
	}
	return s
}

// ErrNotFound is Get's error for a message history does not hold.
var ErrNotFound = errors.New("message not found")

// Get returns message id of room in its current state (Author set) and its State;
// ErrNotFound when history holds no such message (a partial doc without seq does not
// count). (Placeholder until history11 merges.)
func (s *Store) Get(ctx context.Context, room, id string) (chat.Message, chat.State, error) {
	var d doc
	err := s.coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "room", Value: room},
		{Key: "seq", Value: bson.D{{Key: "$exists", Value: true}}}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return chat.Message{}, chat.State{}, ErrNotFound
	}
	if err != nil {
		return chat.Message{}, chat.State{}, fmt.Errorf("get message %s: %w", id, err)
	}
	st := d.state()
	return d.message().WithState(&st), st, nil
}

// InsertMany stores msgs with one unordered bulk insert. An id stored more than once in
// the stream (published without Nats-Msg-Id, or again after the duplicate window) is one
// message: the copy with the lowest seq, whatever order the copies are written in. So a
// message whose id is already stored replaces the stored copy only if its seq is lower
// (one query for the stored seqs, and one unordered bulk write if any is lower);
// otherwise it is skipped. Redelivered batches are idempotent.
func (s *Store) InsertMany(ctx context.Context, msgs []chat.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	docs := make([]doc, len(msgs))
	for i := range msgs {
		docs[i] = toDoc(&msgs[i])
	}
	_, err := s.coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return nil
	}
	dups, ok := duplicates(err)
	if !ok {
		return fmt.Errorf("insert %d messages (first %s): %w", len(msgs), msgs[0].ID, err)
	}
	// Usually a redelivery: the stored copies are these very ones. Read the stored seqs
	// (one indexed query) and replace only the copies stored with a higher seq; the
	// replace is conditional, so a concurrent writer cannot make it keep a higher one.
	ids := make([]string, len(dups))
	for k, i := range dups {
		ids[k] = docs[i].ID
	}
	stored, err := s.Seqs(ctx, ids)
	if err != nil {
		return fmt.Errorf("keep the lowest seq of %d stored ids (first %s): %w", len(dups), ids[0], err)
	}
	var models []mongo.WriteModel
	for _, i := range dups {
		d := &docs[i]
		if seq, ok := stored[d.ID]; ok && seq <= uint64(d.Seq) {
			continue
		}
		models = append(models, mongo.NewReplaceOneModel().
			SetFilter(bson.D{{Key: "_id", Value: d.ID}, {Key: "seq", Value: bson.D{{Key: "$gt", Value: d.Seq}}}}).
			SetReplacement(d))
	}
	if len(models) == 0 {
		return nil
	}
	if _, err := s.coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false)); err != nil {
		return fmt.Errorf("keep the lowest seq of %d stored ids (first %s): %w", len(models), ids[0], err)
	}
	return nil
}

// duplicates returns the indexes of the documents an insert refused as duplicate keys;
// false if it failed for any other reason.
func duplicates(err error) ([]int, bool) {
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return nil, false
	}
	idx := make([]int, 0, len(bwe.WriteErrors))
	for _, we := range bwe.WriteErrors {
		if we.Code != 11000 {
			return nil, false
		}
		idx = append(idx, we.Index)
	}
	return idx, true
}

// Seqs returns the stored seq of each of ids that is stored (one query). The pushers
// ask it to tell whether a message is a later copy of a stored one.
func (s *Store) Seqs(ctx context.Context, ids []string) (map[string]uint64, error) {
	out := make(map[string]uint64, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	cur, err := s.coll.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: "seq", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("find %d ids: %w", len(ids), err)
	}
	var docs []struct {
		ID  string `bson:"_id"`
		Seq int64  `bson:"seq"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read %d ids: %w", len(ids), err)
	}
	for _, d := range docs {
		out[d.ID] = uint64(d.Seq)
	}
	return out, nil
}

// Latest returns the newest limit messages of room, oldest first.
func (s *Store) Latest(ctx context.Context, room string, limit int) ([]chat.Message, error) {
	return s.find(ctx, bson.D{{Key: "room", Value: room}}, -1, limit, true)
}

// LatestVisible is Latest without deleted messages (the seed route's page).
// (Placeholder until history11 merges.)
func (s *Store) LatestVisible(ctx context.Context, room string, limit int) ([]chat.Message, error) {
	f := bson.D{{Key: "room", Value: room}, {Key: "deleted", Value: bson.D{{Key: "$ne", Value: true}}}}
	return s.find(ctx, f, -1, limit, true)
}

// Before returns the limit messages of room just before seq, oldest first.
func (s *Store) Before(ctx context.Context, room string, seq uint64, limit int) ([]chat.Message, error) {
	f := bson.D{{Key: "room", Value: room}, {Key: "seq", Value: bson.D{{Key: "$lt", Value: int64(seq)}}}}
	return s.find(ctx, f, -1, limit, true)
}

// After returns the limit messages of room just after seq, oldest first.
func (s *Store) After(ctx context.Context, room string, seq uint64, limit int) ([]chat.Message, error) {
	f := bson.D{{Key: "room", Value: room}, {Key: "seq", Value: bson.D{{Key: "$gt", Value: int64(seq)}}}}
	return s.find(ctx, f, 1, limit, false)
}

// Range returns room's messages with from < seq < to, oldest first, at most limit of them.
func (s *Store) Range(ctx context.Context, room string, from, to uint64, limit int) ([]chat.Message, error) {
	f := bson.D{{Key: "room", Value: room}, {Key: "seq", Value: bson.D{
		{Key: "$gt", Value: int64(from)}, {Key: "$lt", Value: int64(to)}}}}
	return s.find(ctx, f, 1, limit, false)
}

// SeqMargin is how far a recreated stream's first seq lies beyond the highest seq in
// MongoDB: room for messages the lost stream had acknowledged but the persister had not
// stored yet, so no new message reuses a seq that a client may already have seen.
const SeqMargin = 1_000_000

// NextSeq is the first seq for a CHAT stream created now: 1 on an empty store, else the
// highest stored seq + 1 + SeqMargin. Pass it as chat.StreamOptions.NextSeq.
func (s *Store) NextSeq(ctx context.Context) (uint64, error) {
	var d doc
	err := s.coll.FindOne(ctx, bson.D{}, options.FindOne().SetSort(bson.D{{Key: "seq", Value: -1}})).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("highest stored seq: %w", err)
	}
	return uint64(d.Seq) + 1 + SeqMargin, nil
}

// Count returns how many messages room has (tests and tools).
func (s *Store) Count(ctx context.Context, room string) (int64, error) {
	return s.coll.CountDocuments(ctx, bson.D{{Key: "room", Value: room}})
}

func (s *Store) find(ctx context.Context, filter bson.D, dir, limit int, reverse bool) ([]chat.Message, error) {
	opts := options.Find().SetSort(bson.D{{Key: "seq", Value: dir}}).SetLimit(int64(limit))
	cur, err := s.coll.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("find messages: %w", err)
	}
	var docs []doc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	out := make([]chat.Message, len(docs))
	for i := range docs {
		j := i
		if reverse {
			j = len(docs) - 1 - i
		}
		out[j] = docs[i].message()
	}
	return out, nil
}
