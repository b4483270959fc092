// Package change makes the api's changes to messages (edit, delete, reactions): it reads
// a message's current state, lets the caller decide the change, and publishes it to the
// message's change subject (chat.ChangeSubject) serialized with JetStream's expected last
// subject sequence, so that concurrent writers (goroutines, api replicas) never lose each
// other's changes: a publish that another writer beat folds the newer events and decides
// again, a bounded number of times.
//
// The current state is history's (MongoDB) plus the change events in the stream that
// history may not hold yet. Which those are is told by the persister's ack floor, read
// before history: every stream message at or below it was written to history before the
// read, so the events after it are folded (direct gets on the change subject) and
// State.Apply, being order-independent and idempotent, makes the union exact. (The
// state's part seqs alone are no such bound: a deletion is final whatever its seq, so one
// the persister has not applied yet may lie below an edit it has.)
package change

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Errors of Change. Decide's own errors are returned as they are.
var (
	// ErrNotFound: history has no such message, and the persister has stored everything
	// the stream held when it was asked for.
	ErrNotFound = errors.New("no such message")
	// ErrContention: every attempt was beaten by another writer of the same message.
	ErrContention = errors.New("too many concurrent changes to this message")
	// ErrTooLarge: the change's payload would exceed what the stream takes.
	ErrTooLarge = errors.New("the change is too large")
	// ErrUnavailable: NATS is disconnected or did not answer in time; nothing is known
	// to be published. The client may retry.
	ErrUnavailable = errors.New("message broker unavailable")
	// ErrHistoryBehind: history lacks the message and the persister has not stored all
	// the stream held within Options.Wait: it may be one of those. Try again later.
	ErrHistoryBehind = errors.New("history is catching up with the stream")
	// ErrHistoryUnavailable: MongoDB did not answer.
	ErrHistoryUnavailable = errors.New("history unavailable")
)

// MaxPayload bounds a change's payload: the stream takes 256 KiB messages (headers
// included), and a reactions set only grows with the people reacting.
const MaxPayload = 200 << 10

// History reads a message in its current state (Author set) and its State;
// history.ErrNotFound when it holds no such message. *history.Store implements it.
type History interface {
	Get(ctx context.Context, room, id string) (chat.Message, chat.State, error)
}

// Options configure a Changer.
type Options struct {
	// Timeout bounds a whole change: reads, attempts and the PubAck. <= 0 means 10s.
	Timeout time.Duration
	// HistoryTimeout bounds one history read. <= 0 means 5s.
	HistoryTimeout time.Duration
	// Attempts is how many publishes a change tries when other writers come first.
	// < 1 means 32.
	Attempts int
	// Wait: a message missing from history while the persister has not stored all the
	// stream held is looked for again until it has, for up to Wait (then
	// ErrHistoryBehind). <= 0 means 2s.
	Wait time.Duration
}

// Changer changes messages of the CHAT stream.
type Changer struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream
	history History
	o       Options

	floorMu sync.Mutex
	floor   uint64    // the last ack floor read (watermark)
	floorAt time.Time // when
}

// New returns a changer on nc; the CHAT stream must exist (stream.New ensures it).
func New(ctx context.Context, nc *nats.Conn, h History, o Options) (*Changer, error) {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.HistoryTimeout <= 0 {
		o.HistoryTimeout = 5 * time.Second
	}
	if o.Attempts < 1 {
		o.Attempts = 32
	}
	if o.Wait <= 0 {
		o.Wait = 2 * time.Second
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s, err := js.Stream(ctx, chat.StreamName)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", chat.StreamName, err)
	}
	return &Changer{nc: nc, js: js, stream: s, history: h, o: o}, nil
}

// Current is a message as a change sees it.
type Current struct {
	Message chat.Message // in its current state; Author is who posted it
	State   chat.State
}

// Decide returns the change to make to cur: Event set and its part (Message and EditedAt
// for an edit, Reactions for reactions; ID and Room are filled in), or a zero Event when
// nothing is to change. It may be called again with a newer state when another writer
// came first, so it must not have side effects.
type Decide func(cur *Current) (chat.Message, error)

