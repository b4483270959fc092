// Package feed connects the pusher to its sources: the node's one ordered consumer on
// chat.messages.> (messages, and changes to them on their messages' subjects) that feeds
// the hub, and the backlog (JetStream, then MongoDB) that serves resumes older than the
// hub's window.
package feed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go/jetstream"
)

// Sink receives the stream in order.
type Sink interface {
	Fanout(m *chat.Message)
	Advance(seq uint64)
	// NewEpoch tells that the stream was recreated (its sequence continues, see
	// chat.StreamOptions.NextSeq, but anything it had not persisted is gone).
	NewEpoch(epoch time.Time)
}

// Feed is the node's single consumer of the CHAT stream.
type Feed struct {
	src   *Source
	sink  Sink
	last  uint64 // highest stream seq handled
	watch time.Duration
	log   *slog.Logger
}

// New returns a feed that delivers every message after seq start to sink. It checks the
// stream every watch interval (and at every sequence gap) for a recreation.
func New(src *Source, start uint64, watch time.Duration, sink Sink, log *slog.Logger) *Feed {
	if watch <= 0 {
		watch = 2 * time.Second
	}
	return &Feed{src: src, sink: sink, last: start, watch: watch, log: log}
}

var errNewEpoch = errors.New("stream recreated")

// stallAfter: an ordered consumer that delivered nothing for this long while the stream
// holds newer messages is stuck (seen in a cluster after the stream leader was killed:
// nats.go's ordered consumer did not recover on its own); the feed starts a fresh one
// after the last seq it handled.
const stallAfter = 10 * time.Second

// Run consumes until ctx ends. The ordered consumer recreates itself after reconnects,
// server restarts and gaps, resuming right after the last stream seq it delivered, so the
// hub sees every message once and in order. When the stream itself is recreated, the feed
// starts over on the new stream right after the last seq it handled.
func (f *Feed) Run(ctx context.Context) error {
	for {
		err := f.consume(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, errNewEpoch) {
			f.log.Warn("feed restarts", "after_seq", f.last, "error", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return nil
			}
		}
	}
}

func (f *Feed) consume(ctx context.Context) error {
	stream, epoch := f.src.Current()
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{chat.SubjectWildcard},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    f.last + 1,
	})
	if err != nil {
		return f.checkEpoch(ctx, fmt.Errorf("create ordered consumer: %w", err))
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return f.checkEpoch(ctx, fmt.Errorf("consume: %w", err))
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	var handled atomic.Uint64 // f.last, for the watchdog
	var progress atomic.Int64 // when a message was last handled (unix ns)
	handled.Store(f.last)
	progress.Store(time.Now().UnixNano())
	go func() { // the watchdog: a recreated stream, or a stuck consumer
		t := time.NewTicker(f.watch)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := f.checkEpoch(ctx, nil); err != nil {
					cancel(err)
					return
				}
				if last, at := handled.Load(), time.Unix(0, progress.Load()); f.src.LastSeq() > last && time.Since(at) > stallAfter {
					cancel(fmt.Errorf("feed stalled at seq %d, stream at %d", last, f.src.LastSeq()))
					return
				}
			}
		}
	}()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return context.Cause(ctx)
			}
			f.log.Warn("feed", "error", err)
			continue
		}
		st, err := chat.StoredFromMsg(msg)
		if err != nil {
			f.log.Error("feed metadata", "error", err)
			continue
		}
		if st.Seq <= f.last {
			continue // never twice, never backwards
		}
		if st.Seq != f.last+1 {
			// A gap: the stream may have been recreated (its sequence jumps ahead) or
			// discarded messages this node had not read. Check before decoding, so
			// derived ids use the right epoch.
			if err := f.checkEpoch(ctx, nil); err != nil {
				return err
			}
		}
		f.last = st.Seq
		handled.Store(st.Seq)
		progress.Store(time.Now().UnixNano())
		m, err := chat.FromStored(st, epoch)
		if err != nil {
			f.sink.Advance(st.Seq) // the persister dead-letters it
			continue
		}
		f.sink.Fanout(&m)
	}
}

// checkEpoch refreshes the source; a new epoch becomes errNewEpoch (after telling the
// sink), otherwise cause is returned.
func (f *Feed) checkEpoch(ctx context.Context, cause error) error {
	changed, err := f.src.Refresh(ctx)
	if err != nil {
		if cause != nil {
			return cause
		}
		f.log.Warn("check stream", "error", err)
		return nil
	}
	if changed {
		_, epoch := f.src.Current()
		f.log.Warn("stream recreated", "epoch", chat.EpochID(epoch), "after_seq", f.last)
		f.sink.NewEpoch(epoch)
		return errNewEpoch
	}
	return cause
}
