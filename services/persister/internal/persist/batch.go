package persist

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Dead-letter headers beyond the contract's two, for operators.
const (
	HeaderOriginalSeq   = "Chat-Original-Seq"
	HeaderOriginalMsgID = "Chat-Original-Msg-Id"
)

// item is one delivered message and the outcome of handling it. The handlers (write,
// deadLetter) only return errors; settle alone turns an outcome into Ack, Term or Nak.
type item struct {
	msg       jetstream.Msg
	stored    chat.Stored
	delivered uint64
	epoch     time.Time // creation time of the stream incarnation that stored it
	// err is nil when the message is stored, a *chat.InvalidError when it was
	// dead-lettered (terminate it), anything else when it must be retried.
	err error
}

// process handles one batch: decode every message, dead-letter the invalid ones while
// the valid ones are written (messages with one insert, changes with one bulk write),
// then settle each message. It returns the write errors, if any, so the caller can back
// off.
func (p *Persister) process(ctx context.Context, msgs []jetstream.Msg) error {
	p.met.batchSize.Observe(float64(len(msgs)))
	items := make([]item, len(msgs))
	needEpoch := false
	for i, jm := range msgs {
		it := &items[i]
		it.msg = jm
		md, err := jm.Metadata()
		if err != nil {
			it.err = fmt.Errorf("message metadata: %w", err)
			continue
		}
		it.delivered = md.NumDelivered
		if it.delivered > 1 {
			p.met.redeliveries.Inc()
		}
		it.stored = chat.StoredWithMetadata(jm, md)
		needEpoch = needEpoch || needsEpoch(&it.stored)
	}
	// Only messages without Nats-Msg-Id may need a derived id, hence the epoch.
	prev, cur, epochErr := p.epochs(ctx, needEpoch)

	var w writes
	var invalid []int
	for i := range items {
		it := &items[i]
		if it.err != nil {
			continue
		}
		if epochErr != nil && needsEpoch(&it.stored) {
			it.err = epochErr
			continue
		}
		it.epoch = epochOf(it.stored.Time, prev, cur)
		m, err := chat.FromStored(it.stored, it.epoch)
		switch {
		case err == nil:
			w.add(m, i, it.delivered > 1)
		case chat.IsInvalid(err):
			it.err = err
			invalid = append(invalid, i)
		default:
			it.err = err
		}
	}

	// Poison messages never wait for, nor delay, the valid ones.
	dlDone := make(chan struct{})
	go func() {
		defer close(dlDone)
		for _, i := range invalid {
			items[i].err = p.deadLetter(ctx, &items[i].stored, items[i].epoch, items[i].err)
		}
	}()
	msgErr, changeErr := p.write(ctx, &w)
	// Lag per stored event: JetStream's storage time to its write completing.
	for _, kind := range []struct {
		idx  []int
		err  error
		done time.Time
	}{{w.msgIdx, msgErr, w.msgsDone}, {w.changeIdx, changeErr, w.changesDone}} {
		for _, i := range kind.idx {
			items[i].err = kind.err
			if kind.err == nil {
				p.met.lagSeconds.Observe(kind.done.Sub(items[i].stored.Time).Seconds())
			}
		}
	}
	<-dlDone

	var failed int
	var ackErr error
	for i := range items {
		if err := p.settle(&items[i]); err != nil {
			failed++
			ackErr = err
		}
	}
	// Acks are fire-and-forget; one flush per batch makes sure the server has them
	// before the next batch (a lost ack only means an idempotent redelivery).
	if err := p.nc.FlushTimeout(5 * time.Second); err != nil && ackErr == nil {
		ackErr = err
	}
	if ackErr != nil {
		p.met.errors.Inc()
		p.log.Warn("settle batch", "messages", len(items), "failed", failed, "error", ackErr)
	}
	return errors.Join(msgErr, changeErr)
}

// needsEpoch reports whether s may need the epoch to become a message: a message
// without Nats-Msg-Id (its id may be derived). Changes name their message's id.
func needsEpoch(s *chat.Stored) bool {
	if s.MsgID != "" {
		return false
	}
	_, changeID, err := chat.ParseSubject(s.Subject)
	return err != nil || changeID == ""
}

// writes are a batch's valid messages and changes, with their items' indexes.
type writes struct {
	msgs, changes         []chat.Message
	msgIdx, changeIdx     []int
	redelivered           []string  // ids of the messages delivered before
	msgsDone, changesDone time.Time // when each write completed
}

func (w *writes) add(m chat.Message, i int, redelivered bool) {
	if m.Event == "" {
		w.msgs, w.msgIdx = append(w.msgs, m), append(w.msgIdx, i)
		if redelivered {
			w.redelivered = append(w.redelivered, m.ID)
		}
	} else {
		w.changes, w.changeIdx = append(w.changes, m), append(w.changeIdx, i)
	}
}

