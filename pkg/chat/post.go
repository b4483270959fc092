package chat

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
)

// Post is what an author sends: the fields a client or another service chooses.
type Post struct {
	Room    string // empty means DefaultRoom
	Name    string
	Message string
	ID      string // optional; becomes Nats-Msg-Id (an Idempotency-Key)
}

// Room is a resolved room: a valid room name, got from ResolveRoom. The zero Room is
// DefaultRoom.
type Room struct{ name string }

// ResolveRoom decides which room a post goes to, the one place that does: name, or
// DefaultRoom when name is empty. An invalid name is a *FieldError.
func ResolveRoom(name string) (Room, error) {
	if name == "" || name == DefaultRoom {
		return Room{}, nil
	}
	if err := ValidRoom(name); err != nil {
		return Room{}, err
	}
	return Room{name: name}, nil
}

// String is the room's name.
func (r Room) String() string {
	if r.name == "" {
		return DefaultRoom
	}
	return r.name
}

// NewMessage validates a post and builds the message to publish: its room resolved
// (ResolveRoom), then Room.NewMessage.
func NewMessage(p Post, now time.Time) (Message, error) {
	room, err := ResolveRoom(p.Room)
	if err != nil {
		return Message{}, err
	}
	return room.NewMessage(p.Name, p.Message, p.ID, now)
}

// NewMessage validates an author's fields and builds the message to publish in r:
// normalized name and text, id (an Idempotency-Key) or a new ULID when id is empty,
// sent_at = now. Seq is zero until JetStream stores it.
func (r Room) NewMessage(name, text, id string, now time.Time) (Message, error) {
	m := Message{Room: r.String(), ID: id, SentAt: NormalizeTime(now)}
	var err error
	if m.Name, err = NormalizeName(name); err != nil {
		return Message{}, err
	}
	if m.Message, err = NormalizeMessage(text); err != nil {
		return Message{}, err
	}
	if m.ID == "" {
		m.ID = NewID(now)
	} else if err := ValidID(m.ID); err != nil {
		return Message{}, err
	}
	return m, nil
}

// NewID returns a new message id: a ULID (sortable by time) whose 80 bits of entropy come
// fresh from crypto/rand for every id. Not ulid's default source: that one is seeded from
// the clock and monotonic (the next id of a millisecond is the previous plus a small
// step), so whoever saw one id could guess the next, and take it as an Idempotency-Key
// first. Ids of one millisecond are therefore not ordered among themselves; seq is the
// order.
func NewID(now time.Time) string {
	return ulid.MustNew(ulid.Timestamp(now), rand.Reader).String()
}

// Poster posts chat messages for Go services that talk to NATS directly, with the api's
// validation: the same thing as a POST to the api, without HTTP.
type Poster struct {
	js jetstream.JetStream
}

// NewPoster returns a poster on js.
func NewPoster(js jetstream.JetStream) *Poster { return &Poster{js: js} }

// Post validates p, publishes it with Nats-Msg-Id and waits for JetStream's ack. It
// returns the message with its seq. A retry with the same p.ID inside the stream's
// duplicate window stores nothing new; the returned seq is then the original's and
// duplicate is true (the returned text is this call's, not necessarily the original's,
// and the original may be in another room: read it back to compare).
func (p *Poster) Post(ctx context.Context, post Post) (m Message, duplicate bool, err error) {
	m, err = NewMessage(post, time.Now())
	if err != nil {
		return Message{}, false, err
	}
	ack, err := p.js.PublishMsg(ctx, m.NATSMsg(""), jetstream.WithMsgID(m.ID), jetstream.WithExpectStream(StreamName))
	if err != nil {
		return Message{}, false, fmt.Errorf("publish %s: %w", m.ID, err)
	}
	m.Seq = ack.Sequence
	return m, ack.Duplicate, nil
}
