package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/chatrt/chat/pkg/auth"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/services/api/internal/change"
)

// Changes to a message (issue 11): PATCH and DELETE /rooms/{room}/messages/{id} here,
// reactions in reactions.go, who may in editkey.go. Each reads the message's current
// state and publishes one change event, answering after JetStream's ack (change.Changer
// serializes them per message). The checks come in this order: 429 rate limit, 401
// token, 400 room and id, 403 room not allowed, 415/413/400 body, 503 draining or NATS
// down, 404 no such message, 403 not allowed to change it, 409 deleted.

// editBody is PATCH's body.
type editBody struct {
	Message *string `json:"message"`
}

func (b *editBody) formFields() []formField { return []formField{{"message", &b.Message}} }

// target is the message a change names, and who asks.
type target struct {
	room, id string
	claims   *auth.Claims // nil: authentication is off
}

// author is the AuthorID recorded with the change (Chat-Author), "" when anonymous.
func (t *target) author() string {
	if t.claims == nil {
		return ""
	}
	return t.claims.AuthorID()
}

// readTarget authenticates the request, checks the path's room and id and that the
// token allows the room.
func (s *Server) readTarget(r *http.Request) (target, *httpError) {
	claims, herr := s.authenticate(r)
	if herr != nil {
		return target{}, herr
	}
	t := target{room: r.PathValue("room"), id: r.PathValue("id"), claims: claims}
	if err := chat.ValidRoom(t.room); err != nil {
		return target{}, badRequest("%v", err)
	}
	if err := chat.ValidID(t.id); err != nil {
		return target{}, badRequest("%v", err)
	}
	if herr := authorize(claims, t.room); herr != nil {
		return target{}, herr
	}
	return t, nil
}

// edit is PATCH /rooms/{room}/messages/{id} {"message"}: 200 + the message as it now is.
func (s *Server) edit(w http.ResponseWriter, r *http.Request) {
	s.countChange("edit", s.editMessage(w, r))
}

func (s *Server) editMessage(w http.ResponseWriter, r *http.Request) int {
	if s.rateLimited(w, r) {
		return http.StatusTooManyRequests
	}
	t, key, herr := s.readChangeTarget(r)
	if herr != nil {
		return answerError(w, herr)
	}
	var b editBody
	if herr := readBody(w, r, &b); herr != nil {
		return answerError(w, herr)
	}
	text, err := chat.NormalizeMessage(deref(b.Message))
	if err != nil {
		return answerError(w, badRequest("%v", err))
	}
	editedAt := chat.NormalizeTime(time.Now())
	res, status := s.applyChange(w, r, &t, func(cur *change.Current) (chat.Message, error) {
		if err := s.mayChange(&t, key, &cur.Message); err != nil {
			return chat.Message{}, err
		}
		if cur.State.Deleted {
			return chat.Message{}, errDeleted()
		}
		return chat.Message{Event: chat.EventEdited, Message: text, EditedAt: editedAt}, nil
	})
	if status != 0 {
		return status
	}
	writeChanged(w, &res.Message, changeSeq(&res, res.State.ContentSeq))
	return http.StatusOK
}

// delete is DELETE /rooms/{room}/messages/{id}: 200 + the tombstone. Deleting a deleted
// message changes nothing and answers the same.
func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	s.countChange("delete", s.deleteMessage(w, r))
}

func (s *Server) deleteMessage(w http.ResponseWriter, r *http.Request) int {
	if s.rateLimited(w, r) {
		return http.StatusTooManyRequests
	}
	t, key, herr := s.readChangeTarget(r)
	if herr != nil {
		return answerError(w, herr)
	}
	res, status := s.applyChange(w, r, &t, func(cur *change.Current) (chat.Message, error) {
		if err := s.mayChange(&t, key, &cur.Message); err != nil {
			return chat.Message{}, err
		}
		if cur.State.Deleted {
			return chat.Message{}, nil
		}
		return chat.Message{Event: chat.EventDeleted}, nil
	})
	if status != 0 {
		return status
	}
	writeChanged(w, &res.Message, changeSeq(&res, res.State.ContentSeq))
	return http.StatusOK
}

