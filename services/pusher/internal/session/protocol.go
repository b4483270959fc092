package session

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/services/pusher/internal/transport"
	"github.com/gorilla/websocket"
)

// The wire protocol's client commands (docs/contract.md, WebSocket): text frames holding
// a JSON object {"type":"subscribe","room":...,"since":...[,"presence":true][,"name":...]},
// {"type":"unsubscribe","room":...}, {"type":"typing","room":...} and, when
// authentication is on, a first {"type":"auth","token":...}. A
// command that cannot be done gets an error frame {"type":"error","error":...,"room":...};
// a frame that is not a JSON object closes the socket with 1008.

// MaxFrame is the largest client frame accepted; larger ones close the socket with 1009.
const MaxFrame = 4096

// Close codes the session sends (the hub's are in package hub).
const (
	ClosePolicy       = 1008 // binary or non-JSON frames, a command flood
	CloseUnauthorized = 4401 // no, malformed or expired token
	CloseForbidden    = 4403 // the token does not allow the room given at the upgrade
)

// command is a client frame; fields are decoded one by one so that a well-formed frame
// with a wrong field type gets an error frame rather than a closed socket.
type command struct {
	Type     json.RawMessage `json:"type"`
	Room     json.RawMessage `json:"room"`
	Since    json.RawMessage `json:"since"`
	Token    json.RawMessage `json:"token"`    // {"type":"auth"} only
	Presence json.RawMessage `json:"presence"` // subscribe only (issue 12)
	Name     json.RawMessage `json:"name"`     // subscribe only (issue 12)
}

func jsonString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// decodeFrame checks a client frame: a text frame holding a JSON object. code is the close
// code (1008) for anything else.
func decodeFrame(typ int, data []byte) (cmd *command, code int, reason string) {
	if typ != websocket.TextMessage {
		return nil, ClosePolicy, "binary frames are not supported"
	}
	cmd = new(command)
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' || json.Unmarshal(data, cmd) != nil {
		return nil, ClosePolicy, "frames must be JSON objects"
	}
	return cmd, 0, ""
}

// request is a parsed subscribe, unsubscribe or typing command.
type request struct {
	typ      string
	room     string
	since    *uint64
	presence bool   // subscribe: presence and typing frames asked for
	name     string // subscribe: the name given (normalized; "" none)
}

// parseCommand validates a command's fields; reason (and room, when known) make the error
// frame of a command that cannot be done.
func parseCommand(cmd *command) (req request, reason string) {
	typ, _ := jsonString(cmd.Type)
	switch typ {
	case "subscribe", "unsubscribe", "typing":
	default:
		return request{}, "unknown type: " + strconv.Quote(typ)
	}
	room, ok := jsonString(cmd.Room)
	if !ok {
		return request{}, "room: must be a string"
	}
	if err := chat.ValidRoom(room); err != nil {
		return request{room: room}, err.Error()
	}
	req = request{typ: typ, room: room}
	if typ == "subscribe" && len(cmd.Since) > 0 && string(cmd.Since) != "null" {
		n, err := strconv.ParseUint(string(cmd.Since), 10, 64)
		if err != nil {
			return request{room: room}, "since: must be a non-negative integer"
		}
		req.since = &n
	}
	if typ == "subscribe" {
		if len(cmd.Presence) > 0 && string(cmd.Presence) != "null" {
			if err := json.Unmarshal(cmd.Presence, &req.presence); err != nil {
				return request{room: room}, "presence: must be true or false"
			}
		}
		if len(cmd.Name) > 0 && string(cmd.Name) != "null" {
			name, ok := jsonString(cmd.Name)
			if !ok {
				return request{room: room}, "name: must be a string"
			}
			n, err := chat.NormalizeName(name)
			if err != nil {
				return request{room: room}, err.Error()
			}
			req.name = n
		}
	}
	return req, ""
}

// normalizeName is a presence name as a message's author name is checked
// (chat.NormalizeName); "" stays "" (anonymous).
func normalizeName(name string) (string, string) {
	if name == "" {
		return "", ""
	}
	n, err := chat.NormalizeName(name)
	if err != nil {
		return "", err.Error()
	}
	return n, ""
}

// parsePresence reads the upgrade's presence parameter: 1/true or 0/false.
func parsePresence(v string) (bool, bool) {
	switch v {
	case "1", "true":
		return true, true
	case "0", "false", "":
		return false, true
	}
	return false, false
}

// authToken is the token of a first frame {"type":"auth","token":...}; reason says why
// the frame is not one.
func authToken(cmd *command) (tok, reason string) {
	if t, _ := jsonString(cmd.Type); t != "auth" {
		return "", "authentication required"
	}
	if tok, _ = jsonString(cmd.Token); tok == "" {
		return "", "token: must be a non-empty string"
	}
	return tok, ""
}

// isAuth reports whether cmd is {"type":"auth"}.
func isAuth(cmd *command) bool {
	t, _ := jsonString(cmd.Type)
	return t == "auth"
}

func errorFrame(reason, room string) []byte {
	v := map[string]string{"type": "error", "error": reason}
	if room != "" {
		v["room"] = room
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return transport.TextFrame(bytes.TrimSpace(buf.Bytes()))
}
