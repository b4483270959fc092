package admin

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers the persister adds to a dead letter besides the contract's two
// (services/persister/internal/persist).
const (
	headerOriginalSeq   = "Chat-Original-Seq"
	headerOriginalMsgID = "Chat-Original-Msg-Id"
)

// Dead-letter listing limits: ?limit=1..maxDeadLetters, default defaultDeadLetters.
const (
	defaultDeadLetters = 50
	maxDeadLetters     = 200
	// previewRunes is how much of a dead letter's payload the list shows.
	previewRunes = 200
)

// deadLetter is one entry of GET /admin/api/deadletters.
type deadLetter struct {
	Seq             uint64    `json:"seq"` // in DEADLETTER: the handle for requeue and discard
	Time            time.Time `json:"time"`
	Reason          string    `json:"reason"`
	Subject         string    `json:"subject"`                    // Chat-Original-Subject
	OriginalSeq     uint64    `json:"original_seq,omitempty"`     // its seq in CHAT, when recorded
	OriginalMsgID   string    `json:"original_msg_id,omitempty"`  // its Nats-Msg-Id, when it had one
	Size            int       `json:"size"`                       // payload bytes
	Preview         string    `json:"preview"`                    // the payload's start as text (invalid UTF-8 as U+FFFD)
	PreviewComplete bool      `json:"preview_complete,omitempty"` // the preview is the whole payload
}

type deadLettersBody struct {
	Total uint64       `json:"total"` // dead letters held
	Items []deadLetter `json:"items"` // newest first
}

func (h *Handler) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	limit := defaultDeadLetters
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxDeadLetters {
			writeError(w, http.StatusBadRequest, "limit must be 1.."+strconv.Itoa(maxDeadLetters))
			return
		}
		limit = n
	}
	ctx, cancel := h.jsContext(r)
	defer cancel()
	s, ok := h.deadLetters(ctx, w)
	if !ok {
		return
	}
	info, err := s.Info(ctx, jetstream.WithDeletedDetails(true))
	if err != nil {
		h.unavailable(w, "dead letters unavailable: "+err.Error())
		return
	}
	deleted := make(map[uint64]bool, len(info.State.Deleted))
	for _, d := range info.State.Deleted {
		deleted[d] = true
	}
	body := deadLettersBody{Total: info.State.Msgs, Items: []deadLetter{}}
	for seq := info.State.LastSeq; seq >= info.State.FirstSeq && seq > 0 && len(body.Items) < limit; seq-- {
		if deleted[seq] {
			continue
		}
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // discarded meanwhile
		}
		if err != nil {
			h.unavailable(w, "dead letters unavailable: "+err.Error())
			return
		}
		body.Items = append(body.Items, toDeadLetter(m))
	}
	writeJSON(w, http.StatusOK, body)
}

func toDeadLetter(m *jetstream.RawStreamMsg) deadLetter {
	d := deadLetter{Seq: m.Sequence, Time: m.Time.UTC(), Reason: m.Header.Get(chat.HeaderDeadLetterReason),
		Subject: m.Header.Get(chat.HeaderOriginalSubject), OriginalMsgID: m.Header.Get(headerOriginalMsgID),
		Size: len(m.Data)}
	d.OriginalSeq, _ = strconv.ParseUint(m.Header.Get(headerOriginalSeq), 10, 64)
	d.Preview, d.PreviewComplete = preview(m.Data)
	return d
}

// preview is the start of b as text (at most previewRunes), and whether that is all of b.
func preview(b []byte) (string, bool) {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if utf8.RuneCountInString(s) <= previewRunes {
		return s, s == string(b)
	}
	n := 0
	for i := range s {
		if n == previewRunes {
			return s[:i], false
		}
		n++
	}
	return s, false
}

// seqParam is the {seq} path value: a dead letter's seq in DEADLETTER.
func seqParam(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		writeError(w, http.StatusBadRequest, "invalid dead letter seq")
		return 0, false
	}
	return seq, true
}

// validOriginalSubject: a requeue only ever publishes to chat.messages.<tokens>, no
// wildcards, so it cannot be turned into a publish anywhere else.
func validOriginalSubject(s string) bool {
	rest, ok := strings.CutPrefix(s, chat.SubjectPrefix)
	if !ok || rest == "" || len(s) > 512 {
		return false
	}
	for _, tok := range strings.Split(rest, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
			return false
		}
	}
	return true
}

