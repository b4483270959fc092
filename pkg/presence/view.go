package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// ViewConfig tunes a View.
type ViewConfig struct {
	// Self is this node's id: its own updates and typing notices, which come back through
	// the subscription, are ignored. "" for a View that is no node (the api).
	Self string
	// Timeout: a node's room not refreshed for this long is forgotten (DefaultTimeout).
	Timeout time.Duration
	// OnChange is called with the rooms whose counts changed (updates, expiry); the
	// subscription and the expiry may call it at once. Optional.
	OnChange func(rooms []string)
	// OnTyping is called with the other nodes' typing notices. Optional.
	OnTyping func(Typing)
	// OnSync is called when a new View asks the nodes for their full state. Optional.
	OnSync func()
	Log    *slog.Logger
}

// View is what the other nodes report, kept current from one NATS subscription.
type View struct {
	nc  *nats.Conn
	cfg ViewConfig
	reg *Registry
}

// NewView returns a view that listens once Run starts.
func NewView(nc *nats.Conn, cfg ViewConfig) *View {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &View{nc: nc, cfg: cfg, reg: NewRegistry(cfg.Timeout)}
}

// Registry is what the view knows.
func (v *View) Registry() *Registry { return v.reg }

// Counts is room's counts summed over the nodes the view knows.
func (v *View) Counts(room string) Counts {
	var c Counts
	v.reg.AddTo(room, &c)
	return c
}

// Online is the number of connections to room on the nodes the view knows.
func (v *View) Online(room string) int { return v.reg.Online(room) }

// Run subscribes, asks the nodes for their full state, and forgets expired rooms until
// ctx ends.
func (v *View) Run(ctx context.Context) error {
	sub, err := v.nc.Subscribe(Wildcard, v.handle)
	if err != nil {
		return fmt.Errorf("presence: subscribe %s: %w", Wildcard, err)
	}
	// Presence traffic comes in bursts (heartbeats of every node): room for them.
	_ = sub.SetPendingLimits(64<<10, 256<<20)
	defer func() { _ = sub.Unsubscribe() }()
	if err := v.nc.Publish(SyncSubject, []byte(`{"node":"`+v.cfg.Self+`"}`)); err != nil {
		v.cfg.Log.Warn("presence sync request", "error", err)
	}
	tick := time.NewTicker(max(v.cfg.Timeout/10, 50*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			if gone := v.reg.Expire(now); len(gone) > 0 && v.cfg.OnChange != nil {
				v.cfg.OnChange(gone)
			}
		}
	}
}

func (v *View) handle(m *nats.Msg) {
	kind, _, _ := strings.Cut(strings.TrimPrefix(m.Subject, Prefix+"."), ".")
	switch kind {
	case "state":
		var u Update
		if err := json.Unmarshal(m.Data, &u); err != nil || u.Node == "" {
			v.cfg.Log.Warn("presence: bad update", "subject", m.Subject, "error", err)
			return
		}
		if u.Node == v.cfg.Self {
			return
		}
		if changed := v.reg.Apply(&u, time.Now()); len(changed) > 0 && v.cfg.OnChange != nil {
			v.cfg.OnChange(changed)
		}
	case "typing":
		var t Typing
		if err := json.Unmarshal(m.Data, &t); err != nil || t.Node == v.cfg.Self || v.cfg.OnTyping == nil {
			return
		}
		v.cfg.OnTyping(t)
	case "sync":
		var u Update
		if json.Unmarshal(m.Data, &u) == nil && u.Node == v.cfg.Self {
			return
		}
		if v.cfg.OnSync != nil {
			v.cfg.OnSync()
		}
	}
}
