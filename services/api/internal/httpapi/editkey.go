package httpapi

import (
	"net/http"

	"github.com/chatrt/chat/pkg/auth"
	"github.com/chatrt/chat/pkg/chat"
)

// Who may edit or delete a message. With authentication on: its author (the token's
// AuthorID equals the one recorded with the message) or a token whose "roles" claim
// holds "moderator". With it off: whoever holds the message's edit key, which the 201 of
// the post returned (editkey.Keys: derived from room and id, so an idempotent retry
// answers the same key and nothing per message is stored); PATCH and DELETE send it as
// header Edit-Key. The key is never published, stored in history or pushed.

// HeaderEditKey carries a message's edit key on PATCH and DELETE (authentication off).
const HeaderEditKey = "Edit-Key"

// writePosted answers a post's 201: the stored message, plus "edit_key" after seq when
// authentication is off.
func (s *Server) writePosted(w http.ResponseWriter, m *chat.Message) {
	b := m.AppendJSON(make([]byte, 0, 320+len(m.Message)), "")
	if s.o.Auth == nil && s.o.EditKeys != nil {
		b = append(b[:len(b)-1], `,"edit_key":"`...)
		b = append(b, s.o.EditKeys.Key(m.Room, m.ID)...) // base64url: nothing to escape
		b = append(b, `"}`...)
	}
	writeBody(w, http.StatusCreated, b)
}

// editKeyHeader is the request's Edit-Key, "" when it has none.
func editKeyHeader(h http.Header) (string, *httpError) {
	keys := h[HeaderEditKey]
	if len(keys) > 1 {
		return "", badRequest("Edit-Key: give exactly one")
	}
	if len(keys) == 0 {
		return "", nil
	}
	return keys[0], nil
}

// mayChange checks that the request may edit or delete m (as history has it, Author
// set): 403 otherwise.
func (s *Server) mayChange(t *target, key string, m *chat.Message) error {
	if t.claims != nil {
		if id := t.claims.AuthorID(); id != "" && id == m.Author {
			return nil
		}
		if t.claims.HasRole(auth.RoleModerator) {
			return nil
		}
		return forbidden("only the message's author or a moderator may change it")
	}
	if key == "" {
		return forbidden("Edit-Key required: the edit_key the post's answer returned")
	}
	if s.o.EditKeys == nil || !s.o.EditKeys.Check(t.room, t.id, key) {
		return forbidden("Edit-Key does not match this message")
	}
	return nil
}

func forbidden(reason string) *httpError {
	return &httpError{status: http.StatusForbidden, reason: reason}
}