// requeue republishes a dead letter's original bytes to its original subject (with its
// original Nats-Msg-Id, if it had one), waits for CHAT's ack, then deletes the dead
// letter. A payload still invalid is dead-lettered again by the persister, with a new
// seq. Answers 200 {"requeued","subject","stream_seq"}; 404 no such dead letter; 409
// JetStream dropped it as a duplicate of a message still in its duplicate window (the
// dead letter is kept); 422 its original subject is missing or not a chat subject.
func (h *Handler) requeue(w http.ResponseWriter, r *http.Request) {
	seq, ok := seqParam(w, r)
	if !ok {
		return
	}
	ctx, cancel := h.jsContext(r)
	defer cancel()
	s, ok := h.deadLetters(ctx, w)
	if !ok {
		return
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		writeError(w, http.StatusNotFound, "no dead letter "+strconv.FormatUint(seq, 10))
		return
	}
	if err != nil {
		h.unavailable(w, "dead letters unavailable: "+err.Error())
		return
	}
	subject := m.Header.Get(chat.HeaderOriginalSubject)
	if !validOriginalSubject(subject) {
		writeError(w, http.StatusUnprocessableEntity, "dead letter has no chat.messages subject to requeue to")
		return
	}
	msg := nats.NewMsg(subject)
	msg.Data = m.Data
	opts := []jetstream.PublishOpt{jetstream.WithExpectStream(chat.StreamName)}
	if id := m.Header.Get(headerOriginalMsgID); id != "" {
		opts = append(opts, jetstream.WithMsgID(id))
	}
	ack, err := h.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		h.unavailable(w, "requeue: "+err.Error())
		return
	}
	if ack.Duplicate {
		writeError(w, http.StatusConflict, "the stream dropped it as a duplicate of a message id it still holds "+
			"(duplicate window); the dead letter is kept, try again later")
		return
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		// Republished but still listed: a second requeue would publish it again.
		h.log.Error("deadletter requeued, not deleted", "deadletter_seq", seq, "subject", subject,
			"stream_seq", ack.Sequence, "operator", operator(r.Context()), "error", err)
		h.unavailable(w, "requeued as seq "+strconv.FormatUint(ack.Sequence, 10)+
			" but the dead letter could not be deleted: "+err.Error())
		return
	}
	h.log.Info("deadletter requeued", "deadletter_seq", seq, "subject", subject, "stream_seq", ack.Sequence,
		"reason", m.Header.Get(chat.HeaderDeadLetterReason), "operator", operator(r.Context()),
		"request_id", w.Header().Get("X-Request-Id"))
	writeJSON(w, http.StatusOK, map[string]any{"requeued": seq, "subject": subject, "stream_seq": ack.Sequence})
}

// discard deletes a dead letter: 200 {"discarded": seq}, 404 when there is none.
func (h *Handler) discard(w http.ResponseWriter, r *http.Request) {
	seq, ok := seqParam(w, r)
	if !ok {
		return
	}
	ctx, cancel := h.jsContext(r)
	defer cancel()
	s, ok := h.deadLetters(ctx, w)
	if !ok {
		return
	}
	m, err := s.GetMsg(ctx, seq)
	if err == nil {
		err = s.DeleteMsg(ctx, seq)
	}
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		writeError(w, http.StatusNotFound, "no dead letter "+strconv.FormatUint(seq, 10))
		return
	}
	if err != nil {
		h.unavailable(w, "discard: "+err.Error())
		return
	}
	h.log.Info("deadletter discarded", "deadletter_seq", seq, "subject", m.Header.Get(chat.HeaderOriginalSubject),
		"reason", m.Header.Get(chat.HeaderDeadLetterReason), "operator", operator(r.Context()),
		"request_id", w.Header().Get("X-Request-Id"))
	writeJSON(w, http.StatusOK, map[string]any{"discarded": seq})
}

// deadLetters is the DEADLETTER stream, or false after answering 503 when JetStream
// cannot give it.
func (h *Handler) deadLetters(ctx context.Context, w http.ResponseWriter) (jetstream.Stream, bool) {
	s, err := h.js.Stream(ctx, chat.DeadLetterStream)
	if err != nil {
		h.unavailable(w, "dead letters unavailable: "+err.Error())
		return nil, false
	}
	return s, true
}
