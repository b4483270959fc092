package history

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/chatrt/chat/pkg/chat"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// maxMergeAttempts bounds the rounds of InsertMany's merge into stored documents.
const maxMergeAttempts = 5

// InsertMany stores msgs (messages, not changes) with one unordered bulk insert, then
// brings the room list (rooms.go) up to date with one bulk write: each message counts
// once, when it is first stored, and a redelivered batch adds nothing.
//
// An id stored more than once in the stream (published without Nats-Msg-Id, or again
// after the duplicate window) is one message: the copy with the lowest seq, whatever
// order the copies are written in. And a message whose changes reached MongoDB first
// finds a partial document (no seq) holding their state. So for the ids the insert
// found stored, InsertMany reads their seqs (one indexed query) and merges each copy
// whose seq is lower than the stored one, or that finds a partial document: its
// fields replace the stored ones and the state stays (a deleted message stays a
// tombstone, an edited one keeps its text). Redelivered batches are idempotent, and cost
// the insert and that one query.
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
		return s.updateRooms(ctx, roomActivity(msgs, func(int) bool { return true }, func(int) bool { return false }))
	}
	dups, ok := duplicates(err)
	if !ok {
		return fmt.Errorf("insert %d messages (first %s): %w", len(msgs), msgs[0].ID, err)
	}
	ids := make([]string, len(dups))
	for k, i := range dups {
		ids[k] = docs[i].ID
	}
	byID, err := s.idLookupsOnly(ctx)
	if err != nil {
		return fmt.Errorf("merge %d stored ids (first %s): %w", len(ids), ids[0], err)
	}
	if byID {
		stored, err := s.mergeByID(ctx, docs, dups)
		if err != nil {
			return err
		}
		return s.updateRooms(ctx, insertedActivity(msgs, dups, stored))
	}
	// Each round merges the copies that the stored seqs (read afresh) say should win;
	// the next round's read checks that they did. Only writers racing on the same id
	// (another copy, in another room) make a second merge necessary.
	var act map[string]*activity
	for round := range maxMergeAttempts {
		stored, err := s.storedSeqs(ctx, ids)
		if err != nil {
			return fmt.Errorf("merge %d stored ids (first %s): %w", len(ids), ids[0], err)
		}
		if round == 0 {
			act = insertedActivity(msgs, dups, stored)
		}
		var models []mongo.WriteModel
		for _, i := range dups {
			d := &docs[i]
			if seq, ok := stored[d.ID]; ok && (seq == 0 || seq > d.Seq) {
				models = append(models, mergeModels(d)...)
			}
		}
		if len(models) == 0 {
			return s.updateRooms(ctx, act)
		}
		for chunk := range slices.Chunk(models, maxBulk) {
			if err := s.bulkUpdate(ctx, chunk); err != nil {
				return fmt.Errorf("merge %d stored ids (first %s): %w", len(ids), ids[0], err)
			}
		}
	}
	return fmt.Errorf("merge %d stored ids (first %s): still contended after %d rounds", len(ids), ids[0], maxMergeAttempts)
}

// insertedActivity is the room activity of an insert that found the ids of msgs[dups]
// stored (stored: their seqs, 0 for a partial document). A message counts as new when
// the insert stored it or it completes a partial document; a copy with a higher seq than
// the stored one is not the message and is left out.
func insertedActivity(msgs []chat.Message, dups []int, stored map[string]int64) map[string]*activity {
	dup := make(map[int]bool, len(dups))
	for _, i := range dups {
		dup[i] = true
	}
	return roomActivity(msgs, func(i int) bool {
		return !dup[i] || stored[msgs[i].ID] == 0
	}, func(i int) bool {
		if !dup[i] {
			return false
		}
		seq, ok := stored[msgs[i].ID]
		return !ok || (seq > 0 && uint64(seq) < msgs[i].Seq)
	})
}

