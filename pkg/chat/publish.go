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

// NewMessage validates a post and builds the message to publish: normalized text, the
// post's id or a new ULID, sent_at = now. Seq is zero until JetStream stores it.
func NewMessage(p Post, now time.Time) (Message, error) {
	m := Message{Room: p.Room, ID: p.ID, SentAt: NormalizeTime(now)}
	if m.Room == "" {
		m.Room = DefaultRoom
	}
	if err := ValidRoom(m.Room); err != nil {
		return Message{}, err
	}
	var err error
	if m.Name, err = NormalizeName(p.Name); err != nil {
		return Message{}, err
	}
	if m.Message, err = NormalizeMessage(p.Message); err != nil {
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

// Publisher publishes chat messages for Go services that talk to NATS directly.
type Publisher struct {
	js jetstream.JetStream
}

// NewPublisher returns a publisher on js.
func NewPublisher(js jetstream.JetStream) *Publisher { return &Publisher{js: js} }

// Publish validates p, publishes it with Nats-Msg-Id and waits for JetStream's ack. It
// returns the message with its seq. A retry with the same p.ID inside the stream's
// duplicate window stores nothing new; the returned seq is then the original's and
// duplicate is true (the returned text is this call's, not necessarily the original's).
func (p *Publisher) Publish(ctx context.Context, post Post) (m Message, duplicate bool, err error) {
	m, err = NewMessage(post, time.Now())
	if err != nil {
		return Message{}, false, err
	}
	ack, err := p.js.PublishMsg(ctx, m.NATSMsg(), jetstream.WithMsgID(m.ID), jetstream.WithExpectStream(StreamName))
	if err != nil {
		return Message{}, false, fmt.Errorf("publish %s: %w", m.ID, err)
	}
	m.Seq = ack.Sequence
	return m, ack.Duplicate, nil
}
