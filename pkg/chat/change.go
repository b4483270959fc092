package chat

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// Event is the kind of a change to a message (issue 11). Changes are events on the CHAT
// stream like messages: each has its own seq in its room's order, so the one resume
// cursor covers messages and changes.
//
// A change is published to the message's own subject, chat.messages.<room>.<id token>
// (ChangeSubject), so that a writer can serialize its read-modify-write of one message
// with JetStream's expected-last-subject-sequence, and carries only the part it changes,
// in full (not a delta): the new text; that the message is deleted; every reaction.
// Applying a room's changes part by part in seq order therefore gives the same state
// wherever it is done (the persister into history, a client from its frames), and a
// part's newest change alone gives that part's state. A deletion is final: it removes
// name, text and reactions, and changes after it are ignored.
type Event string

// The change events; their names are also the websocket frames' types.
const (
	EventEdited    Event = "edited"
	EventDeleted   Event = "deleted"
	EventReactions Event = "reactions"
)

// Limits of a change's fields.
const (
	MaxEmojiBytes  = 32  // one reaction's emoji (the api also checks an allowlist)
	MaxPersonBytes = 256 // who reacted: an AuthorID, or a name (≤ 64 code points)
	MaxReactionSet = 64  // distinct emoji on one message
)

// Reactions are a message's reactions: emoji → who reacted, each person once per emoji.
// Clients only ever see the counts (AppendCounts).
type Reactions map[string][]string

// Count is how many people reacted with emoji.
func (r Reactions) Count(emoji string) int { return len(r[emoji]) }

// Total is the number of reactions over all emoji.
func (r Reactions) Total() int {
	n := 0
	for _, p := range r {
		n += len(p)
	}
	return n
}

// Has reports whether person reacted with emoji.
func (r Reactions) Has(emoji, person string) bool { return slices.Contains(r[emoji], person) }

// With returns a copy of r with person's emoji added (r itself is not modified).
func (r Reactions) With(emoji, person string) Reactions {
	out := r.clone()
	if !slices.Contains(out[emoji], person) {
		out[emoji] = append(slices.Clip(out[emoji]), person)
	}
	return out
}

// Without returns a copy of r without person's emoji.
func (r Reactions) Without(emoji, person string) Reactions {
	out := r.clone()
	if i := slices.Index(out[emoji], person); i >= 0 {
		out[emoji] = slices.Delete(slices.Clone(out[emoji]), i, i+1)
		if len(out[emoji]) == 0 {
			delete(out, emoji)
		}
	}
	return out
}

func (r Reactions) clone() Reactions {
	out := make(Reactions, len(r)+1)
	for k, v := range r {
		out[k] = v
	}
	return out
}

// emojis returns r's emoji with at least one person, sorted (the wire order).
func (r Reactions) emojis() []string {
	keys := make([]string, 0, len(r))
	for k, v := range r {
		if len(v) > 0 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// AppendCounts appends r as the JSON object clients see: {"<emoji>": <count>, ...},
// emoji in byte order, emoji nobody reacted with left out.
func (r Reactions) AppendCounts(dst []byte) []byte {
	dst = append(dst, '{')
	for i, k := range r.emojis() {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, int64(len(r[k])), 10)
	}
	return append(dst, '}')
}

// ValidEmoji checks a reaction's emoji: 1-32 bytes of valid UTF-8 without spaces or
// control characters. (Which emoji a person may use is the api's allowlist.)
func ValidEmoji(e string) error {
	if e == "" {
		return fieldErr("emoji", "must not be empty")
	}
	if len(e) > MaxEmojiBytes {
		return fieldErr("emoji", "must be at most 32 bytes")
	}
	if !utf8.ValidString(e) {
		return fieldErr("emoji", "must be valid UTF-8")
	}
	for _, r := range e {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return fieldErr("emoji", "must not contain spaces or control characters")
		}
	}
	return nil
}

// ValidPerson checks who reacted: 1-256 bytes of valid UTF-8 without control characters.
func ValidPerson(p string) error {
	if p == "" || len(p) > MaxPersonBytes || !utf8.ValidString(p) {
		return fieldErr("reactions", "a person must be 1-256 bytes of UTF-8")
	}
	for _, r := range p {
		if unicode.IsControl(r) {
			return fieldErr("reactions", "a person must not contain control characters")
		}
	}
	return nil
}

// validReactions checks a reactions set from the bus.
func validReactions(r Reactions) error {
	if len(r) > MaxReactionSet {
		return fieldErr("reactions", "at most 64 different emoji")
	}
	for e, people := range r {
		if err := ValidEmoji(e); err != nil {
			return err
		}
		for i, p := range people {
			if err := ValidPerson(p); err != nil {
				return err
			}
			if slices.Contains(people[:i], p) {
				return fieldErr("reactions", fmt.Sprintf("%q reacted with %q twice", p, e))
			}
		}
	}
	return nil
}

