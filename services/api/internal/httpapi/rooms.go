package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"github.com/chatrt/chat/pkg/presence"
)

// Rooms reads the room list the persister keeps. *history.Store implements it.
type Rooms interface {
	Rooms(ctx context.Context, limit int, before uint64, allow func(room string) bool) ([]history.Room, error)
}

// Presence is who is connected to a room on every pusher. *presence.View implements it.
type Presence interface {
	Counts(room string) presence.Counts
	Online(room string) int
}

// getRooms is GET /rooms[?limit=&before=]: the rooms with stored messages, newest
// activity (last_seq) first, each with its online count; with authentication only the
// rooms the token may read.
func (s *Server) getRooms(w http.ResponseWriter, r *http.Request) {
	claims, herr := s.authenticate(r)
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	q := r.URL.Query()
	limit := DefaultLimit
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > MaxLimit {
			writeError(w, http.StatusBadRequest, "limit: must be an integer from 1 to "+strconv.Itoa(MaxLimit))
			return
		}
		limit = n
	}
	before, _, herr := seqParam(q.Get("before"), q.Has("before"), "before")
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	if before > math.MaxInt64 {
		before = math.MaxInt64 // no stored seq is larger
	}
	if s.o.Rooms == nil {
		writeRetry(w, http.StatusServiceUnavailable, s.o.RetryAfter, "room list unavailable")
		return
	}
	var allow func(string) bool
	if claims != nil && claims.Rooms != nil {
		allow = claims.Allows
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.o.HistoryTimeout)
	defer cancel()
	rooms, err := s.o.Rooms.Rooms(ctx, limit, before, allow)
	if err != nil {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			return
		}
		s.log.Error("rooms", "request_id", w.Header().Get(HeaderRequestID), "error", err)
		writeRetry(w, http.StatusServiceUnavailable, s.o.RetryAfter, "room list unavailable")
		return
	}
	type entry struct {
		Room       string `json:"room"`
		LastSeq    uint64 `json:"last_seq"`
		LastSentAt string `json:"last_sent_at"`
		Messages   int64  `json:"messages"`
		Online     int    `json:"online"`
	}
	out := make([]entry, len(rooms))
	for i, rm := range rooms {
		out[i] = entry{Room: rm.Room, LastSeq: rm.LastSeq, LastSentAt: chat.FormatTime(rm.LastSentAt),
			Messages: rm.Messages}
		if s.o.Presence != nil {
			out[i].Online = s.o.Presence.Online(rm.Room)
		}
	}
	writeJSONBody(w, http.StatusOK, out)
}

// getPresence is GET /rooms/{room}/presence: every connection subscribed to the room on
// any pusher (online, named or anonymous, opted in to presence or not) and its named
// members with their connection counts, sorted by name.
func (s *Server) getPresence(w http.ResponseWriter, r *http.Request) {
	claims, herr := s.authenticate(r)
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	room := r.PathValue("room")
	if err := chat.ValidRoom(room); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if herr := authorize(claims, room); herr != nil {
		writeHTTPError(w, herr)
		return
	}
	var c presence.Counts
	if s.o.Presence != nil {
		c = s.o.Presence.Counts(room)
	}
	writeJSONBody(w, http.StatusOK, struct {
		Room    string            `json:"room"`
		Online  int               `json:"online"`
		Members []presence.Member `json:"members"`
	}{room, c.Online(), c.Sorted()})
}

// writeJSONBody answers v as JSON, text as is (no HTML escaping).
func writeJSONBody(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	writeBody(w, status, bytes.TrimSpace(buf.Bytes()))
}
