package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/services/api/internal/change"
)

// Reactions: POST /rooms/{room}/messages/{id}/reactions {"emoji"[, "name"]} adds the
// caller's reaction, DELETE /rooms/{room}/messages/{id}/reactions/{emoji}[?name=] removes
// it; both answer 200 {"id","room","change_seq","reactions":{"<emoji>":<count>,...}}.
// One reaction per (message, emoji, person): the person is the token's AuthorID with
// authentication on, else the given name (normalized like a post's). Adding one that is
// there, or removing one that is not, publishes nothing. Anyone who may post to the room
// may react; the emoji must be in the allowlist (CHAT_REACTIONS).

// DefaultReactions is the default allowlist.
const DefaultReactions = "👍,❤️,😂,🎉,😮,😢"

// ParseReactions checks an allowlist: up to chat.MaxReactionSet distinct emoji (so that
// no message can exceed the set the bus accepts), each valid (chat.ValidEmoji). Blanks
// around entries are trimmed; an empty list is DefaultReactions.
func ParseReactions(list []string) ([]string, error) {
	if len(list) == 0 {
		list = strings.Split(DefaultReactions, ",")
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		e = strings.TrimSpace(e)
		if err := chat.ValidEmoji(e); err != nil {
			return nil, fmt.Errorf("reactions: %q: %w", e, err)
		}
		if slices.Contains(out, e) {
			return nil, fmt.Errorf("reactions: %q is listed twice", e)
		}
		out = append(out, e)
	}
	if len(out) > chat.MaxReactionSet {
		return nil, fmt.Errorf("reactions: at most %d emoji", chat.MaxReactionSet)
	}
	return out, nil
}

// reactionBody is POST's body.
type reactionBody struct {
	Emoji *string `json:"emoji"`
	Name  *string `json:"name"`
}

func (b *reactionBody) formFields() []formField {
	return []formField{{"emoji", &b.Emoji}, {"name", &b.Name}}
}

// react is POST /rooms/{room}/messages/{id}/reactions.
func (s *Server) react(w http.ResponseWriter, r *http.Request) {
	s.countChange("react", s.reaction(w, r, true))
}

// unreact is DELETE /rooms/{room}/messages/{id}/reactions/{emoji}.
func (s *Server) unreact(w http.ResponseWriter, r *http.Request) {
	s.countChange("unreact", s.reaction(w, r, false))
}

func (s *Server) reaction(w http.ResponseWriter, r *http.Request, add bool) int {
	if s.rateLimited(w, r) {
		return http.StatusTooManyRequests
	}
	t, herr := s.readTarget(r)
	if herr != nil {
		return answerError(w, herr)
	}
	var emoji, name string
	if add {
		var b reactionBody
		if herr := readBody(w, r, &b); herr != nil {
			return answerError(w, herr)
		}
		emoji, name = deref(b.Emoji), deref(b.Name)
	} else {
		emoji = r.PathValue("emoji")
		names := r.URL.Query()["name"]
		if len(names) > 1 {
			return answerError(w, badRequest("name: give exactly one"))
		}
		if len(names) == 1 {
			name = names[0]
		}
	}
	if !slices.Contains(s.reactions, emoji) {
		return answerError(w, badRequest("emoji: %s is not one of the allowed reactions: %s",
			strconv.Quote(emoji), strings.Join(s.reactions, " ")))
	}
	person, herr := s.person(&t, name)
	if herr != nil {
		return answerError(w, herr)
	}
	res, status := s.applyChange(w, r, &t, func(cur *change.Current) (chat.Message, error) {
		if cur.State.Deleted {
			return chat.Message{}, errDeleted()
		}
		rs := cur.State.Reactions
		if rs.Has(emoji, person) == add {
			return chat.Message{}, nil
		}
		if add {
			if rs.Count(emoji) == 0 && len(rs) >= chat.MaxReactionSet {
				// Only other publishers' emoji can fill it (the allowlist is smaller):
				// a set beyond what the bus accepts would be dead-lettered.
				return chat.Message{}, &httpError{status: http.StatusConflict, reason: "the message has too many different reactions"}
			}
			rs = rs.With(emoji, person)
		} else {
			rs = rs.Without(emoji, person)
		}
		return chat.Message{Event: chat.EventReactions, Reactions: rs}, nil
	})
	if status != 0 {
		return status
	}
	b := make([]byte, 0, 128)
	b = append(b, `{"id":`...)
	b = strconv.AppendQuote(b, t.id) // ids and rooms are ASCII without quotes or escapes
	b = append(b, `,"room":`...)
	b = strconv.AppendQuote(b, t.room)
	b = append(b, `,"change_seq":`...)
	b = strconv.AppendUint(b, changeSeq(&res, res.State.ReactionsSeq), 10)
	b = append(b, `,"reactions":`...)
	b = res.State.Reactions.AppendCounts(b)
	writeBody(w, http.StatusOK, append(b, '}'))
	return http.StatusOK
}

// person is who reacts: the token's AuthorID, or with authentication off the given name.
func (s *Server) person(t *target, name string) (string, *httpError) {
	if t.claims != nil {
		if id := t.claims.AuthorID(); id != "" {
			return id, nil
		}
		return "", forbidden("reactions need a token with a sub claim")
	}
	n, err := chat.NormalizeName(name)
	if err != nil {
		return "", badRequest("%v", err)
	}
	return n, nil
}
