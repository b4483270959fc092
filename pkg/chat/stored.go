package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stored is a message as JetStream stored it: what the persister and the pushers turn into
// a Message. Both run the same FromStored, so they agree on every field, derived ids included.
type Stored struct {
	Subject string
	MsgID   string // the Nats-Msg-Id header, if any
	// Author is the Chat-Author header: who posted it (an AuthorID), when the api knew.
	// It never becomes part of a Message: it is not sent to clients nor kept in history.
	Author string
	Data   []byte
	Seq    uint64    // stream sequence
	Time   time.Time // when JetStream stored it
}

// StoredFromMsg reads a consumed JetStream message.
func StoredFromMsg(m jetstream.Msg) (Stored, error) {
	md, err := m.Metadata()
	if err != nil {
		return Stored{}, fmt.Errorf("message metadata: %w", err)
	}
	return StoredWithMetadata(m, md), nil
}

// StoredWithMetadata reads a consumed JetStream message whose metadata the caller has
// already read (the persister also needs its delivery count).
func StoredWithMetadata(m jetstream.Msg, md *jetstream.MsgMetadata) Stored {
	return storedFrom(m.Subject(), m.Headers(), m.Data(), md.Sequence.Stream, md.Timestamp)
}

// StoredFromRaw reads a message fetched with a (direct) get.
func StoredFromRaw(r *jetstream.RawStreamMsg) Stored {
	return storedFrom(r.Subject, r.Header, r.Data, r.Sequence, r.Time)
}

// storedFrom is the one reader of a stored message's headers.
func storedFrom(subject string, h nats.Header, data []byte, seq uint64, t time.Time) Stored {
	return Stored{Subject: subject, MsgID: h.Get(HeaderMsgID), Author: h.Get(HeaderAuthor), Data: data, Seq: seq, Time: t}
}

// InvalidError explains why a stored payload is not a valid chat message. Its Reason goes
// into the Chat-Deadletter-Reason header.
type InvalidError struct{ Reason string }

func (e *InvalidError) Error() string { return "invalid payload: " + e.Reason }

// IsInvalid reports whether err says the payload itself is bad (retrying cannot help).
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}

func invalid(format string, args ...any) error {
	return &InvalidError{Reason: fmt.Sprintf(format, args...)}
}

// DeriveID is the id of a message published without one: unique per stream incarnation
// (epoch is the stream's creation time) and sequence, computed alike by every service.
func DeriveID(epoch time.Time, seq uint64) string {
	b := make([]byte, 0, 32)
	b = append(b, "js."...)
	b = append(b, EpochID(epoch)...)
	b = append(b, '.')
	b = strconv.AppendUint(b, seq, 10)
	return string(b)
}

// payload is the JSON published on chat.messages.<room>.
type payload struct {
	ID      *string `json:"id"`
	Room    *string `json:"room"`
	Name    *string `json:"name"`
	Message *string `json:"message"`
	SentAt  *string `json:"sent_at"`
}

// FromStored validates a stored payload and builds the message. epoch is the creation time
// of the stream it came from. An *InvalidError means the payload can never be valid.
//
// A change (issue 11: published to chat.messages.<room>.<id token>) comes back as a
// Message with Event set, Seq its own seq and ID the changed message's (change.go).
func FromStored(s Stored, epoch time.Time) (Message, error) {
	room, changeID, err := ParseSubject(s.Subject)
	if err != nil {
		return Message{}, invalid("%v", err)
	}
	if !utf8.Valid(s.Data) {
		return Message{}, invalid("payload is not valid UTF-8")
	}
	data := bytes.TrimSpace(s.Data)
	if len(data) == 0 || data[0] != '{' {
		return Message{}, invalid("payload is not a JSON object")
	}
	if changeID != "" {
		return changeFromStored(s, data, room, changeID)
	}
	var p payload
	if err := json.Unmarshal(data, &p); err != nil {
		return Message{}, invalid("bad JSON: %v", err)
	}
	if p.Name == nil {
		return Message{}, invalid("name: missing")
	}
	if p.Message == nil {
		return Message{}, invalid("message: missing")
	}
	m := Message{Room: room, Seq: s.Seq, Author: s.Author}
	if m.Name, err = NormalizeName(*p.Name); err != nil {
		return Message{}, invalid("%v", err)
	}
	if m.Message, err = NormalizeMessage(*p.Message); err != nil {
		return Message{}, invalid("%v", err)
	}
	if p.Room != nil && *p.Room != room {
		return Message{}, invalid("room: %q does not match subject room %q", *p.Room, room)
	}
	switch {
	case s.MsgID != "" && p.ID != nil && *p.ID != s.MsgID:
		return Message{}, invalid("id: %q does not match Nats-Msg-Id %q", *p.ID, s.MsgID)
	case s.MsgID != "":
		m.ID = s.MsgID
	case p.ID != nil:
		m.ID = *p.ID
	default:
		m.ID = DeriveID(epoch, s.Seq)
	}
	if err := ValidID(m.ID); err != nil {
		return Message{}, invalid("%v", err)
	}
	m.SentAt = NormalizeTime(s.Time)
	if p.SentAt != nil {
		if t, err := time.Parse(time.RFC3339Nano, *p.SentAt); err == nil {
			m.SentAt = NormalizeTime(t)
		}
	}
	return m, nil
}

// AppendPayload appends the JSON payload the api publishes for m: AppendJSON's encoding
// without its last field, seq, which JetStream assigns. (AppendJSON stays the pusher's
// hot path exactly as it was; the api pays a backward scan over a few bytes.)
func (m *Message) AppendPayload(dst []byte) []byte {
	start := len(dst)
	dst = m.AppendJSON(dst, "")
	cut := start + bytes.LastIndexByte(dst[start:], ',') // the comma of `,"seq":N}`
	return append(dst[:cut], '}')
}

// NATSMsg is the NATS message that publishes m: subject of its room, Nats-Msg-Id = id,
// and Chat-Author = author when author (an AuthorID) is not empty.
func (m *Message) NATSMsg(author string) *nats.Msg {
	msg := nats.NewMsg(Subject(m.Room))
	msg.Header.Set(HeaderMsgID, m.ID)
	if author != "" {
		msg.Header.Set(HeaderAuthor, author)
	}
	msg.Data = m.AppendPayload(make([]byte, 0, 96+len(m.Name)+len(m.Message)))
	return msg
}
