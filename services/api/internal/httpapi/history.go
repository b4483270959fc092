package httpapi

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"

	"github.com/chatrt/chat/pkg/chat"
)

// History page limits (contract).
const (
	DefaultLimit = 50
	MaxLimit     = 200
)

// getDefaultRoom is GET /messages[?room=]: the seed's endpoint, room general by default.
// It takes the same before/after/limit parameters as the rooms route. Its latest page
// leaves deleted messages out (a seed client knows no tombstones).
func (s *Server) getDefaultRoom(w http.ResponseWriter, r *http.Request) {
	room := r.URL.Query().Get("room")
	if room == "" {
		room = chat.DefaultRoom
	}
	s.countHistory(s.history(w, r, room, true))
}

// getRoom is GET /rooms/{room}/messages: messages in their current state, tombstones
// included.
func (s *Server) getRoom(w http.ResponseWriter, r *http.Request) {
	s.countHistory(s.history(w, r, r.PathValue("room"), false))
}

func (s *Server) countHistory(status int) {
	s.metrics.history.WithLabelValues(strconv.Itoa(status)).Inc()
}

type page struct {
	room          string
	before, after uint64
	hasBefore     bool
	hasAfter      bool
	limit         int
}

func (s *Server) history(w http.ResponseWriter, r *http.Request, room string, seed bool) int {
	claims, herr := s.authenticate(r)
	if herr != nil {
		writeHTTPError(w, herr)
		return herr.status
	}
	p, herr := readPage(r, room)
	if herr == nil {
		herr = authorize(claims, p.room)
	}
	if herr != nil {
		writeHTTPError(w, herr)
		return herr.status
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.o.HistoryTimeout)
	defer cancel()
	var msgs []chat.Message
	var err error
	switch {
	case p.hasBefore:
		msgs, err = s.o.History.Before(ctx, p.room, p.before, p.limit)
	case p.hasAfter && p.after >= math.MaxInt64:
		// Seqs are stored as int64: nothing can follow.
	case p.hasAfter:
		msgs, err = s.o.History.After(ctx, p.room, p.after, p.limit)
	case seed:
		msgs, err = s.o.History.LatestVisible(ctx, p.room, p.limit)
	default:
		msgs, err = s.o.History.Latest(ctx, p.room, p.limit)
	}
	if err != nil {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			return 499
		}
		s.log.Error("history", "request_id", w.Header().Get(HeaderRequestID), "room", p.room, "error", err)
		writeRetry(w, http.StatusServiceUnavailable, s.o.RetryAfter, "history unavailable")
		return http.StatusServiceUnavailable
	}
	writeMessages(w, msgs)
	return http.StatusOK
}

func readPage(r *http.Request, room string) (page, *httpError) {
	p := page{room: room, limit: DefaultLimit}
	if err := chat.ValidRoom(room); err != nil {
		return page{}, badRequest("%v", err)
	}
	q := r.URL.Query()
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > MaxLimit {
			return page{}, badRequest("limit: must be an integer from 1 to %d", MaxLimit)
		}
		p.limit = n
	}
	var herr *httpError
	if p.before, p.hasBefore, herr = seqParam(q.Get("before"), q.Has("before"), "before"); herr != nil {
		return page{}, herr
	}
	if p.after, p.hasAfter, herr = seqParam(q.Get("after"), q.Has("after"), "after"); herr != nil {
		return page{}, herr
	}
	if p.hasBefore && p.hasAfter {
		return page{}, badRequest("give before or after, not both")
	}
	if p.hasBefore && p.before > math.MaxInt64 {
		p.before = math.MaxInt64 // no stored seq is larger
	}
	return p, nil
}

func seqParam(v string, present bool, name string) (uint64, bool, *httpError) {
	if !present {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, badRequest("%s: must be a sequence number (a non-negative integer)", name)
	}
	return n, true, nil
}
