package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/chatrt/chat/pkg/auth"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/services/api/internal/stream"
)

// HeaderIdempotencyKey makes a post idempotent: the key becomes the message id.
const HeaderIdempotencyKey = "Idempotency-Key"

// postBody is a post's fields; Room is nil when absent.
type postBody struct {
	Name    *string `json:"name"`
	Message *string `json:"message"`
	Room    *string `json:"room"`
}

func (b *postBody) formFields() []formField {
	return []formField{{"name", &b.Name}, {"message", &b.Message}, {"room", &b.Room}}
}

// httpError is an error answer decided while reading a request.
type httpError struct {
	status int
	reason string
}

func (e *httpError) Error() string { return e.reason }

func badRequest(format string, args ...any) *httpError {
	return &httpError{status: http.StatusBadRequest, reason: fmt.Sprintf(format, args...)}
}

// postDefault is POST /messages: the room comes from the body, default general.
func (s *Server) postDefault(w http.ResponseWriter, r *http.Request) {
	s.countPost(s.post(w, r, ""))
}

// postRoom is POST /rooms/{room}/messages.
func (s *Server) postRoom(w http.ResponseWriter, r *http.Request) {
	s.countPost(s.post(w, r, r.PathValue("room")))
}

func (s *Server) countPost(status int) {
	s.metrics.posts.WithLabelValues(strconv.Itoa(status)).Inc()
}

// post handles both POST routes and returns the status it answered. pathRoom is "" on
// POST /messages.
func (s *Server) post(w http.ResponseWriter, r *http.Request, pathRoom string) int {
	if s.rateLimited(w, r) {
		return http.StatusTooManyRequests
	}
	claims, herr := s.authenticate(r)
	if herr != nil {
		writeHTTPError(w, herr)
		return herr.status
	}
	m, author, herr := s.readPost(w, r, pathRoom, claims)
	if herr != nil {
		writeHTTPError(w, herr)
		return herr.status
	}
	if !s.inflight.enter() {
		writeRetry(w, http.StatusServiceUnavailable, s.o.RetryAfter, "server is shutting down")
		return http.StatusServiceUnavailable
	}
	defer s.inflight.leave()
	if !s.o.Stream.Connected() {
		writeRetry(w, http.StatusServiceUnavailable, s.o.RetryAfter, "message broker unavailable")
		return http.StatusServiceUnavailable
	}
	start := time.Now()
	stored, duplicate, err := s.o.Stream.Append(r.Context(), m, author)
	switch {
	case err == nil:
		s.metrics.ackSeconds.Observe(time.Since(start).Seconds())
		s.writePosted(w, &stored)
		return http.StatusCreated
	case errors.Is(err, stream.ErrKeyInUse):
		// Another room's or author's message: say nothing of it, not even which.
		s.log.Info("idempotency key in use", "request_id", w.Header().Get(HeaderRequestID), "msg_id", m.ID)
		writeError(w, http.StatusConflict, "Idempotency-Key is already in use by another room or author: use a new key")
		return http.StatusConflict
	case errors.Is(err, stream.ErrOriginalUnusable):
		s.log.Warn("idempotent post", "request_id", w.Header().Get(HeaderRequestID), "msg_id", m.ID, "error", err)
		writeError(w, http.StatusConflict, "Idempotency-Key was already used for a message that is no longer available")
		return http.StatusConflict
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads the answer. 499 as nginx logs it.
		return 499
	default:
		s.log.Error("publish", "request_id", w.Header().Get(HeaderRequestID), "msg_id", m.ID, "duplicate", duplicate, "error", err)
		writeRetry(w, http.StatusServiceUnavailable, s.o.RetryAfter, "message broker unavailable")
		return http.StatusServiceUnavailable
	}
}

// rateLimited answers 429 if the client is over its rate (posts and changes share it).
func (s *Server) rateLimited(w http.ResponseWriter, r *http.Request) bool {
	ok, after := s.o.Limiter.Allow(s.o.Clients.Key(r))
	if !ok {
		s.metrics.rateLimited.Inc()
		writeRetry(w, http.StatusTooManyRequests, after, "rate limit exceeded")
	}
	return !ok
}

// readPost checks the route, content type, size and fields of a post and builds the
// message to publish, in this order: the room is resolved once (path, body, default),
// then authorized, then the message is built in it. With claims (auth on), the token must
// allow the room and its name is the author: a name in the body is ignored; author is
// then the token's chat.AuthorID (else "": anonymous), which scopes the Idempotency-Key.
func (s *Server) readPost(w http.ResponseWriter, r *http.Request, pathRoom string, claims *auth.Claims) (m chat.Message, author string, herr *httpError) {
	// The path's room is checked before the body is read (the documented check order).
	var path *chat.Room
	if pathRoom != "" {
		room, err := chat.ResolveRoom(pathRoom)
		if err != nil {
			return chat.Message{}, "", badRequest("%v", err)
		}
		path = &room
	}
	var b postBody
	if herr := readBody(w, r, &b); herr != nil {
		return chat.Message{}, "", herr
	}
	room, herr := resolveRoom(path, deref(b.Room))
	if herr != nil {
		return chat.Message{}, "", herr
	}
	name := deref(b.Name)
	if claims != nil {
		if herr := authorize(claims, room.String()); herr != nil {
			return chat.Message{}, "", herr
		}
		// The token names the author: its name replaces the body's, and its subject is
		// the AuthorID recorded with the message.
		var err error
		if name, err = claims.Author(); err != nil {
			return chat.Message{}, "", &httpError{status: auth.Status(err), reason: err.Error()}
		}
		author = claims.AuthorID()
	}
	key, herr := idempotencyKey(r.Header)
	if herr != nil {
		return chat.Message{}, "", herr
	}
	m, err := room.NewMessage(name, deref(b.Message), key, time.Now())
	if err != nil {
		var fe *chat.FieldError
		if errors.As(err, &fe) && fe.Field == "id" {
			return chat.Message{}, "", badRequest("Idempotency-Key: %s", fe.Reason)
		}
		return chat.Message{}, "", badRequest("%v", err)
	}
	return m, author, nil
}

// resolveRoom decides a post's room, the one place that does: the path's (resolved before
// the body was read), which a room in the body must then equal; else the body's; else
// the default room (an absent or empty room in the body).
func resolveRoom(path *chat.Room, body string) (chat.Room, *httpError) {
	if path != nil {
		if body != "" && body != path.String() {
			return chat.Room{}, badRequest("room: %q in the body does not match %q in the path", body, path.String())
		}
		return *path, nil
	}
	room, err := chat.ResolveRoom(body)
	if err != nil {
		return chat.Room{}, badRequest("%v", err)
	}
	return room, nil
}

// idempotencyKey is the post's Idempotency-Key, "" when it has none. The key becomes the
// message id, checked (once) when the message is built.
func idempotencyKey(h http.Header) (string, *httpError) {
	keys, ok := h[HeaderIdempotencyKey]
	if !ok {
		return "", nil
	}
	if len(keys) != 1 {
		return "", badRequest("Idempotency-Key: give exactly one")
	}
	if keys[0] == "" {
		// An empty key is a bad key, not the absence of one.
		return "", badRequest("Idempotency-Key: must not be empty")
	}
	return keys[0], nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
