package history

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/chatrt/chat/pkg/chat"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ErrNotFound is Get's error when no message with that id is stored in that room.
var ErrNotFound = errors.New("message not found")

// Every read returns messages in their current state (edited text, tombstones,
// reactions) and never a partial document: their filters all require a seq.

// Get returns message id of room in its current state, Author included, and its State
// (the part seqs the api continues from). ErrNotFound when it is not stored in room (a
// partial document, changes whose message is not stored yet, does not count).
func (s *Store) Get(ctx context.Context, room, id string) (chat.Message, chat.State, error) {
	// A filter on _id alone, room and seq checked here: FerretDB runs only such a filter
	// as an SQL lookup (any other is a scan of the collection).
	var d doc
	err := s.coll.FindOne(ctx, bson.D{{Key: fID, Value: id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) || (err == nil && (d.Room != room || d.Seq <= 0)) {
		return chat.Message{}, chat.State{}, ErrNotFound
	}
	if err != nil {
		return chat.Message{}, chat.State{}, fmt.Errorf("find message %s: %w", id, err)
	}
	return d.message(), d.state(), nil
}

// Latest returns the newest limit messages of room, oldest first, tombstones included.
func (s *Store) Latest(ctx context.Context, room string, limit int) ([]chat.Message, error) {
	return s.find(ctx, bson.D{{Key: fRoom, Value: room}, {Key: fSeq, Value: bson.D{{Key: "$gt", Value: 0}}}}, -1, limit, true)
}

// LatestVisible returns the newest limit messages of room that are not deleted, oldest
// first (the seed route GET /messages).
func (s *Store) LatestVisible(ctx context.Context, room string, limit int) ([]chat.Message, error) {
	return s.find(ctx, bson.D{{Key: fRoom, Value: room}, {Key: fSeq, Value: bson.D{{Key: "$gt", Value: 0}}},
		{Key: fDeleted, Value: bson.D{{Key: "$ne", Value: true}}}}, -1, limit, true)
}

// Before returns the limit messages of room just before seq, oldest first.
func (s *Store) Before(ctx context.Context, room string, seq uint64, limit int) ([]chat.Message, error) {
	f := bson.D{{Key: fRoom, Value: room}, {Key: fSeq, Value: bson.D{
		{Key: "$gt", Value: 0}, {Key: "$lt", Value: int64(seq)}}}}
	return s.find(ctx, f, -1, limit, true)
}

// After returns the limit messages of room just after seq, oldest first.
func (s *Store) After(ctx context.Context, room string, seq uint64, limit int) ([]chat.Message, error) {
	f := bson.D{{Key: fRoom, Value: room}, {Key: fSeq, Value: bson.D{{Key: "$gt", Value: int64(seq)}}}}
	return s.find(ctx, f, 1, limit, false)
}

// Range is what a subscriber resuming from cursor from (a seq) missed up to to
// (exclusive), as far as MongoDB knows it: in seq order, at most limit items of two
// kinds.
//
//   - The messages with from < seq < to, in their current state.
//   - For messages with seq <= from (the subscriber has them) whose content or
//     reactions last changed at a seq in (from, to): a change (Event set) with that seq
//     carrying the part's current state: EventDeleted for a deleted message,
//     EventEdited (Message, EditedAt) for an edited one, EventReactions (every
//     reaction) for the reactions of one that is not deleted.
//
// Applied to what the subscriber had (chat.State.Apply), they give history's state. If
// Range returns limit items, everything up to the last one's seq is covered: continue
// from there. (One query per kind, each sorted by its seq and limited: of their merge,
// the first limit items are complete up to the last one.)
func (s *Store) Range(ctx context.Context, room string, from, to uint64, limit int) ([]chat.Message, error) {
	inRange := bson.D{{Key: "$gt", Value: int64(from)}, {Key: "$lt", Value: int64(to)}}
	msgs, err := s.find(ctx, bson.D{{Key: fRoom, Value: room}, {Key: fSeq, Value: inRange}}, 1, limit, false)
	if err != nil {
		return nil, err
	}
	older := bson.E{Key: fSeq, Value: bson.D{{Key: "$gt", Value: 0}, {Key: "$lte", Value: int64(from)}}}
	content, err := s.changed(ctx, bson.D{{Key: fRoom, Value: room}, {Key: fContentSeq, Value: inRange}, older},
		fContentSeq, limit, func(d *doc) chat.Message {
			if d.Deleted {
				return chat.Message{ID: d.ID, Room: d.Room, Seq: uint64(d.ContentSeq), Event: chat.EventDeleted}
			}
			return chat.Message{ID: d.ID, Room: d.Room, Seq: uint64(d.ContentSeq), Event: chat.EventEdited,
				Message: d.Message, EditedAt: chat.NormalizeTime(d.EditedAt)}
		})
	if err != nil {
		return nil, err
	}
	reactions, err := s.changed(ctx, bson.D{{Key: fRoom, Value: room}, {Key: fReactionsSeq, Value: inRange}, older,
		{Key: fDeleted, Value: bson.D{{Key: "$ne", Value: true}}}},
		fReactionsSeq, limit, func(d *doc) chat.Message {
			r := fromStored(d.Reactions)
			if r == nil {
				r = chat.Reactions{}
			}
			return chat.Message{ID: d.ID, Room: d.Room, Seq: uint64(d.ReactionsSeq), Event: chat.EventReactions,
				Reactions: r}
		})
	if err != nil {
		return nil, err
	}
	out := slices.Concat(msgs, content, reactions)
	if len(content)+len(reactions) > 0 {
		slices.SortFunc(out, func(a, b chat.Message) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// changed finds the documents matching filter sorted by field and turns each into a
// change item.
func (s *Store) changed(ctx context.Context, filter bson.D, field string, limit int, item func(*doc) chat.Message) ([]chat.Message, error) {
	cur, err := s.coll.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: field, Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("find changes by %s: %w", field, err)
	}
	var docs []doc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read changes by %s: %w", field, err)
	}
	out := make([]chat.Message, len(docs))
	for i := range docs {
		out[i] = item(&docs[i])
	}
	return out, nil
}

func (s *Store) find(ctx context.Context, filter bson.D, dir, limit int, reverse bool) ([]chat.Message, error) {
	opts := options.Find().SetSort(bson.D{{Key: fSeq, Value: dir}}).SetLimit(int64(limit))
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
