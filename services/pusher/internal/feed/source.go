package feed

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Source is the CHAT stream as the node currently knows it: the stream handle and its
// epoch (creation time). The feed and the backlog share it; Refresh notices when the
// stream was lost and recreated (recreating it if nobody did yet).
type Source struct {
	js     jetstream.JetStream
	ensure func(ctx context.Context) (jetstream.Stream, error)

	mu      sync.RWMutex
	stream  jetstream.Stream
	epoch   time.Time
	lastSeq uint64 // the stream's last seq at the latest Refresh
}

// NewSource returns a source for stream; ensure creates the stream when it is gone.
func NewSource(js jetstream.JetStream, stream jetstream.Stream, ensure func(context.Context) (jetstream.Stream, error)) *Source {
	return &Source{js: js, ensure: ensure, stream: stream, epoch: stream.CachedInfo().Created}
}

// Current returns the stream handle and its epoch.
func (s *Source) Current() (jetstream.Stream, time.Time) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.stream, s.epoch
}

// Refresh reads the stream's info, recreating the stream if it is gone, and reports
// whether its epoch changed since the last call.
func (s *Source) Refresh(ctx context.Context) (bool, error) {
	stream, _ := s.Current()
	info, err := stream.Info(ctx)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if stream, err = s.ensure(ctx); err != nil {
			return false, fmt.Errorf("recreate stream: %w", err)
		}
		info, err = stream.Info(ctx)
	}
	if err != nil {
		return false, fmt.Errorf("stream info: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastSeq = info.State.LastSeq
	if info.Created.Equal(s.epoch) {
		return false, nil
	}
	s.stream, s.epoch = stream, info.Created
	return true, nil
}

// apiPrefix is the subject prefix of the JetStream API requests, with its trailing dot.
func (s *Source) apiPrefix() string {
	opts := s.js.Options()
	switch {
	case opts.Domain != "":
		return "$JS." + opts.Domain + ".API."
	case opts.APIPrefix != "":
		return strings.TrimSuffix(opts.APIPrefix, ".") + "."
	}
	return jetstream.DefaultAPIPrefix
}

// LastSeq is the stream's last seq as of the latest Refresh.
func (s *Source) LastSeq() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lastSeq
}
