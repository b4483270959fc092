package dedup

import (
	"context"
	"fmt"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go/jetstream"
)

// Warm indexes what the stream stored in the last 2×Skew up to seq start (where the feed
// starts), so a node that just started decides ULIDs with its index alone right away
// instead of asking the store for every message of its first seconds. Call it before the
// feed runs. On error the index stays cold, which is slower, never wrong: its horizon
// stays at the filter's creation.
func (f *Filter) Warm(ctx context.Context, stream jetstream.Stream, epoch time.Time, start uint64) error {
	from := f.now().Add(-2 * f.cfg.Skew)
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	if info.State.LastSeq < start {
		return fmt.Errorf("stream at seq %d, before the feed's start %d", info.State.LastSeq, start)
	}
	if start == 0 || info.State.LastTime.Before(from) {
		f.setHorizon(from) // nothing stored since: nothing to index
		return nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{chat.SubjectWildcard},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &from,
	})
	if err != nil {
		return fmt.Errorf("warm consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return fmt.Errorf("warm consume: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	type seen struct {
		id  string
		seq uint64
		at  time.Time
	}
	var ids []seen
	for {
		msg, err := it.Next()
		if err != nil {
			return fmt.Errorf("warm read: %w", err)
		}
		st, err := chat.StoredFromMsg(msg)
		if err != nil {
			return err
		}
		if st.Seq > start {
			break
		}
		// Changes carry their message's id at their own seq: not a copy of it, not indexed.
		if m, err := chat.FromStored(st, epoch); err == nil && m.Event == "" && !derived(m.ID, m.Seq) {
			ids = append(ids, seen{m.ID, m.Seq, st.Time})
		}
		if st.Seq == start {
			break
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.idx.horizon.Equal(f.created) {
		return nil // the feed already moved it: too late to warm
	}
	f.idx.horizon = from // moves forward again if the budget evicts some of these
	for _, s := range ids {
		if _, ok := f.idx.get(s.id); !ok {
			f.idx.put(s.id, s.seq, s.at)
		}
	}
	return nil
}

func (f *Filter) setHorizon(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.idx.horizon.Equal(f.created) {
		f.idx.horizon = t
	}
}
