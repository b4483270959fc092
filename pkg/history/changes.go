package history

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// How changes are written (issue 11). A message's state has two parts, content (edited or
// deleted; content_seq) and reactions (reactions_seq), and each keeps its newest change,
// a deletion being final (chat.State.Apply). Every write below is one update of one
// document whose filter holds its guard ("this part's seq is older", "not deleted"), so
// in MongoDB, where an update of one document is atomic, changes applied in any order,
// twice, or by two writers at once end in the state chat.State.Apply gives.
//
// A change may reach MongoDB before its message (two persister replicas). So each
// message a call changes is first upserted with a filter on _id alone, which only
// creates {_id, room} when there is no document yet (a partial document: no seq, never
// read); the guarded updates then never upsert, and so never fail on a duplicate key
// because a guard did not hold. An upsert on _id alone that races another writer's
// insert is retried by MongoDB itself (4.2+); FerretDB reports it as a duplicate key
// instead, and then the whole (idempotent) bulk write is run again.

// updates serializes the update bulk writes of every Store in this process (ApplyChanges
// and InsertMany's merge). MongoDB applies an update to one document atomically, which is
// all the guards above need. FerretDB v1 (the tests' and the all-in-one's store) does not:
// it reads the document, computes the update and writes the whole document back, so two
// updates of one document at once can lose one. Writers that share a process (the tests'
// persister replicas, the all-in-one) therefore take turns; a persister writes one batch at
// a time anyway, so in production this costs nothing. Writers in separate processes on
// FerretDB remain exposed; on MongoDB they are safe.
var updates sync.Mutex

// bulkUpdate runs one ordered bulk write of updates, in turn with the others.
//
// The turn lasts until the server has answered, not until ctx ends: a client that stops
// waiting (its deadline passed) leaves the server applying the write, and an update that
// started then would run alongside it, which on FerretDB can lose one of them (after a
// MongoDB outage the persister's backlog made writes outlast its 1s deadline, and acked
// changes went missing from history this way). So the write runs under a context that
// keeps ctx's values but not its deadline or cancellation, bounded by
// detachedWriteTimeout; ctx only decides whether to start. A write that completes is
// reported as such even if ctx ended meanwhile: it is stored.
func (s *Store) bulkUpdate(ctx context.Context, models []mongo.WriteModel) error {
	return s.inTurn(ctx, func(wctx context.Context) error {
		_, err := s.coll.BulkWrite(wctx, models, options.BulkWrite().SetOrdered(true))
		return err
	})
}

// inTurn runs write in this process's update turn, under a context that keeps ctx's
// values but not its deadline (see bulkUpdate), bounded by detachedWriteTimeout.
func (s *Store) inTurn(ctx context.Context, write func(wctx context.Context) error) error {
	updates.Lock()
	defer updates.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), detachedWriteTimeout)
	defer cancel()
	return write(wctx)
}

// detachedWriteTimeout bounds how long bulkUpdate waits for the server once a write is
// sent, whatever its caller's deadline: only a server that hangs longer gets a second
// writer alongside (and the connection is closed then, which FerretDB notices).
const detachedWriteTimeout = time.Minute

// maxChangeAttempts bounds the bulk writes of one ApplyChanges call that lost an
// upsert race.
const maxChangeAttempts = 4

// maxBulk is the most updates sent in one bulk write. FerretDB (the tests' and the
// all-in-one's store) keeps an SQLite connection per matched update until its command
// ends, out of a pool of 100: a command of about 100 updates then waits for a connection
// forever. Changes are rare enough that a batch seldom needs more than one.
const maxBulk = 32

// ApplyChanges applies changes (each with Event set, Seq its own seq, ID and Room the
// changed message's) with one ordered bulk write (per maxBulk updates). A change applies
// to the message with its id in its room; a change whose id is stored in another room is
// ignored. Applying changes in any order, in any batches, more than once, or from two
// writers at once gives the state of applying them all with chat.State.Apply.
func (s *Store) ApplyChanges(ctx context.Context, changes []chat.Message) error {
	if len(changes) == 0 {
		return nil
	}
	groups, err := groupChanges(changes)
	if err != nil {
		return err
	}
	byID, err := s.idLookupsOnly(ctx)
	if err != nil {
		return fmt.Errorf("apply %d changes: %w", len(changes), err)
	}
	if byID {
		return s.applyByID(ctx, groups)
	}
	models := make([]mongo.WriteModel, 0, 3*len(groups))
	for _, g := range groups {
		// Fold the changes of each message: fewer updates, and the same result, since a
		// part's newest change alone gives its state.
		var st chat.State
		for _, c := range g.changes {
			st.Apply(c)
		}
		models = append(models, changeModels(g.room, g.id, &st)...)
	}
	for chunk := range slices.Chunk(models, maxBulk) {
		for attempt := 1; ; attempt++ {
			err := s.bulkUpdate(ctx, chunk)
			if err == nil {
				break
			}
			if _, dup := duplicates(err); !dup || attempt == maxChangeAttempts {
				return fmt.Errorf("apply %d changes to %d messages (first seq %d): %w",
					len(changes), len(groups), changes[0].Seq, err)
			}
		}
	}
	return nil
}