// IDToken is the subject token of a message id: the id with '.' (which separates subject
// tokens) as '~' (which ids cannot contain). IDFromToken reverses it.
func IDToken(id string) string { return strings.ReplaceAll(id, ".", "~") }

// IDFromToken is the message id of a change subject's last token.
func IDFromToken(tok string) string { return strings.ReplaceAll(tok, "~", ".") }

// ChangeSubject is the subject of the changes to message id of room:
// chat.messages.<room>.<IDToken(id)>. Room and id must be valid.
func ChangeSubject(room, id string) string { return SubjectPrefix + room + "." + IDToken(id) }

// ChangesWildcard matches every change subject of room (but not its messages' subject).
func ChangesWildcard(room string) string { return SubjectPrefix + room + ".*" }

// ParseSubject splits a subject of the CHAT stream: chat.messages.<room> (id == "") or
// chat.messages.<room>.<id token> (a change to message id).
func ParseSubject(subject string) (room, id string, err error) {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix)
	if !ok {
		return "", "", fmt.Errorf("subject %q is not under %s", subject, SubjectPrefix)
	}
	room, tok, change := strings.Cut(rest, ".")
	if err := ValidRoom(room); err != nil {
		return "", "", fmt.Errorf("subject %q: %w", subject, err)
	}
	if !change {
		return room, "", nil
	}
	id = IDFromToken(tok)
	if err := ValidID(id); err != nil || strings.ContainsRune(tok, '.') {
		return "", "", fmt.Errorf("subject %q: the last token is not a message id", subject)
	}
	return room, id, nil
}

// changePayload is the JSON of a change on the bus.
type changePayload struct {
	Type      *string    `json:"type"`
	ID        *string    `json:"id"`
	Room      *string    `json:"room"`
	Message   *string    `json:"message"`
	EditedAt  *string    `json:"edited_at"`
	Reactions *Reactions `json:"reactions"`
}

// changeFromStored validates a change payload published to the change subject of room's
// message id.
func changeFromStored(s Stored, data []byte, room, id string) (Message, error) {
	var p changePayload
	if err := json.Unmarshal(data, &p); err != nil {
		return Message{}, invalid("bad JSON: %v", err)
	}
	if p.Type == nil {
		return Message{}, invalid("type: missing")
	}
	if p.ID != nil && *p.ID != id {
		return Message{}, invalid("id: %q does not match the subject's message id %q", *p.ID, id)
	}
	if p.Room != nil && *p.Room != room {
		return Message{}, invalid("room: %q does not match subject room %q", *p.Room, room)
	}
	m := Message{ID: id, Room: room, Seq: s.Seq, Author: s.Author, SentAt: NormalizeTime(s.Time), Event: Event(*p.Type)}
	var err error
	switch m.Event {
	case EventEdited:
		if p.Message == nil {
			return Message{}, invalid("message: missing")
		}
		if m.Message, err = NormalizeMessage(*p.Message); err != nil {
			return Message{}, invalid("%v", err)
		}
		m.EditedAt = m.SentAt
		if p.EditedAt != nil {
			if t, err := time.Parse(time.RFC3339Nano, *p.EditedAt); err == nil {
				m.EditedAt = NormalizeTime(t)
			}
		}
	case EventDeleted:
	case EventReactions:
		if p.Reactions == nil {
			return Message{}, invalid("reactions: missing")
		}
		if err := validReactions(*p.Reactions); err != nil {
			return Message{}, invalid("%v", err)
		}
		m.Reactions = *p.Reactions
		if m.Reactions == nil {
			m.Reactions = Reactions{}
		}
	default:
		return Message{}, invalid("type: %q is not edited, deleted or reactions", *p.Type)
	}
	return m, nil
}