// write stores a batch's messages with one unordered insert, then applies its changes
// with one bulk write, both within one write timeout. Either may fail alone: the events
// of the other are then acked.
func (p *Persister) write(ctx context.Context, w *writes) (msgErr, changeErr error) {
	if len(w.msgs)+len(w.changes) == 0 {
		return nil, nil
	}
	wctx, cancel := context.WithTimeout(ctx, p.cfg.WriteTimeout)
	defer cancel()
	start := time.Now()
	if len(w.msgs) > 0 {
		if err := p.w.InsertMany(wctx, p.unstored(wctx, w)); err != nil {
			p.met.errors.Inc()
			p.log.Error("write batch; will retry", "messages", len(w.msgs),
				"first_seq", w.msgs[0].Seq, "error", err)
			msgErr = fmt.Errorf("write batch: %w", err)
		} else {
			p.met.stored.Add(float64(len(w.msgs)))
		}
		w.msgsDone = time.Now()
	}
	if len(w.changes) > 0 {
		if err := p.w.ApplyChanges(wctx, w.changes); err != nil {
			p.met.errors.Inc()
			p.log.Error("apply changes; will retry", "changes", len(w.changes),
				"first_seq", w.changes[0].Seq, "error", err)
			changeErr = fmt.Errorf("apply changes: %w", err)
		} else {
			p.met.changes.Add(float64(len(w.changes)))
		}
		w.changesDone = time.Now()
	}
	p.met.writeSeconds.Observe(time.Since(start).Seconds())
	return msgErr, changeErr
}

// unstored is w's messages less the redelivered ones that are stored already (this very
// copy: same id and seq). A batch comes back when its write failed or outlasted the ack
// wait, often after most of it was stored; FerretDB inserts a batch holding a stored id
// one document at a time, so after a MongoDB outage batches of stored messages took
// longer than the write timeout each time they came back and the persister stopped
// making progress. If the store cannot tell, every message is inserted (as before).
func (p *Persister) unstored(ctx context.Context, w *writes) []chat.Message {
	if len(w.redelivered) == 0 {
		return w.msgs
	}
	// A quarter of the write's time at most: the insert must not wait for this.
	sctx, cancel := context.WithTimeout(ctx, p.cfg.WriteTimeout/4)
	defer cancel()
	stored, err := p.w.Seqs(sctx, w.redelivered)
	if err != nil || len(stored) == 0 {
		return w.msgs
	}
	out := make([]chat.Message, 0, len(w.msgs))
	for _, m := range w.msgs {
		if seq, ok := stored[m.ID]; !ok || seq != m.Seq {
			out = append(out, m)
		}
	}
	return out
}

// deadLetter republishes an invalid payload, unchanged, to chat.deadletter and waits for
// JetStream's ack. It returns reason (terminate the message) on success and a retryable
// error otherwise. The Nats-Msg-Id is derived from the stream epoch and sequence, so a
// redelivery of the same poison message is dead-lettered once.
func (p *Persister) deadLetter(ctx context.Context, s *chat.Stored, epoch time.Time, reason error) error {
	var ie *chat.InvalidError
	errors.As(reason, &ie)
	msg := nats.NewMsg(chat.DeadLetterSubject)
	msg.Data = s.Data
	msg.Header.Set(chat.HeaderDeadLetterReason, headerValue(ie.Reason))
	msg.Header.Set(chat.HeaderOriginalSubject, s.Subject)
	msg.Header.Set(HeaderOriginalSeq, strconv.FormatUint(s.Seq, 10))
	if s.MsgID != "" {
		msg.Header.Set(HeaderOriginalMsgID, s.MsgID)
	}
	id := "deadletter." + chat.DeriveID(epoch, s.Seq)
	pctx, cancel := context.WithTimeout(ctx, p.cfg.WriteTimeout)
	defer cancel()
	if _, err := p.js.PublishMsg(pctx, msg, jetstream.WithMsgID(id),
		jetstream.WithExpectStream(chat.DeadLetterStream)); err != nil {
		p.met.errors.Inc()
		p.log.Error("dead-letter; will retry", "seq", s.Seq, "subject", s.Subject, "error", err)
		return fmt.Errorf("dead-letter seq %d: %w", s.Seq, err)
	}
	p.met.deadLettered.Inc()
	p.log.Warn("dead-lettered invalid message", "seq", s.Seq, "subject", s.Subject, "reason", ie.Reason)
	return reason
}

// settle is the one place that acknowledges: stored → Ack, invalid (dead-lettered) →
// Term, anything else → NakWithDelay with a delay growing with the delivery count.
func (p *Persister) settle(it *item) error {
	var ie *chat.InvalidError
	switch {
	case it.err == nil:
		return it.msg.Ack()
	case errors.As(it.err, &ie):
		return it.msg.TermWithReason(headerValue(ie.Reason))
	default:
		return it.msg.NakWithDelay(retryJittered(p.cfg.RetryMin, p.cfg.RetryMax, max(it.delivered, 1)))
	}
}

// headerValue makes a reason safe and short enough for a header: one line, at most 256
// bytes (a reason may quote a long payload id).
func headerValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 256 {
		s = strings.ToValidUTF8(s[:253], "") + "..."
	}
	return s
}
