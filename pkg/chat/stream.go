package chat

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamOptions are the operator's knobs for the CHAT stream. Every service reads them
// (envconfig prefix CHAT_STREAM_) and ensures the same stream at start-up.
type StreamOptions struct {
	// Replicas is 1 on a single server, 3 in a cluster.
	Replicas int `envconfig:"REPLICAS" default:"1"`
	// MaxAge, MaxBytes and MaxMsgs bound the replay window kept in JetStream; older
	// messages are served from MongoDB. Zero or negative means unlimited.
	MaxAge   time.Duration `envconfig:"MAX_AGE" default:"168h"`
	MaxBytes int64         `envconfig:"MAX_BYTES" default:"1073741824"`
	MaxMsgs  int64         `envconfig:"MAX_MSGS" default:"1000000"`
	// Duplicates is the de-duplication window for Nats-Msg-Id (and Idempotency-Key).
	Duplicates time.Duration `envconfig:"DUPLICATES" default:"2m"`

	// NextSeq, if set, is asked for the first sequence when the CHAT stream has to be
	// created (first start, or after the stream was lost). Services pass
	// history.Store.NextSeq, so that a recreated stream continues after everything
	// MongoDB holds: seqs keep increasing, history stays in order, and clients' cursors
	// stay meaningful. Not read from the environment.
	NextSeq func(ctx context.Context) (uint64, error) `ignored:"true"`
}

// DefaultStreamOptions are the defaults envconfig applies.
func DefaultStreamOptions() StreamOptions {
	return StreamOptions{Replicas: 1, MaxAge: 168 * time.Hour, MaxBytes: 1 << 30, MaxMsgs: 1_000_000, Duplicates: 2 * time.Minute}
}

func limit(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// Config is the CHAT stream configuration for these options.
func (o StreamOptions) Config() jetstream.StreamConfig {
	replicas := o.Replicas
	if replicas < 1 {
		replicas = 1
	}
	maxAge := o.MaxAge
	if maxAge < 0 {
		maxAge = 0
	}
	dup := o.Duplicates
	if dup <= 0 {
		dup = 2 * time.Minute
	}
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "chat messages, one subject per room",
		Subjects:    []string{SubjectWildcard},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      maxAge,
		MaxBytes:    limit(o.MaxBytes),
		MaxMsgs:     limit(o.MaxMsgs),
		Duplicates:  dup,
		Replicas:    replicas,
		AllowDirect: true,
		// 64 KiB bodies are rejected by the api; this bounds other publishers.
		MaxMsgSize: 256 << 10,
	}
}

// DeadLetterConfig is the DEADLETTER stream configuration.
func (o StreamOptions) DeadLetterConfig() jetstream.StreamConfig {
	replicas := o.Replicas
	if replicas < 1 {
		replicas = 1
	}
	return jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "invalid payloads published to chat.messages.*, with the reason",
		Subjects:    []string{DeadLetterSubject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      30 * 24 * time.Hour,
		MaxBytes:    256 << 20,
		Replicas:    replicas,
	}
}

// EnsureStreams creates or updates the CHAT and DEADLETTER streams and returns CHAT.
// It is idempotent and safe to call from every replica of every service at start-up and
// whenever the stream turns out to be gone. A CHAT stream it creates starts at
// o.NextSeq (when set); an existing stream keeps its sequence.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.Stream, error) {
	if _, err := js.CreateOrUpdateStream(ctx, o.DeadLetterConfig()); err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", DeadLetterStream, err)
	}
	cfg := o.Config()
	existing, err := js.Stream(ctx, StreamName)
	switch {
	case err == nil:
		cfg.FirstSeq = existing.CachedInfo().Config.FirstSeq
		s, err := js.UpdateStream(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("update stream %s: %w", StreamName, err)
		}
		return s, nil
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("look up stream %s: %w", StreamName, err)
	}
	if o.NextSeq != nil {
		if cfg.FirstSeq, err = o.NextSeq(ctx); err != nil {
			return nil, fmt.Errorf("first seq of a new stream %s: %w", StreamName, err)
		}
	}
	s, err := js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Another replica created it first.
		if s, err = js.Stream(ctx, StreamName); err == nil {
			return s, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", StreamName, err)
	}
	return s, nil
}

// EpochID names one incarnation of the CHAT stream by its creation time. The pusher
// sends it in subscribed frames: when it changes, the stream was lost and recreated.
func EpochID(created time.Time) string { return strconv.FormatInt(created.UnixNano(), 36) }
