package history

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// RoomsCollection is the room list (issue 12): one document per room that has a stored
// message, {_id: room, last_seq, last_sent_at, messages}, kept by InsertMany as it stores
// (never by scanning messages). Changes (edits, deletions, reactions) do not count as
// activity: last_seq is the seq of the room's newest message.
const RoomsCollection = "rooms"

// Field names of a rooms document.
const (
	fLastSeq    = "last_seq"
	fLastSentAt = "last_sent_at"
	fMessages   = "messages"
)

// Room is one entry of the room list.
type Room struct {
	Room       string    `bson:"_id"`
	LastSeq    uint64    `bson:"last_seq"`
	LastSentAt time.Time `bson:"last_sent_at"`
	Messages   int64     `bson:"messages"`
}

// activity is what one InsertMany adds to a room: its highest seq and sent_at among the
// batch's messages that are the stored copy, and how many of them it stored for the first
// time.
type activity struct {
	lastSeq    uint64
	lastSentAt time.Time
	added      int64
}

// roomActivity folds msgs into per-room activity; counted[i] says whether msgs[i] was
// stored for the first time, skip[i] that it is a losing copy of a stored id (a higher
// seq than the stored one: not the message, so not activity).
func roomActivity(msgs []chat.Message, counted, skip func(i int) bool) map[string]*activity {
	out := make(map[string]*activity)
	for i := range msgs {
		if skip(i) {
			continue
		}
		m := &msgs[i]
		a := out[m.Room]
		if a == nil {
			a = &activity{}
			out[m.Room] = a
		}
		a.lastSeq = max(a.lastSeq, m.Seq)
		if m.SentAt.After(a.lastSentAt) {
			a.lastSentAt = m.SentAt
		}
		if counted(i) {
			a.added++
		}
	}
	return out
}

// maxRoomAttempts bounds the rounds of updateRooms that lost an upsert race (FerretDB
// reports two writers creating one room as a duplicate key; MongoDB retries itself).
const maxRoomAttempts = 4

// updateRooms applies the activity with one unordered bulk write of upserts on _id alone
// (FerretDB's only index lookup): last_seq and last_sent_at only ever grow ($max), and
// messages grows by what this write stored first. Updates that lost an upsert race are
// retried alone, so no room's count is added twice.
func (s *Store) updateRooms(ctx context.Context, act map[string]*activity) error {
	if len(act) == 0 {
		return nil
	}
	rooms := make([]string, 0, len(act))
	for r := range act {
		rooms = append(rooms, r)
	}
	slices.Sort(rooms)
	models := make([]mongo.WriteModel, len(rooms))
	for i, r := range rooms {
		a := act[r]
		update := bson.D{{Key: "$max", Value: bson.D{{Key: fLastSeq, Value: int64(a.lastSeq)},
			{Key: fLastSentAt, Value: a.lastSentAt}}}}
		update = append(update, bson.E{Key: "$inc", Value: bson.D{{Key: fMessages, Value: a.added}}})
		models[i] = mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: fID, Value: r}}).
			SetUpdate(update).SetUpsert(true)
	}
	for attempt := 1; ; attempt++ {
		err := s.bulkUpdateRooms(ctx, models)
		if err == nil {
			return nil
		}
		dups, ok := duplicates(err)
		if !ok || attempt == maxRoomAttempts {
			return fmt.Errorf("update %d rooms (first %s): %w", len(rooms), rooms[0], err)
		}
		retry := make([]mongo.WriteModel, len(dups))
		for k, i := range dups {
			retry[k] = models[i]
		}
		models = retry
	}
}

// bulkUpdateRooms runs one unordered bulk write on the rooms collection, in turn with
// the other update writers of the process (FerretDB could otherwise lose one of two
// concurrent $inc on one room: see updates), detached from ctx's deadline once started.
func (s *Store) bulkUpdateRooms(ctx context.Context, models []mongo.WriteModel) error {
	for chunk := range slices.Chunk(models, maxBulk) {
		if err := s.bulkRooms(ctx, chunk); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) bulkRooms(ctx context.Context, models []mongo.WriteModel) error {
	updates.Lock()
	defer updates.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), detachedWriteTimeout)
	defer cancel()
	_, err := s.rooms.BulkWrite(wctx, models, options.BulkWrite().SetOrdered(false))
	return err
}

// Rooms returns up to limit rooms with last_seq < before (0: no bound), newest activity
// first, keeping only those allow accepts (nil: all). Rooms allow refuses are skipped,
// not counted against limit.
func (s *Store) Rooms(ctx context.Context, limit int, before uint64, allow func(room string) bool) ([]Room, error) {
	filter := bson.D{}
	if before > 0 {
		filter = bson.D{{Key: fLastSeq, Value: bson.D{{Key: "$lt", Value: int64(before)}}}}
	}
	opts := options.Find().SetSort(bson.D{{Key: fLastSeq, Value: -1}})
	if allow == nil {
		opts.SetLimit(int64(limit))
	} else {
		opts.SetBatchSize(int32(min(max(limit*2, 64), 1000)))
	}
	cur, err := s.rooms.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("find rooms: %w", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	out := make([]Room, 0, min(limit, 64))
	for len(out) < limit && cur.Next(ctx) {
		var r Room
		if err := cur.Decode(&r); err != nil {
			return nil, fmt.Errorf("decode room: %w", err)
		}
		if allow != nil && !allow(r.Room) {
			continue
		}
		r.LastSentAt = chat.NormalizeTime(r.LastSentAt)
		out = append(out, r)
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("read rooms: %w", err)
	}
	return out, nil
}
