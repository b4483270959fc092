package chatclient

import (
	"encoding/json"
	"time"

	"github.com/chatrt/chat/pkg/chat"
)

// Msg is a message a subscription delivers: exactly once, in seq order.
type Msg struct {
	// Message is the message: the v1 fields (id, room, name, message, sent_at, seq), and
	// EditedAt and Deleted when the server sends it in its current state (a resume served
	// from history, contract v1.2). Author, Event and Reactions are never set.
	chat.Message
	// Raw is the frame as received (e.g. for its "reactions" counts, which chat.Message
	// cannot hold). It is the handler's to keep.
	Raw json.RawMessage
}

// Frame is a frame the subscription does not deliver as a Msg: a change to a message
// (contract v1.2: "edited", "deleted", "reactions"), a frame type this package does not
// know (presence, typing, ...), an "error" frame, a "subscribed" frame after the first,
// or, given to OnSkipped, a frame left out (see OnSkipped).
type Frame struct {
	Type string          // the frame's "type"; "" when the frame is not a JSON object
	Room string          // its "room", if any
	Seq  uint64          // its "seq", 0 when it has none
	Data json.RawMessage // the frame as received
}

// Subscribed is what the server said when the subscription was (re)made: the stream's
// latest seq then and the stream's epoch (an epoch change after a reconnect means the
// stream was recreated, and messages it had acknowledged but history had not stored
// may be gone).
type Subscribed struct {
	Seq   uint64
	Epoch string
}

// wireFrame is every field of the server frames this package reads: one decode per frame.
type wireFrame struct {
	Type     string    `json:"type"`
	Room     string    `json:"room"`
	Seq      uint64    `json:"seq"`
	Epoch    string    `json:"epoch"`
	Error    string    `json:"error"`
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Message  string    `json:"message"`
	SentAt   time.Time `json:"sent_at"`
	EditedAt time.Time `json:"edited_at"`
	Deleted  bool      `json:"deleted"`
}

// decodeFrame decodes one server frame. ok is false for a frame that is not a JSON object
// with these fields well typed.
func decodeFrame(data []byte) (f wireFrame, ok bool) {
	if len(data) == 0 || data[0] != '{' {
		return f, false
	}
	return f, json.Unmarshal(data, &f) == nil
}

// ordered reports whether the frame is an event of the room's stream: it has a seq, and
// it is neither "subscribed" (whose seq is the stream's, not the frame's) nor "error".
// Such frames are delivered once each, in seq order, and move the resume cursor.
func (f *wireFrame) ordered() bool {
	return f.Seq > 0 && f.Type != "subscribed" && f.Type != "error"
}

func (f *wireFrame) msg(data []byte) Msg {
	return Msg{Message: chat.Message{ID: f.ID, Room: f.Room, Name: f.Name, Message: f.Message, SentAt: f.SentAt,
		Seq: f.Seq, EditedAt: f.EditedAt, Deleted: f.Deleted}, Raw: data}
}

func (f *wireFrame) frame(data []byte) Frame {
	return Frame{Type: f.Type, Room: f.Room, Seq: f.Seq, Data: data}
}