// AppendChangePayload appends the JSON payload that publishes change m.
func (m *Message) AppendChangePayload(dst []byte) []byte {
	dst = append(dst, `{"type":`...)
	dst = appendString(dst, string(m.Event))
	dst = append(dst, `,"id":`...)
	dst = appendString(dst, m.ID)
	dst = append(dst, `,"room":`...)
	dst = appendString(dst, m.Room)
	switch m.Event {
	case EventEdited:
		dst = append(dst, `,"message":`...)
		dst = appendString(dst, m.Message)
		dst = append(dst, `,"edited_at":"`...)
		dst = m.EditedAt.UTC().AppendFormat(dst, TimeLayout)
		dst = append(dst, '"')
	case EventReactions:
		dst = append(dst, `,"reactions":{`...)
		for i, e := range m.Reactions.emojis() {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, e)
			dst = append(dst, ":["...)
			for j, p := range m.Reactions[e] {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = appendString(dst, p)
			}
			dst = append(dst, ']')
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// ChangeMsg is the NATS message that publishes change m (m.Event set) to its message's
// change subject; author (an AuthorID of whoever made the change, may be "") goes into
// Chat-Author.
func (m *Message) ChangeMsg(author string) *nats.Msg {
	msg := nats.NewMsg(ChangeSubject(m.Room, m.ID))
	if author != "" {
		msg.Header.Set(HeaderAuthor, author)
	}
	msg.Data = m.AppendChangePayload(make([]byte, 0, 96+len(m.Message)))
	return msg
}

// appendChange appends the websocket frame of change m:
//
//	{"type":"edited","room","id","seq","message","edited_at"}
//	{"type":"deleted","room","id","seq"}
//	{"type":"reactions","room","id","seq","reactions":{"<emoji>":<count>,...}}
func (m *Message) appendChange(dst []byte) []byte {
	dst = append(dst, `{"type":`...)
	dst = appendString(dst, string(m.Event))
	dst = append(dst, `,"room":`...)
	dst = appendString(dst, m.Room)
	dst = append(dst, `,"id":`...)
	dst = appendString(dst, m.ID)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, m.Seq, 10)
	switch m.Event {
	case EventEdited:
		dst = append(dst, `,"message":`...)
		dst = appendString(dst, m.Message)
		dst = append(dst, `,"edited_at":"`...)
		dst = m.EditedAt.UTC().AppendFormat(dst, TimeLayout)
		dst = append(dst, '"')
	case EventReactions:
		dst = append(dst, `,"reactions":`...)
		dst = m.Reactions.AppendCounts(dst)
	}
	return append(dst, '}')
}

// appendState appends a message's state fields after sent_at: "edited_at" when edited,
// "deleted":true for a tombstone, "reactions" (counts) when anyone reacted.
func (m *Message) appendState(dst []byte) []byte {
	if !m.EditedAt.IsZero() {
		dst = append(dst, `,"edited_at":"`...)
		dst = m.EditedAt.UTC().AppendFormat(dst, TimeLayout)
		dst = append(dst, '"')
	}
	if m.Deleted {
		dst = append(dst, `,"deleted":true`...)
	}
	if m.Reactions.Total() > 0 {
		dst = append(dst, `,"reactions":`...)
		dst = m.Reactions.AppendCounts(dst)
	}
	return dst
}

// State is a message's changeable parts and the seq of the change that last set each:
// the content (its text, edited or deleted) and the reactions.
type State struct {
	Message      string // the text; "" unless edited (then the original is kept elsewhere)
	EditedAt     time.Time
	Deleted      bool
	ContentSeq   uint64 // seq of the last edit or of the deletion; 0: none
	Reactions    Reactions
	ReactionsSeq uint64 // 0: none
}

// Apply applies change c (c.Event set) and reports whether it changed anything. Changes
// may come in any order: each part keeps its newest change (highest seq), and a deletion
// is final, so applying a set of changes in any order gives the same state.
//
// A message deleted more than once (a race, or another publisher) is deleted by its
// first deletion: ContentSeq is the lowest deletion's seq in any order.
func (s *State) Apply(c *Message) bool {
	if s.Deleted {
		if c.Event == EventDeleted && c.Seq < s.ContentSeq {
			s.ContentSeq = c.Seq
			return true
		}
		return false
	}
	switch c.Event {
	case EventEdited:
		if c.Seq <= s.ContentSeq {
			return false
		}
		s.Message, s.EditedAt, s.ContentSeq = c.Message, c.EditedAt, c.Seq
	case EventDeleted:
		*s = State{Deleted: true, ContentSeq: c.Seq} // reactions go with it
	case EventReactions:
		if c.Seq <= s.ReactionsSeq {
			return false
		}
		s.Reactions, s.ReactionsSeq = c.Reactions, c.Seq
	default:
		return false
	}
	return true
}

// WithState returns message m in state s: the edited text, a tombstone (no name, text or
// reactions) once deleted.
func (m Message) WithState(s *State) Message {
	switch {
	case s.Deleted:
		m.Name, m.Message, m.EditedAt, m.Reactions, m.Deleted = "", "", time.Time{}, nil, true
		return m
	case s.ContentSeq > 0 && !s.EditedAt.IsZero():
		m.Message, m.EditedAt = s.Message, s.EditedAt
	}
	m.Reactions = s.Reactions
	return m
}

// Equal reports whether m and o are the same message or change (a Message is not
// comparable with == since it has Reactions).
func (m Message) Equal(o Message) bool {
	if m.ID != o.ID || m.Room != o.Room || m.Name != o.Name || m.Message != o.Message ||
		!m.SentAt.Equal(o.SentAt) || m.Seq != o.Seq || m.Event != o.Event ||
		!m.EditedAt.Equal(o.EditedAt) || m.Deleted != o.Deleted || m.Author != o.Author {
		return false
	}
	r1, r2 := m.Reactions, o.Reactions
	if len(r1) != len(r2) {
		return false
	}
	for e, p := range r1 {
		if !slices.Equal(p, r2[e]) {
			return false
		}
	}
	return true
}