// readChangeTarget is readTarget plus, when authentication is off, the Edit-Key header.
func (s *Server) readChangeTarget(r *http.Request) (target, string, *httpError) {
	t, herr := s.readTarget(r)
	if herr != nil {
		return target{}, "", herr
	}
	if t.claims != nil {
		return t, "", nil
	}
	key, herr := editKeyHeader(r.Header)
	return t, key, herr
}

func errDeleted() *httpError {
	return &httpError{status: http.StatusConflict, reason: "the message is deleted"}
}

// applyChange runs decide on t's message through the Changer and answers every failure:
// status is 0 when it succeeded (the caller answers) and the status answered otherwise.
func (s *Server) applyChange(w http.ResponseWriter, r *http.Request, t *target, decide change.Decide) (change.Result, int) {
	if !s.inflight.enter() {
		writeRetry(w, http.StatusServiceUnavailable, s.o.RetryAfter, "server is shutting down")
		return change.Result{}, http.StatusServiceUnavailable
	}
	defer s.inflight.leave()
	if !s.o.Stream.Connected() {
		writeRetry(w, http.StatusServiceUnavailable, s.o.RetryAfter, "message broker unavailable")
		return change.Result{}, http.StatusServiceUnavailable
	}
	res, err := s.o.Changes.Change(r.Context(), t.room, t.id, t.author(), decide)
	var herr *httpError
	switch {
	case err == nil:
		return res, 0
	case errors.As(err, &herr):
		return change.Result{}, answerError(w, herr)
	case errors.Is(err, change.ErrNotFound):
		writeError(w, http.StatusNotFound, "no message "+strconv.Quote(t.id)+" in room "+t.room)
		return change.Result{}, http.StatusNotFound
	case errors.Is(err, change.ErrContention):
		s.log.Warn("change", "request_id", w.Header().Get(HeaderRequestID), "msg_id", t.id, "error", err)
		writeError(w, http.StatusConflict, "too many concurrent changes to this message: try again")
		return change.Result{}, http.StatusConflict
	case errors.Is(err, change.ErrTooLarge):
		writeError(w, http.StatusConflict, "the message has too many reactions")
		return change.Result{}, http.StatusConflict
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		return change.Result{}, 499 // the client went away
	case errors.Is(err, change.ErrHistoryBehind):
		writeRetry(w, http.StatusServiceUnavailable, s.o.RetryAfter, "no message "+strconv.Quote(t.id)+
			" in history yet, and the persister has messages still to store: try again")
		return change.Result{}, http.StatusServiceUnavailable
	case errors.Is(err, change.ErrHistoryUnavailable):
		s.log.Error("change", "request_id", w.Header().Get(HeaderRequestID), "msg_id", t.id, "error", err)
		writeRetry(w, http.StatusServiceUnavailable, s.o.RetryAfter, "history unavailable")
		return change.Result{}, http.StatusServiceUnavailable
	default:
		s.log.Error("change", "request_id", w.Header().Get(HeaderRequestID), "msg_id", t.id, "error", err)
		writeRetry(w, http.StatusServiceUnavailable, s.o.RetryAfter, "message broker unavailable")
		return change.Result{}, http.StatusServiceUnavailable
	}
}

// changeSeq is the seq a change answers with: the published change's, or, when nothing
// needed to change, that of the change that last set the part (0: none ever did).
func changeSeq(r *change.Result, part uint64) uint64 {
	if r.Seq != 0 {
		return r.Seq
	}
	return part
}

// writeChanged answers 200 with message m in its current state plus "change_seq".
func writeChanged(w http.ResponseWriter, m *chat.Message, seq uint64) {
	b := m.AppendJSON(make([]byte, 0, 256+len(m.Message)), "")
	b = append(b[:len(b)-1], `,"change_seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	writeBody(w, http.StatusOK, append(b, '}'))
}

// answerError answers herr and returns its status.
func answerError(w http.ResponseWriter, herr *httpError) int {
	writeHTTPError(w, herr)
	return herr.status
}

func (s *Server) countChange(route string, status int) {
	s.metrics.changes.WithLabelValues(route, strconv.Itoa(status)).Inc()
}
