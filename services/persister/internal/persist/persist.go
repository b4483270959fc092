// Package persist moves chat messages and their changes (edits, deletions, reactions)
// from the CHAT stream into MongoDB. Every replica pulls from one shared durable
// consumer, collects batches, writes each batch's messages with one unordered insert
// (idempotent: a message already stored is skipped; of two stream copies of one id, the
// one with the lowest seq is kept) and its changes with one bulk write (idempotent and
// order-independent, so two replicas may apply a message's changes in any order, even
// before the message), and acknowledges an event only after it is written. Invalid
// payloads are republished to the dead-letter subject and terminated, so they never hold
// up the events behind them. The insert also keeps the room list (collection rooms:
// last_seq, last_sent_at, messages per room, issue 12) with one bulk write per batch that
// counts each message once, when it is first stored (history.Store.InsertMany).
package persist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// ConsumerName is the durable pull consumer on CHAT that all persister replicas share.
const ConsumerName = chat.PersisterConsumer

// Writer stores a batch's messages and applies its changes (edits, deletions, reactions).
// Messages already stored must count as success; an id stored again with a lower seq
// must replace the stored copy (the lowest seq is the message). Changes must apply
// idempotently and in any order, also before their message is stored.
// *history.Store implements it.
//
// Seqs returns the stored seq of each of ids that is stored: the persister asks it
// before inserting redelivered messages, and leaves out those stored already.
type Writer interface {
	InsertMany(ctx context.Context, msgs []chat.Message) error
	ApplyChanges(ctx context.Context, changes []chat.Message) error
	Seqs(ctx context.Context, ids []string) (map[string]uint64, error)
}

// Config tunes the persister. Zero values take the defaults documented on each field.
type Config struct {
	Stream chat.StreamOptions
	// BatchSize is the most messages written with one insert (default 500).
	BatchSize int
	// BatchWait is the least time between the starts of two writes (default 100ms): what
	// arrives meanwhile joins the next one, unless BatchSize messages are there first. A
	// message after a quiet spell is written 20ms after it came. Each write has a fixed cost (a
	// transaction for the insert, one for the room list, a flush of the acks) that
	// dominated the cost of a post at moderate rates; the price is up to BatchWait more
	// persister lag under steady traffic.
	BatchWait time.Duration
	// MaxAckPending bounds the messages delivered and not yet acked, over all replicas
	// (default 20000).
	MaxAckPending int
	// AckWait is how long JetStream waits for an ack before redelivering (default 30s).
	AckWait time.Duration
	// WriteTimeout bounds one insert (default 10s; never more than AckWait/2, so a slow
	// write is given up before its messages are redelivered).
	WriteTimeout time.Duration
	// RetryMin and RetryMax set the redelivery delay after a failed write: RetryMin
	// doubled per earlier delivery, at most RetryMax (defaults 250ms and 30s), of which a
	// random half to all is waited (jitter, see backoff.go).
	RetryMin, RetryMax time.Duration
	// PendingInterval is how often the consumer's pending counts are read for the
	// metrics (default 5s).
	PendingInterval time.Duration
	// ShutdownTimeout bounds finishing the in-flight work once Run's context is done
	// (default 15s).
	ShutdownTimeout time.Duration
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 20000
	}
	def(&c.BatchWait, 100*time.Millisecond)
	def(&c.AckWait, 30*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	c.WriteTimeout = min(c.WriteTimeout, c.AckWait/2)
	def(&c.RetryMin, 250*time.Millisecond)
	def(&c.RetryMax, 30*time.Second)
	c.RetryMax = max(c.RetryMax, c.RetryMin)
	def(&c.PendingInterval, 5*time.Second)
	def(&c.ShutdownTimeout, 15*time.Second)
}

// Persister is the stream-to-MongoDB worker.
type Persister struct {
	cfg Config
	nc  *nats.Conn
	js  jetstream.JetStream
	w   Writer
	log *slog.Logger
	met *metrics

	draining atomic.Bool

	mu        sync.Mutex
	cons      jetstream.Consumer
	stream    jetstream.Stream
	epoch     time.Time // CHAT's creation time, for derived ids
	prevEpoch time.Time // the epoch before the stream was last recreated, if it was
	iter      jetstream.MessagesContext
}

