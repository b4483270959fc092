package chat

import (
	"context"
	"fmt"
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
// It is idempotent and safe to call from every replica of every service at start-up.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.Stream, error) {
	if _, err := js.CreateOrUpdateStream(ctx, o.DeadLetterConfig()); err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", DeadLetterStream, err)
	}
	s, err := js.CreateOrUpdateStream(ctx, o.Config())
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", StreamName, err)
	}
	return s, nil
}
