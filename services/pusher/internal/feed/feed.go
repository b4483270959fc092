// Package feed connects the pusher to its sources: the node's one ordered consumer on
// chat.messages.> that feeds the hub, and the backlog (JetStream, then MongoDB) that
// serves resumes older than the hub's window.
package feed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go/jetstream"
)

// Sink receives the stream in order.
type Sink interface {
	Publish(m *chat.Message)
	Advance(seq uint64)
}

// Feed is the node's single consumer of the CHAT stream.
type Feed struct {
	stream jetstream.Stream
	sink   Sink
	epoch  time.Time
	start  uint64
	log    *slog.Logger
}

// New returns a feed that delivers every message after seq start to sink. epoch is the
// stream's creation time (for ids of messages published without one).
func New(stream jetstream.Stream, epoch time.Time, start uint64, sink Sink, log *slog.Logger) *Feed {
	return &Feed{stream: stream, sink: sink, epoch: epoch, start: start, log: log}
}

// Run consumes until ctx ends. The ordered consumer recreates itself after reconnects,
// server restarts and gaps, resuming right after the last stream seq it delivered, so the
// hub sees every message once and in order.
func (f *Feed) Run(ctx context.Context) error {
	cons, err := f.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{chat.SubjectWildcard},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    f.start + 1,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("create ordered consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("consume: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	last := f.start
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			f.log.Warn("feed", "error", err)
			continue
		}
		st, err := chat.StoredFromMsg(msg)
		if err != nil {
			f.log.Error("feed metadata", "error", err)
			continue
		}
		if st.Seq <= last {
			continue // never twice, never backwards
		}
		last = st.Seq
		m, err := chat.FromStored(st, f.epoch)
		if err != nil {
			f.sink.Advance(st.Seq) // the persister dead-letters it
			continue
		}
		f.sink.Publish(&m)
	}
}
