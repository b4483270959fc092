package history

import (
	"slices"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Field names of a document (the contract's MongoDB section).
const (
	fID           = "_id"
	fRoom         = "room"
	fName         = "name"
	fMessage      = "message"
	fSentAt       = "sent_at"
	fSeq          = "seq"
	fAuthor       = "author"
	fEditedAt     = "edited_at"
	fDeleted      = "deleted"
	fContentSeq   = "content_seq"
	fReactions    = "reactions"
	fReactionsSeq = "reactions_seq"
)

// doc is a stored message. A message's insert writes the first seven fields; the state
// fields are written by its changes (changes.go) and are absent until then.
//
// A document without seq is partial: changes that reached MongoDB before their message
// (two persister replicas) created it with only _id, room and the state. No read returns
// it; the message's insert later fills in the rest (insert.go).
type doc struct {
	ID      string    `bson:"_id"`
	Room    string    `bson:"room"`
	Name    string    `bson:"name"`
	Message string    `bson:"message"` // the current text: the edited one once edited
	SentAt  time.Time `bson:"sent_at"`
	Seq     int64     `bson:"seq,omitempty"`
	Author  string    `bson:"author,omitempty"` // never returned to clients

	EditedAt     time.Time  `bson:"edited_at,omitempty"`
	Deleted      bool       `bson:"deleted,omitempty"`
	ContentSeq   int64      `bson:"content_seq,omitempty"`
	Reactions    []reaction `bson:"reactions,omitempty"`
	ReactionsSeq int64      `bson:"reactions_seq,omitempty"`
}

// reaction is one emoji's people. The reactions are stored as an array of these rather
// than as a document keyed by emoji: an emoji from the bus may contain '.' or start
// with '$', which MongoDB field names (and FerretDB's) must not.
type reaction struct {
	Emoji  string   `bson:"emoji"`
	People []string `bson:"people"`
}

func toDoc(m *chat.Message) doc {
	return doc{ID: m.ID, Room: m.Room, Name: m.Name, Message: m.Message, SentAt: m.SentAt,
		Seq: int64(m.Seq), Author: m.Author}
}

// message is the stored message in its current state, Author included.
func (d *doc) message() chat.Message {
	m := chat.Message{ID: d.ID, Room: d.Room, Name: d.Name, Message: d.Message,
		SentAt: chat.NormalizeTime(d.SentAt), Seq: uint64(d.Seq), Author: d.Author, Deleted: d.Deleted}
	if !d.EditedAt.IsZero() && !d.Deleted {
		m.EditedAt = chat.NormalizeTime(d.EditedAt)
	}
	if !d.Deleted {
		m.Reactions = fromStored(d.Reactions)
	}
	return m
}

// state is the stored message's chat.State.
func (d *doc) state() chat.State {
	if d.Deleted {
		return chat.State{Deleted: true, ContentSeq: uint64(d.ContentSeq)}
	}
	s := chat.State{ContentSeq: uint64(d.ContentSeq), ReactionsSeq: uint64(d.ReactionsSeq),
		Reactions: fromStored(d.Reactions)}
	if d.ContentSeq > 0 {
		s.Message = d.Message
		if !d.EditedAt.IsZero() {
			s.EditedAt = chat.NormalizeTime(d.EditedAt)
		}
	}
	return s
}

// toStored is r as stored: emoji in byte order, each with its people in their order.
// Never nil, so that "nobody reacts any more" is stored as [] (not null).
func toStored(r chat.Reactions) bson.A {
	emoji := make([]string, 0, len(r))
	for e, people := range r {
		if len(people) > 0 {
			emoji = append(emoji, e)
		}
	}
	slices.Sort(emoji)
	out := make(bson.A, len(emoji))
	for i, e := range emoji {
		out[i] = reaction{Emoji: e, People: r[e]}
	}
	return out
}

// fromStored reads stored reactions; nil when none were ever set.
func fromStored(rs []reaction) chat.Reactions {
	if rs == nil {
		return nil
	}
	out := make(chat.Reactions, len(rs))
	for _, r := range rs {
		if len(r.People) > 0 {
			out[r.Emoji] = r.People
		}
	}
	return out
}