// New ensures the streams and the durable consumer and returns a persister that is not
// running yet.
func New(ctx context.Context, cfg Config, nc *nats.Conn, w Writer, reg prometheus.Registerer, log *slog.Logger) (*Persister, error) {
	cfg.setDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	met, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	p := &Persister{cfg: cfg, nc: nc, js: js, w: w, log: log, met: met}
	if err := p.ensure(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Draining reports whether Run has stopped taking new messages.
func (p *Persister) Draining() bool { return p.draining.Load() }

// Epoch is the creation time of the CHAT stream the consumer reads.
func (p *Persister) Epoch() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.epoch
}

// Run consumes until ctx is done, then stops taking messages, finishes (writes and acks)
// what it already received within the shutdown timeout, and returns.
func (p *Persister) Run(ctx context.Context) error {
	// work outlives ctx by at most the shutdown timeout: in-flight batches use it.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopTimer := context.AfterFunc(ctx, func() {
		p.draining.Store(true)
		time.AfterFunc(p.cfg.ShutdownTimeout, cancelWork)
	})
	defer stopTimer()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { p.pollPending(gctx); return nil })
	g.Go(func() error {
		retry := backoff{min: p.cfg.RetryMin, max: p.cfg.RetryMax}
		for {
			err := p.consume(ctx, work)
			if ctx.Err() != nil {
				return nil
			}
			p.met.errors.Inc()
			wait := retry.next()
			p.log.Warn("consumer interrupted; recreating", "error", err, "retry_in", wait)
			if !sleep(ctx, wait) {
				return nil
			}
			if err := p.ensure(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				p.log.Error("ensure consumer", "error", err)
				continue
			}
			retry.reset()
		}
	})
	err := g.Wait()
	// Run may return before the AfterFunc above has run (it runs on its own goroutine
	// once ctx is done, and stopTimer cancels it if it has not started): once Run has
	// returned, the persister is draining whichever came first.
	p.draining.Store(true)
	return err
}

// consume reads batches from one message iterator until it fails or, after ctx is done,
// until its buffer is drained.
func (p *Persister) consume(ctx, work context.Context) error {
	p.mu.Lock()
	cons := p.cons
	p.mu.Unlock()
	// A shorter pull expiry than the default 30 s: missed heartbeats (a NATS node died)
	// are noticed within seconds, not half a minute.
	it, err := cons.Messages(jetstream.PullMaxMessages(2*p.cfg.BatchSize), jetstream.PullExpiry(10*time.Second))
	if err != nil {
		return fmt.Errorf("consume %s: %w", ConsumerName, err)
	}
	defer it.Stop()
	p.mu.Lock()
	p.iter = it
	p.mu.Unlock()
	// Stop intake when ctx is done; the buffered messages are still processed.
	defer context.AfterFunc(ctx, it.Drain)()

	batch := make([]jetstream.Msg, 0, p.cfg.BatchSize)
	// After a failed write, pause before the next batch so an outage is not hammered.
	pause := backoff{min: p.cfg.RetryMin, max: min(p.cfg.RetryMax, p.cfg.AckWait/2)}
	// After a failed write the next batch is half as big, after a good one twice (up to
	// BatchSize). A store that has just come back (or is slow) may take longer than the
	// write timeout to write a full batch: the write is then abandoned and rolled back and
	// the same batch comes back, and at full size it never got written (seen after a
	// FerretDB restart with a backlog). Smaller batches always get through.
	limit := p.cfg.BatchSize
	var lastWrite time.Time // when the previous write started
	for {
		first, err := it.Next(jetstream.NextContext(work))
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("next message: %w", err)
		}
		batch = append(batch[:0], first)
		var nextErr error
		// Wait for company until BatchWait after the previous write began; past that,
		// take only what is buffered already (a Next of a buffered message returns at
		// once, so bufferedWait ends the batch only when there is nothing more). A
		// message after a quiet spell still waits settleWait: its fan-out to websockets
		// and the api's reply to its post, which happen now too (in the all-in-one on the
		// same core), go before the store's write instead of queueing behind it.
		deadline := lastWrite.Add(p.cfg.BatchWait)
		if settled := time.Now().Add(settleWait); deadline.Before(settled) {
			deadline = settled
		}
		for len(batch) < limit {
			m, err := it.Next(jetstream.NextMaxWait(max(time.Until(deadline), bufferedWait)))
			if err != nil {
				if !errors.Is(err, nats.ErrTimeout) {
					nextErr = err
				}
				break
			}
			batch = append(batch, m)
		}
		lastWrite = time.Now()
		err = p.process(work, batch)
		clear(batch)
		switch {
		case err == nil:
			pause.reset()
			limit = min(2*limit, p.cfg.BatchSize)
		case ctx.Err() != nil:
			// Draining with a broken store: leave the rest to be redelivered elsewhere.
			return nil
		default:
			limit = max(limit/2, minAdaptiveBatch)
			sleep(ctx, pause.next())
		}
		if nextErr != nil && !(errors.Is(nextErr, jetstream.ErrMsgIteratorClosed) && ctx.Err() != nil) {
			return fmt.Errorf("next message: %w", nextErr)
		}
	}
}

