package feed

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"github.com/nats-io/nats.go/jetstream"
)

// Backlog serves ranges of a room older than the hub's window, its messages and the
// changes to them (chat.Message with Event set) in seq order: from JetStream while the
// stream still holds them (the events themselves), from MongoDB below the stream's first
// sequence (history.Store.Range: messages in their current state, and a change item per
// changed part of an older message, carrying that part's current state and its seq).
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

// Fetch implements the hub's Backlog: up to max messages and changes of room with
// after < seq <= upTo, and the seq through which the range is covered.
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

// fromStream reads the room's messages and the changes to them (each on its message's
// subject, issue 11) with direct gets: one cursor per subject filter, the room's subject
// and its changes' wildcard, each asking for "the next message on it after seq", merged
// in seq order. Up to limit of them with after < seq <= upTo, and the seq through which
// both subjects are covered.
//
// The changes' cursor stops at the room's newest change, read first (lastChange): asked
// for the next message on a wildcard past the last match, the server walks the stream's
// blocks to its end once the stream has more than 64K distinct subjects (every changed
// message adds one), which would cost every resume of a room a scan of the whole rest of
// the stream; the newest match it finds from its subject index instead.
func (b *Backlog) fromStream(ctx context.Context, room string, after, upTo uint64, limit int) ([]chat.Message, uint64, error) {
	stream, epoch := b.src.Current()
	curs := [2]cursor{{subject: chat.Subject(room), upTo: upTo}, {subject: chat.ChangesWildcard(room)}}
	// The messages' first look-up and the changes' go out together.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); curs[0].next(ctx, stream, after) }()
	if last, err := b.lastChange(ctx, room); err != nil {
		curs[1].err = err
	} else {
		curs[1].upTo = min(last, upTo)
		curs[1].next(ctx, stream, after)
	}
	wg.Wait()
	var msgs []chat.Message
	seq := after
	for {
		c := &curs[0]
		if curs[1].err != nil || c.raw == nil && c.err == nil ||
			curs[1].raw != nil && c.raw != nil && curs[1].raw.Sequence < c.raw.Sequence {
			c = &curs[1]
		}
		if c.err != nil {
			return nil, 0, c.err
		}
		if c.raw == nil {
			return msgs, upTo, nil // both subjects done up to upTo
		}
		seq = c.raw.Sequence
		m, err := chat.FromStored(chat.StoredFromRaw(c.raw), epoch)
		if err == nil { // invalid payloads are dead-lettered, never pushed
			msgs = append(msgs, m)
			if len(msgs) == limit {
				return msgs, seq, nil
			}
		}
		c.next(ctx, stream, seq)
	}
}

// cursor reads one subject filter forward up to upTo. After next: raw is the first
// message on it with after < seq <= upTo, nil when there is none; err when the get failed.
type cursor struct {
	subject string
	upTo    uint64
	raw     *jetstream.RawStreamMsg
	err     error
}

func (c *cursor) next(ctx context.Context, stream jetstream.Stream, after uint64) {
	c.raw = nil
	if after >= c.upTo {
		return
	}
	raw, err := stream.GetMsg(ctx, after+1, jetstream.WithGetMsgSubject(c.subject))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		c.err = fmt.Errorf("get %s after %d: %w", c.subject, after, err)
	case raw.Sequence <= c.upTo:
		c.raw = raw
	}
}

// lastChange is the seq of the room's newest change in the stream (0: none). It is a
// direct get of the last message on the changes' wildcard, sent by hand: the client's
// GetLastMsgForSubject puts the subject into the request's subject, where a wildcard
// cannot go.
func (b *Backlog) lastChange(ctx context.Context, room string) (uint64, error) {
	subject := chat.ChangesWildcard(room)
	req := append(append([]byte(`{"last_by_subj":"`), subject...), `"}`...)
	resp, err := b.src.js.Conn().RequestWithContext(ctx, b.src.apiPrefix()+"DIRECT.GET."+chat.StreamName, req)
	if err != nil {
		return 0, fmt.Errorf("get last %s: %w", subject, err)
	}
	switch status := resp.Header.Get("Status"); status {
	case "":
		seq, err := strconv.ParseUint(resp.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("get last %s: sequence header %q", subject, resp.Header.Get(jetstream.SequenceHeader))
		}
		return seq, nil
	case "404":
		return 0, nil
	default:
		return 0, fmt.Errorf("get last %s: status %s %s", subject, status, resp.Header.Get("Description"))
	}
}
