package persist

import (
	"context"
	"fmt"
	"time"

	"github.com/chatrt/chat/pkg/chat"
)

// Derived ids depend on the epoch: the creation time of the CHAT stream incarnation that
// stored the message. If CHAT is deleted and recreated while replicas run, a replica may
// still receive messages of the old incarnation, or (having missed the consumer-deleted
// notice, e.g. while disconnected) messages of the new one through the recreated durable
// of the same name. So for every batch holding a message without Nats-Msg-Id the
// persister reads the stream's current creation time (one request per such batch; the
// api always sets Nats-Msg-Id, so its messages never pay it) and assigns each message
// the newest known epoch not after the time the message was stored: a message stored
// before the current incarnation was created belongs to the previous one.

// epochs returns the previous and the current epoch, reading the current one from the
// server when refresh is set.
func (p *Persister) epochs(ctx context.Context, refresh bool) (prev, cur time.Time, err error) {
	if refresh {
		p.mu.Lock()
		stream := p.stream
		p.mu.Unlock()
		ictx, cancel := context.WithTimeout(ctx, p.cfg.WriteTimeout)
		defer cancel()
		info, ierr := stream.Info(ictx)
		if ierr != nil {
			p.met.errors.Inc()
			err = fmt.Errorf("read %s epoch: %w", chat.StreamName, ierr)
		} else {
			p.mu.Lock()
			p.setEpochLocked(info.Created)
			p.mu.Unlock()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.prevEpoch, p.epoch, err
}

// setEpochLocked records the current epoch; p.mu must be held.
func (p *Persister) setEpochLocked(e time.Time) {
	if p.epoch.Equal(e) {
		return
	}
	if !p.epoch.IsZero() {
		p.log.Warn("stream recreated", "stream", chat.StreamName,
			"old_epoch", p.epoch, "new_epoch", e)
		p.prevEpoch = p.epoch
	}
	p.epoch = e
}

// epochOf is the epoch of a message stored at t.
func epochOf(t, prev, cur time.Time) time.Time {
	if t.Before(cur) && !prev.IsZero() {
		return prev
	}
	return cur
}
