// Package chat is the shared contract of the chat services: the message type and its
// validation, the NATS subjects and streams, how a stored stream message becomes a chat
// message (including ids for messages other services publish without one), and a Poster
// that other Go services can post with.
package chat

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// TimeLayout is the wire format of sent_at: RFC 3339, UTC, exactly three fraction digits.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Message is a chat message as stored and as sent to clients.
type Message struct {
	ID      string    `json:"id"`
	Room    string    `json:"room"`
	Name    string    `json:"name"`
	Message string    `json:"message"`
	SentAt  time.Time `json:"sent_at"`
	Seq     uint64    `json:"seq"`

	// The message's changes (issue 11, change.go). For a message (Event == ""): its
	// current state, as history shows it and the MongoDB tier of a resume sends it.
	// For a change (Event != ""): Seq is the change's own seq, ID the changed message's,
	// and only the changed part is set (Message and EditedAt for EventEdited, Reactions
	// for EventReactions, nothing for EventDeleted).
	// Author is who posted the message (Chat-Author, an AuthorID; "" unknown), or who
	// made the change. It is kept in history for the api's checks and never sent to
	// clients: no encoder here writes it.
	Author string `json:"-"`

	Event     Event     `json:"-"`
	EditedAt  time.Time `json:"-"` // zero: never edited
	Deleted   bool      `json:"-"` // a tombstone: Name and Message are empty
	Reactions Reactions `json:"-"` // emoji → who reacted (never sent: clients see counts)
}

// MarshalJSON encodes the message in its contract form (sent_at with exactly three
// fraction digits in UTC, text without HTML escaping). Note that json.Marshal and an
// Encoder with HTML escaping on re-escape <, > and &: write responses with an Encoder
// that has SetEscapeHTML(false), or with AppendJSON.
func (m Message) MarshalJSON() ([]byte, error) {
	return m.AppendJSON(make([]byte, 0, 128+len(m.Name)+len(m.Message)), ""), nil
}

// AppendJSON appends the message as a JSON object to dst. A non-empty typ adds a leading
// "type" field, which is how the pusher frames messages for websocket clients. It is the
// one encoder of a message's fields: AppendPayload is its output without seq, so the
// two encodings cannot drift apart.
//
// A change (m.Event != "") is encoded as its frame whatever typ says: see appendChange.
func (m *Message) AppendJSON(dst []byte, typ string) []byte {
	if m.Event != "" {
		return m.appendChange(dst)
	}
	dst = append(dst, '{')
	if typ != "" {
		dst = append(dst, `"type":`...)
		dst = appendString(dst, typ)
		dst = append(dst, ',')
	}
	dst = append(dst, `"id":`...)
	dst = appendString(dst, m.ID)
	dst = append(dst, `,"room":`...)
	dst = appendString(dst, m.Room)
	dst = append(dst, `,"name":`...)
	dst = appendString(dst, m.Name)
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, m.Message)
	dst = append(dst, `,"sent_at":"`...)
	dst = m.SentAt.UTC().AppendFormat(dst, TimeLayout)
	dst = append(dst, '"')
	dst = m.appendState(dst) // before seq: AppendPayload cuts the last field
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, m.Seq, 10)
	return append(dst, '}')
}

// FormatTime renders t in the contract's sent_at format.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// NormalizeTime returns t in UTC truncated to milliseconds, the precision the contract keeps.
func NormalizeTime(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Unlike encoding/json it does not escape
// <, > and &: the contract promises byte-exact text. Invalid UTF-8 becomes U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\r':
				dst = append(dst, '\\', 'r')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break older JavaScript parsers.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
