package feed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"github.com/nats-io/nats.go/jetstream"
)

// Backlog serves ranges of a room older than the hub's window: from JetStream while the
// stream still holds them, from MongoDB below the stream's first sequence.
type Backlog struct {
	src    *Source
	store  *history.Store // nil: JetStream only
	filter ReplayFilter   // nil: none
	last   lastSeqAsk
}

// ReplayFilter drops the later copies of a message id from a batch read from JetStream
// (MongoDB holds one copy per id, the lowest seq).
type ReplayFilter interface {
	Replay(ctx context.Context, msgs []chat.Message) []chat.Message
}

// NewBacklog returns a backlog over the source's stream and store; filter (optional)
// filters what it reads from JetStream.
func NewBacklog(src *Source, store *history.Store, filter ReplayFilter) *Backlog {
	b := &Backlog{src: src, store: store, filter: filter}
	b.last = lastSeqAsk{fetch: b.streamLastSeq, timeout: 5 * time.Second}
	return b
}

func (b *Backlog) firstSeq(ctx context.Context) (uint64, error) {
	stream, _ := b.src.Current()
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	return info.State.FirstSeq, nil
}

// LastSeq is the stream's last seq, read after the call began (concurrent calls share
// requests, see lastSeqAsk).
func (b *Backlog) LastSeq(ctx context.Context) (uint64, error) { return b.last.get(ctx) }

func (b *Backlog) streamLastSeq(ctx context.Context) (uint64, error) {
	stream, _ := b.src.Current()
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	return info.State.LastSeq, nil
}

// Fetch implements the hub's Backlog: up to max messages of room with after < seq <= upTo,
// and the seq through which the range is covered.
func (b *Backlog) Fetch(ctx context.Context, room string, after, upTo uint64, limit int) ([]chat.Message, uint64, error) {
	for {
		first, err := b.firstSeq(ctx)
		if err != nil {
			return nil, 0, err
		}
		if after+1 < first && b.store != nil {
			// Older than the stream: MongoDB.
			end := min(first, upTo+1) // exclusive
			msgs, err := b.store.Range(ctx, room, after, end, limit)
			if err != nil {
				return nil, 0, err
			}
			if len(msgs) == limit {
				return msgs, msgs[len(msgs)-1].Seq, nil
			}
			return msgs, end - 1, nil
		}
		if after >= upTo {
			return nil, upTo, nil
		}
		start := max(after+1, first)
		msgs, next, err := b.fromStream(ctx, room, start-1, upTo, limit)
		if err != nil {
			return nil, 0, err
		}
		// Messages discarded from the front of the stream while we read are skipped
		// silently by JetStream; if the front moved past our start, read that part from
		// MongoDB instead.
		if b.store != nil {
			if now, err := b.firstSeq(ctx); err != nil {
				return nil, 0, err
			} else if now > start {
				continue
			}
		}
		if b.filter != nil {
			msgs = b.filter.Replay(ctx, msgs)
		}
		return msgs, next, nil
	}
}

// fromStream reads with direct gets, one "next message on the room's subject" at a time.
func (b *Backlog) fromStream(ctx context.Context, room string, after, upTo uint64, limit int) ([]chat.Message, uint64, error) {
	subject := chat.Subject(room)
	stream, epoch := b.src.Current()
	var msgs []chat.Message
	seq := after
	for len(msgs) < limit && seq < upTo {
		raw, err := stream.GetMsg(ctx, seq+1, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return msgs, upTo, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("get %s after %d: %w", subject, seq, err)
		}
		if raw.Sequence > upTo {
			return msgs, upTo, nil
		}
		seq = raw.Sequence
		m, err := chat.FromStored(chat.StoredFromRaw(raw), epoch)
		if err != nil {
			continue // invalid payloads are dead-lettered, never pushed
		}
		msgs = append(msgs, m)
	}
	return msgs, seq, nil
}