// mergeModels write copy d over the stored document of its id if that has a higher seq or
// none (a partial document), keeping the state. The state decides what d may set: all
// its fields when nobody changed the content, all but its text once edited, neither name
// nor text once deleted; and a document in another room (only changes to that room
// reached it) takes d's fields and drops that state, since a change applies to a message
// only in its own room. The four updates' filters are disjoint, and ordered as a
// document can move between them (content: none → edited → deleted), so exactly one
// applies unless another copy's merge intervenes (which InsertMany's next round
// notices).
func mergeModels(d *doc) []mongo.WriteModel {
	wins := func(extra ...bson.E) bson.D {
		return append(bson.D{{Key: fID, Value: d.ID},
			{Key: fSeq, Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$lte", Value: d.Seq}}}}}}, extra...)
	}
	set := func(fields ...bson.E) bson.E {
		return bson.E{Key: "$set", Value: append(bson.D{{Key: fSentAt, Value: d.SentAt}, {Key: fSeq, Value: d.Seq},
			{Key: fAuthor, Value: d.Author}}, fields...)}
	}
	sameRoom := bson.E{Key: fRoom, Value: d.Room}
	notDeleted := bson.E{Key: fDeleted, Value: bson.D{{Key: "$ne", Value: true}}}
	name, text := bson.E{Key: fName, Value: d.Name}, bson.E{Key: fMessage, Value: d.Message}
	return []mongo.WriteModel{
		mongo.NewUpdateOneModel().
			SetFilter(wins(bson.E{Key: fRoom, Value: bson.D{{Key: "$ne", Value: d.Room}}})).
			SetUpdate(bson.D{set(sameRoom, name, text), {Key: "$unset", Value: bson.D{
				{Key: fEditedAt, Value: ""}, {Key: fDeleted, Value: ""}, {Key: fContentSeq, Value: ""},
				{Key: fReactions, Value: ""}, {Key: fReactionsSeq, Value: ""}}}}),
		mongo.NewUpdateOneModel().
			SetFilter(wins(sameRoom, notDeleted, bson.E{Key: fContentSeq, Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$gt", Value: 0}}}}})).
			SetUpdate(bson.D{set(name, text)}),
		mongo.NewUpdateOneModel().
			SetFilter(wins(sameRoom, notDeleted, bson.E{Key: fContentSeq, Value: bson.D{{Key: "$gt", Value: 0}}})).
			SetUpdate(bson.D{set(name)}),
		mongo.NewUpdateOneModel().
			SetFilter(wins(sameRoom, bson.E{Key: fDeleted, Value: true})).
			SetUpdate(bson.D{set(bson.E{Key: fName, Value: ""}, bson.E{Key: fMessage, Value: ""})}),
	}
}

// mergeByID is InsertMany's merge on a server that looks documents up by exact _id only
// (server.go): in one update turn, each copy reads its stored document by _id and, where
// mergeModels' filters would match, writes the same fields by _id alone.
//
// It returns the seqs the ids had before (0: a partial document), as storedSeqs does.
func (s *Store) mergeByID(ctx context.Context, docs []doc, dups []int) (map[string]int64, error) {
	before := make(map[string]int64, len(dups))
	err := s.inTurn(ctx, func(wctx context.Context) error {
		var models []mongo.WriteModel
		// The stored documents as the writes below leave them: a batch may hold several
		// copies of one id.
		current := make(map[string]*doc, len(dups))
		for _, i := range dups {
			d := &docs[i]
			stored, ok := current[d.ID]
			if !ok {
				stored = new(doc)
				err := s.coll.FindOne(wctx, bson.D{{Key: fID, Value: d.ID}}).Decode(stored)
				if err != nil {
					// ErrNoDocuments too: the insert found this id stored, and nothing
					// here deletes documents.
					return fmt.Errorf("merge %s: read: %w", d.ID, err)
				}
				current[d.ID] = stored
				before[d.ID] = stored.Seq
			}
			if stored.Seq != 0 && stored.Seq <= d.Seq {
				continue // the stored copy wins
			}
			otherRoom := stored.Room != d.Room
			stored.Seq, stored.Room = d.Seq, d.Room
			if otherRoom {
				stored.Deleted, stored.ContentSeq = false, 0
			}
			set := bson.D{{Key: fSentAt, Value: d.SentAt}, {Key: fSeq, Value: d.Seq}, {Key: fAuthor, Value: d.Author}}
			update := bson.D{}
			switch {
			case otherRoom:
				set = append(set, bson.E{Key: fRoom, Value: d.Room}, bson.E{Key: fName, Value: d.Name},
					bson.E{Key: fMessage, Value: d.Message})
				update = append(update, bson.E{Key: "$unset", Value: bson.D{
					{Key: fEditedAt, Value: ""}, {Key: fDeleted, Value: ""}, {Key: fContentSeq, Value: ""},
					{Key: fReactions, Value: ""}, {Key: fReactionsSeq, Value: ""}}})
			case stored.Deleted:
				set = append(set, bson.E{Key: fName, Value: ""}, bson.E{Key: fMessage, Value: ""})
			case stored.ContentSeq > 0:
				set = append(set, bson.E{Key: fName, Value: d.Name})
			default:
				set = append(set, bson.E{Key: fName, Value: d.Name}, bson.E{Key: fMessage, Value: d.Message})
			}
			update = append(bson.D{{Key: "$set", Value: set}}, update...)
			models = append(models, mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: fID, Value: d.ID}}).SetUpdate(update))
		}
		for chunk := range slices.Chunk(models, maxBulk) {
			if _, err := s.coll.BulkWrite(wctx, chunk, options.BulkWrite().SetOrdered(true)); err != nil {
				return fmt.Errorf("merge %d stored ids (first %s): %w", len(models), docs[dups[0]].ID, err)
			}
		}
		return nil
	})
	return before, err
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

// storedSeqs returns the stored seq of each of ids that has a document: 0 for a partial
// one.
func (s *Store) storedSeqs(ctx context.Context, ids []string) (map[string]int64, error) {
	byID, err := s.idLookupsOnly(ctx)
	if err != nil {
		return nil, err
	}
	if byID {
		// One lookup per id: an $in filter scans the whole collection there (server.go)
		// and decodes every stored document, while a lookup by _id reads one (the embedded
		// store indexes exactly that lookup: harness/embedded's idIndexer). BenchmarkSeqs
		// (harness/pkgtest/history), 5000 stored: 0.5 ms an id looked up, 174 ms for one
		// $in of 65 ids, 215 ms for 256; the scan grows with history, the lookups do not.
		out := make(map[string]int64, len(ids))
		for _, id := range ids {
			var d struct {
				Seq int64 `bson:"seq"`
			}
			err := s.coll.FindOne(ctx, bson.D{{Key: fID, Value: id}},
				options.FindOne().SetProjection(bson.D{{Key: fSeq, Value: 1}})).Decode(&d)
			switch {
			case errors.Is(err, mongo.ErrNoDocuments):
			case err != nil:
				return nil, fmt.Errorf("find %s: %w", id, err)
			default:
				out[id] = d.Seq
			}
		}
		return out, nil
	}
	cur, err := s.coll.Find(ctx, bson.D{{Key: fID, Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: fSeq, Value: 1}}))
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
	out := make(map[string]int64, len(docs))
	for _, d := range docs {
		out[d.ID] = d.Seq
	}
	return out, nil
}

// Seqs returns the stored seq of each of ids that is stored (one query); a partial
// document (changes whose message is not stored yet) does not count. The pushers ask it
// to tell whether a message is a later copy of a stored one.
func (s *Store) Seqs(ctx context.Context, ids []string) (map[string]uint64, error) {
	out := make(map[string]uint64, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	stored, err := s.storedSeqs(ctx, ids)
	if err != nil {
		return nil, err
	}
	for id, seq := range stored {
		if seq > 0 {
			out[id] = uint64(seq)
		}
	}
	return out, nil
}
