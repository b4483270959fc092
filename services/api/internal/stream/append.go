// Package stream appends the api's chat messages to the CHAT stream: asynchronously, in a
// bounded window, each caller waiting for its own PubAck, and resolving a duplicate
// (a reused Idempotency-Key) to the message stored first.
package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrUnavailable means the message was not (known to be) stored: NATS is disconnected,
// the window is full, or no ack came in time. The client may retry.
var ErrUnavailable = errors.New("message broker unavailable")

// ErrOriginalUnusable means a duplicate's original message cannot be read back as a chat
// message (gone from the stream, or not a valid chat message).
var ErrOriginalUnusable = errors.New("original message of this id is unavailable")

// ErrKeyInUse means the id (an Idempotency-Key) already names a message of another room
// or another author: the key is scoped, so this is not a retry of that post, and nothing
// of that message may be disclosed.
var ErrKeyInUse = errors.New("id is in use by a message of another room or author")

// codeDuplicateInProcess is JetStream's "duplicate message id is in process" (a clustered
// stream has not committed the first publish of this id yet): retry shortly.
const codeDuplicateInProcess jetstream.ErrorCode = 10158

// Options configure an Appender.
type Options struct {
	Stream     chat.StreamOptions
	MaxPending int           // in-flight async publishes per connection; < 1 means 1024
	Timeout    time.Duration // how long to wait for a PubAck; <= 0 means 5s
}

// Appender appends messages to the CHAT stream and waits for their acks.
type Appender struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream
	epoch   time.Time
	timeout time.Duration
}

// New ensures the streams and returns an appender on nc.
func New(ctx context.Context, nc *nats.Conn, o Options) (*Appender, error) {
	if o.MaxPending < 1 {
		o.MaxPending = 1024
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(o.MaxPending),
		// Without it a lost ack would hold its window slot forever.
		jetstream.WithPublishAsyncTimeout(o.Timeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s, err := chat.EnsureStreams(ctx, js, o.Stream)
	if err != nil {
		return nil, err
	}
	info := s.CachedInfo()
	if info == nil {
		if info, err = s.Info(ctx); err != nil {
			return nil, fmt.Errorf("stream %s info: %w", chat.StreamName, err)
		}
	}
	return &Appender{nc: nc, js: js, stream: s, epoch: info.Created, timeout: o.Timeout}, nil
}

// Connected reports whether the NATS connection is up (appending can work).
func (a *Appender) Connected() bool { return a.nc.Status() == nats.CONNECTED }

// Status is the NATS connection status, for readiness.
func (a *Appender) Status() string { return a.nc.Status().String() }

// Append publishes m, posted by author (a chat.AuthorID, "" when anonymous), to its
// room's subject with Nats-Msg-Id = m.ID and Chat-Author = author, and waits for
// JetStream's ack. It returns the stored message: m with its seq, or, when JetStream
// reports a duplicate, the message stored first under that id (duplicate = true) if it
// has the same room and author; else ErrKeyInUse. Every error wraps ErrUnavailable,
// ErrOriginalUnusable, ErrKeyInUse or ctx's error.
func (a *Appender) Append(ctx context.Context, m chat.Message, author string) (stored chat.Message, duplicate bool, err error) {
	if !a.Connected() {
		return chat.Message{}, false, fmt.Errorf("publish %s: %w: nats %s", m.ID, ErrUnavailable, a.nc.Status())
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	for {
		ack, err := a.publishOnce(ctx, &m, author)
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == codeDuplicateInProcess {
			select {
			case <-time.After(20 * time.Millisecond):
				continue
			case <-ctx.Done():
				return chat.Message{}, false, fmt.Errorf("publish %s: %w: %v", m.ID, ErrUnavailable, ctx.Err())
			}
		}
		if err != nil {
			return chat.Message{}, false, fmt.Errorf("publish %s: %w", m.ID, err)
		}
		if !ack.Duplicate {
			m.Seq = ack.Sequence
			return m, false, nil
		}
		orig, err := a.original(ctx, ack.Sequence, m.Room, author)
		if err != nil {
			return chat.Message{}, true, fmt.Errorf("publish %s: duplicate of seq %d: %w", m.ID, ack.Sequence, err)
		}
		return orig, true, nil
	}
}

func (a *Appender) publishOnce(ctx context.Context, m *chat.Message, author string) (*jetstream.PubAck, error) {
	stall := a.timeout
	if d, ok := ctx.Deadline(); ok {
		stall = time.Until(d)
	}
	if stall <= 0 {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, context.DeadlineExceeded)
	}
	paf, err := a.js.PublishMsgAsync(m.NATSMsg(author),
		jetstream.WithMsgID(m.ID),
		jetstream.WithExpectStream(chat.StreamName),
		jetstream.WithStallWait(stall))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	select {
	case ack := <-paf.Ok():
		return ack, nil
	case err := <-paf.Err():
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == codeDuplicateInProcess {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: no ack: %v", ErrUnavailable, ctx.Err())
		}
		return nil, ctx.Err()
	}
}

// original reads the message stored at seq (direct get) as a chat message, if it is
// scoped like the duplicate: same room, same author. Its scope is checked before its
// payload is even decoded.
func (a *Appender) original(ctx context.Context, seq uint64, room, author string) (chat.Message, error) {
	if seq == 0 {
		return chat.Message{}, fmt.Errorf("%w: ack without sequence", ErrUnavailable)
	}
	raw, err := a.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return chat.Message{}, fmt.Errorf("%w: seq %d is no longer in the stream", ErrOriginalUnusable, seq)
	}
	if err != nil {
		return chat.Message{}, fmt.Errorf("%w: get seq %d: %v", ErrUnavailable, seq, err)
	}
	st := chat.StoredFromRaw(raw)
	if st.Subject != chat.Subject(room) || st.Author != author {
		return chat.Message{}, ErrKeyInUse
	}
	m, err := chat.FromStored(st, a.epoch)
	if err != nil {
		return chat.Message{}, fmt.Errorf("%w: %v", ErrOriginalUnusable, err)
	}
	return m, nil
}