// Result is a change's outcome.
type Result struct {
	Current        // the message after the change
	Seq     uint64 // the change's seq; 0 when nothing was published
}

// Change reads message id of room, asks decide what to change and publishes it with
// Chat-Author = author (an AuthorID, "" when anonymous). It returns once JetStream
// acknowledged the change, or with ErrNotFound, ErrContention, ErrTooLarge, ErrUnavailable,
// ErrHistoryUnavailable, ctx's error or decide's error.
func (c *Changer) Change(ctx context.Context, room, id, author string, decide Decide) (Result, error) {
	if c.nc.Status() != nats.CONNECTED {
		return Result{}, fmt.Errorf("%w: nats %s", ErrUnavailable, c.nc.Status())
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	subject := chat.ChangeSubject(room, id)
	floor, err := c.watermark(ctx)
	if err != nil {
		return Result{}, err
	}
	m, st, err := c.load(ctx, room, id)
	if err != nil {
		return Result{}, err
	}
	last, err := c.fold(ctx, subject, id, &st, floor)
	if err != nil {
		return Result{}, err
	}
	for attempt := 1; ; attempt++ {
		cur := Current{Message: m.WithState(&st), State: st}
		ch, err := decide(&cur)
		if err != nil {
			return Result{}, err
		}
		if ch.Event == "" {
			return Result{Current: cur}, nil
		}
		ch.ID, ch.Room, ch.Seq = id, room, 0
		seq, err := c.publish(ctx, &ch, author, last)
		if err == nil {
			ch.Seq = seq
			st.Apply(&ch)
			return Result{Current: Current{Message: m.WithState(&st), State: st}, Seq: seq}, nil
		}
		if !wrongLastSequence(err) {
			return Result{}, err
		}
		if attempt >= c.o.Attempts {
			return Result{}, fmt.Errorf("%w: %d attempts", ErrContention, attempt)
		}
		// Another writer came first: back off a little (jittered, growing), then fold
		// what it published.
		if err := sleep(ctx, time.Duration(rand.Int64N(int64(time.Millisecond)<<min(attempt, 5)))); err != nil {
			return Result{}, err
		}
		if last, err = c.fold(ctx, subject, id, &st, last); err != nil {
			return Result{}, err
		}
	}
}

// floorMaxAge is how long a read ack floor is reused. An older floor is still a true
// bound (it only grows, and was read before the history read that follows), it merely
// leaves a few more events to fold; reusing it spares the consumer's leader one info
// request per change.
const floorMaxAge = 250 * time.Millisecond

// watermark is the persister's ack floor: every stream message at or below it is in
// history. 0 when there is no persister consumer (everything is then folded).
func (c *Changer) watermark(ctx context.Context) (uint64, error) {
	c.floorMu.Lock()
	floor, at := c.floor, c.floorAt
	c.floorMu.Unlock()
	if time.Since(at) < floorMaxAge {
		return floor, nil
	}
	cons, err := c.js.Consumer(ctx, chat.StreamName, chat.PersisterConsumer)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		floor = 0
	case err != nil:
		return 0, unavailable(ctx, fmt.Errorf("consumer %s: %w", chat.PersisterConsumer, err))
	default:
		floor = cons.CachedInfo().AckFloor.Stream
	}
	c.floorMu.Lock()
	c.floor, c.floorAt = floor, time.Now()
	c.floorMu.Unlock()
	return floor, nil
}