// changeGroup is the changes of one message, in the order given.
type changeGroup struct {
	room, id string
	changes  []*chat.Message
}

// groupChanges checks that every one of changes is a change and groups them by message,
// in the order each message first appears.
func groupChanges(changes []chat.Message) ([]changeGroup, error) {
	type key struct{ room, id string }
	index := make(map[key]int, len(changes))
	var groups []changeGroup
	for i := range changes {
		c := &changes[i]
		switch {
		case c.Event != chat.EventEdited && c.Event != chat.EventDeleted && c.Event != chat.EventReactions:
			return nil, fmt.Errorf("apply changes: seq %d (id %q) is not a change (event %q)", c.Seq, c.ID, c.Event)
		case c.Seq == 0 || c.ID == "" || c.Room == "":
			return nil, fmt.Errorf("apply changes: change of id %q in room %q with seq %d", c.ID, c.Room, c.Seq)
		}
		k := key{c.Room, c.ID}
		g, ok := index[k]
		if !ok {
			g = len(groups)
			index[k] = g
			groups = append(groups, changeGroup{room: c.Room, id: c.ID})
		}
		groups[g].changes = append(groups[g].changes, c)
	}
	return groups, nil
}

// applyByID applies the changes on a server that looks documents up by exact _id only
// (server.go): each message's document is read by _id, its state is computed here with
// chat.State.Apply, and what changed is written back with a filter on _id alone, all in
// one update turn so that no other writer of this process comes between the read and
// the write. A message with no document yet gets a partial one (its message's insert
// merges into it, insert.go); a document in another room is left alone.
//
// Inserts of messages do not take the turn: one can land between the read that found no
// document and the upsert, and FerretDB then fails the upsert with a duplicate key
// (TestConcurrentWritersConverge/by_id: 3 runs in 80 under -race). The read, fold and
// write are then done again: the read now finds the inserted message.
func (s *Store) applyByID(ctx context.Context, groups []changeGroup) error {
	for attempt := 1; ; attempt++ {
		err := s.inTurn(ctx, func(wctx context.Context) error { return s.applyByIDOnce(wctx, groups) })
		if _, dup := duplicates(err); !dup || attempt == maxChangeAttempts {
			return err
		}
	}
}

// applyByIDOnce is one read, fold and write of applyByID, in the update turn.
func (s *Store) applyByIDOnce(wctx context.Context, groups []changeGroup) error {
	var models []mongo.WriteModel
	for _, g := range groups {
		var d doc
		err := s.coll.FindOne(wctx, bson.D{{Key: fID, Value: g.id}}).Decode(&d)
		exists := err == nil
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
		case err != nil:
			return fmt.Errorf("read %s: %w", g.id, err)
		case d.Room != g.room:
			continue
		}
		st := d.state()
		changed := false
		for _, c := range g.changes {
			if st.Apply(c) {
				changed = true
			}
		}
		if changed {
			models = append(models, stateModel(g.room, g.id, &st, exists))
		}
	}
	for chunk := range slices.Chunk(models, maxBulk) {
		if _, err := s.coll.BulkWrite(wctx, chunk, options.BulkWrite().SetOrdered(true)); err != nil {
			return fmt.Errorf("apply changes to %d messages (first %s): %w", len(models), groups[0].id, err)
		}
	}
	return nil
}