// bufferedWait is how long a batch past its deadline waits for a message that is not
// buffered yet.
const bufferedWait = 200 * time.Microsecond

// settleWait is the least time a batch waits after its first message arrived. At 10
// posts/s into 100 subscribers (the all-in-one on one core), writing a lone message at
// once put the store's ~1.5 ms write ahead of the message's own fan-out, and 5 ms later
// still met the slow end of some fan-outs (e2e p99 up to 10 ms): 20 ms (the old
// BatchWait) keeps them apart.
const settleWait = 20 * time.Millisecond

// minAdaptiveBatch is the smallest batch the persister shrinks to after failed writes.
const minAdaptiveBatch = 8

// ensure creates or updates the streams and the durable consumer and reads the epoch.
func (p *Persister) ensure(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		stream, err := chat.EnsureStreams(ctx, p.js, p.cfg.Stream)
		if err != nil {
			return err
		}
		epoch := stream.CachedInfo().Created
		cons, err := stream.CreateOrUpdateConsumer(ctx, p.consumerConfig())
		if err != nil {
			return fmt.Errorf("ensure consumer %s: %w", ConsumerName, err)
		}
		// The stream could have been recreated between reading its epoch and creating
		// the consumer: then the consumer belongs to a stream with another epoch.
		info, err := stream.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream %s info: %w", chat.StreamName, err)
		}
		if !info.Created.Equal(epoch) && attempt < 3 {
			continue
		}
		p.mu.Lock()
		p.cons, p.stream = cons, stream
		p.setEpochLocked(info.Created)
		p.mu.Unlock()
		return nil
	}
}

func (p *Persister) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "persister: stores chat messages in MongoDB",
		FilterSubject: chat.SubjectWildcard,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       p.cfg.AckWait,
		// Never give up on a message: a MongoDB outage must not make it undeliverable.
		// Failed writes are retried with NakWithDelay (see backoff.go).
		MaxDeliver:    -1,
		MaxAckPending: p.cfg.MaxAckPending,
		Replicas:      0, // inherit the stream's
	}
}

// pollPending keeps the pending gauges current until ctx is done.
func (p *Persister) pollPending(ctx context.Context) {
	t := time.NewTicker(p.cfg.PendingInterval)
	defer t.Stop()
	for {
		p.mu.Lock()
		cons := p.cons
		p.mu.Unlock()
		ictx, cancel := context.WithTimeout(ctx, p.cfg.PendingInterval)
		info, err := cons.Info(ictx)
		cancel()
		switch {
		case err == nil:
			p.met.pending.Set(float64(info.NumPending))
			p.met.ackPending.Set(float64(info.NumAckPending))
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			// Deleted (with its stream?) without our iterator noticing: restart it,
			// which recreates the consumer.
			p.mu.Lock()
			if p.iter != nil {
				p.iter.Stop()
			}
			p.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