// load reads the message from history. A message history lacks may be one the persister
// has not stored yet (its poster saw it acknowledged, so it is in the stream): load then
// waits, for up to Wait, until the persister has stored everything the stream held when
// the request came (its ack floor reaches the stream's last seq of then) and reads once
// more. Still missing: ErrNotFound. The persister not there yet: ErrHistoryBehind.
func (c *Changer) load(ctx context.Context, room, id string) (chat.Message, chat.State, error) {
	var last uint64 // the stream's last seq when the message was first missed
	var deadline time.Time
	settled := false // the persister had stored through last before the read
	for {
		hctx, cancel := context.WithTimeout(ctx, c.o.HistoryTimeout)
		m, st, err := c.history.Get(hctx, room, id)
		cancel()
		switch {
		case err == nil:
			return m, st, nil
		case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
			return chat.Message{}, chat.State{}, ctx.Err()
		case !errors.Is(err, history.ErrNotFound):
			return chat.Message{}, chat.State{}, fmt.Errorf("%w: %v", ErrHistoryUnavailable, err)
		case settled:
			return chat.Message{}, chat.State{}, ErrNotFound
		}
		if deadline.IsZero() {
			info, err := c.stream.Info(ctx)
			if err != nil {
				return chat.Message{}, chat.State{}, unavailable(ctx, fmt.Errorf("stream %s: %w", chat.StreamName, err))
			}
			last, deadline = info.State.LastSeq, time.Now().Add(c.o.Wait)
		}
		for !settled {
			floor, ok, err := c.storedThrough(ctx)
			switch {
			case err != nil:
				return chat.Message{}, chat.State{}, err
			case !ok || floor >= last:
				settled = true // no persister at all, or it stored everything: read once more
				continue
			case time.Now().After(deadline):
				return chat.Message{}, chat.State{}, ErrHistoryBehind
			}
			if err := sleep(ctx, 50*time.Millisecond); err != nil {
				return chat.Message{}, chat.State{}, err
			}
		}
	}
}

// storedThrough returns the persister's ack floor: every message of the stream up to it
// is stored. ok is false when there is no persister consumer (no persister ever ran).
func (c *Changer) storedThrough(ctx context.Context) (floor uint64, ok bool, err error) {
	cons, err := c.js.Consumer(ctx, chat.StreamName, chat.PersisterConsumer)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return 0, false, nil
	case err != nil:
		return 0, false, unavailable(ctx, fmt.Errorf("consumer %s: %w", chat.PersisterConsumer, err))
	}
	return cons.CachedInfo().AckFloor.Stream, true, nil
}

// fold applies to st the valid change events on subject with seq > after and returns the
// subject's last seq in the stream (0: it has none), which the next publish expects.
func (c *Changer) fold(ctx context.Context, subject, id string, st *chat.State, after uint64) (uint64, error) {
	last, err := c.stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable(ctx, fmt.Errorf("last change of %s: %w", subject, err))
	}
	for seq := after + 1; seq < last.Sequence; {
		raw, err := c.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return 0, unavailable(ctx, fmt.Errorf("change of %s after seq %d: %w", subject, seq, err))
		}
		if raw.Sequence >= last.Sequence {
			break
		}
		apply(st, raw, id)
		seq = raw.Sequence + 1
	}
	if last.Sequence > after {
		apply(st, last, id)
	}
	return last.Sequence, nil
}

// apply applies the change event raw to st; invalid ones (dead-lettered by the
// persister, never in history) are skipped.
func apply(st *chat.State, raw *jetstream.RawStreamMsg, id string) {
	ch, err := chat.FromStored(chat.StoredFromRaw(raw), time.Time{})
	if err != nil || ch.Event == "" || ch.ID != id {
		return
	}
	st.Apply(&ch)
}

// publish publishes change ch expecting last as its subject's last seq and returns its
// seq once acknowledged.
func (c *Changer) publish(ctx context.Context, ch *chat.Message, author string, last uint64) (uint64, error) {
	msg := ch.ChangeMsg(author)
	if len(msg.Data) > MaxPayload {
		return 0, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(msg.Data))
	}
	ack, err := c.js.PublishMsg(ctx, msg,
		jetstream.WithExpectStream(chat.StreamName),
		jetstream.WithExpectLastSequencePerSubject(last))
	if err != nil {
		if wrongLastSequence(err) {
			return 0, err
		}
		return 0, unavailable(ctx, fmt.Errorf("publish %s to %s: %w", ch.Event, msg.Subject, err))
	}
	return ack.Sequence, nil
}

// wrongLastSequence reports JetStream's answer to a publish whose expected last subject
// sequence is stale (10164 is the replicated streams' code for it).
func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// unavailable wraps err as ErrUnavailable, unless ctx was canceled (the client left).
func unavailable(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ctx.Err()
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return unavailable(ctx, ctx.Err())
	}
}