// stateModel writes state st of message id in room over its document, by _id alone;
// upserting a partial document {_id, room, state} when none exists.
func stateModel(room, id string, st *chat.State, exists bool) mongo.WriteModel {
	var update bson.D
	if st.Deleted {
		update = bson.D{
			{Key: "$set", Value: bson.D{
				{Key: fDeleted, Value: true}, {Key: fName, Value: ""}, {Key: fMessage, Value: ""},
				{Key: fContentSeq, Value: int64(st.ContentSeq)}}},
			{Key: "$unset", Value: bson.D{
				{Key: fEditedAt, Value: ""}, {Key: fReactions, Value: ""}, {Key: fReactionsSeq, Value: ""}}},
		}
	} else {
		var set bson.D
		if st.ContentSeq > 0 {
			set = append(set, bson.E{Key: fMessage, Value: st.Message}, bson.E{Key: fEditedAt, Value: st.EditedAt},
				bson.E{Key: fContentSeq, Value: int64(st.ContentSeq)})
		}
		if st.ReactionsSeq > 0 {
			set = append(set, bson.E{Key: fReactions, Value: toStored(st.Reactions)},
				bson.E{Key: fReactionsSeq, Value: int64(st.ReactionsSeq)})
		}
		update = bson.D{{Key: "$set", Value: set}}
	}
	m := mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: fID, Value: id}})
	if !exists {
		update = append(update, bson.E{Key: "$setOnInsert", Value: bson.D{{Key: fRoom, Value: room}}})
		m.SetUpsert(true)
	}
	return m.SetUpdate(update)
}

// changeModels are the updates that merge state st (the fold of some changes of message
// id in room) into its document: the upsert that makes sure the document exists, then one
// guarded update per part.
func changeModels(room, id string, st *chat.State) []mongo.WriteModel {
	ensure := mongo.NewUpdateOneModel().
		SetFilter(bson.D{{Key: fID, Value: id}}).
		SetUpdate(bson.D{{Key: "$setOnInsert", Value: bson.D{{Key: fRoom, Value: room}}}}).
		SetUpsert(true)
	models := []mongo.WriteModel{ensure}
	notDeleted := bson.E{Key: fDeleted, Value: bson.D{{Key: "$ne", Value: true}}}
	// olderThan matches a part seq below seq, or none at all.
	olderThan := func(field string, seq uint64) bson.E {
		return bson.E{Key: field, Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$gte", Value: int64(seq)}}}}}
	}
	if st.Deleted {
		// A deletion wins over any edit and takes the reactions with it...
		models = append(models, mongo.NewUpdateOneModel().
			SetFilter(bson.D{{Key: fID, Value: id}, {Key: fRoom, Value: room}, notDeleted}).
			SetUpdate(bson.D{
				{Key: "$set", Value: bson.D{
					{Key: fDeleted, Value: true}, {Key: fName, Value: ""}, {Key: fMessage, Value: ""},
					{Key: fContentSeq, Value: int64(st.ContentSeq)}}},
				{Key: "$unset", Value: bson.D{
					{Key: fEditedAt, Value: ""}, {Key: fReactions, Value: ""}, {Key: fReactionsSeq, Value: ""}}},
			}))
		// ...and of several deletions the first (lowest seq) is the one.
		models = append(models, mongo.NewUpdateOneModel().
			SetFilter(bson.D{{Key: fID, Value: id}, {Key: fRoom, Value: room}, {Key: fDeleted, Value: true},
				{Key: fContentSeq, Value: bson.D{{Key: "$gt", Value: int64(st.ContentSeq)}}}}).
			SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: fContentSeq, Value: int64(st.ContentSeq)}}}}))
		return models
	}
	if st.ContentSeq > 0 {
		models = append(models, mongo.NewUpdateOneModel().
			SetFilter(bson.D{{Key: fID, Value: id}, {Key: fRoom, Value: room}, notDeleted,
				olderThan(fContentSeq, st.ContentSeq)}).
			SetUpdate(bson.D{{Key: "$set", Value: bson.D{
				{Key: fMessage, Value: st.Message}, {Key: fEditedAt, Value: st.EditedAt},
				{Key: fContentSeq, Value: int64(st.ContentSeq)}}}}))
	}
	if st.ReactionsSeq > 0 {
		models = append(models, mongo.NewUpdateOneModel().
			SetFilter(bson.D{{Key: fID, Value: id}, {Key: fRoom, Value: room}, notDeleted,
				olderThan(fReactionsSeq, st.ReactionsSeq)}).
			SetUpdate(bson.D{{Key: "$set", Value: bson.D{
				{Key: fReactions, Value: toStored(st.Reactions)},
				{Key: fReactionsSeq, Value: int64(st.ReactionsSeq)}}}}))
	}
	return models
}
