// Package presence is the pusher's side of presence and typing (issue 12): which of this
// node's connections are subscribed to which room, under which name (the hub tells it,
// hub.Presence), published to the other nodes over core NATS (pkg/presence: changes as
// they happen, the full state every heartbeat), and summed with what the other nodes
// report into the presence, join and leave frames of the room's watchers here (the
// subscriptions that asked for them). Typing notices go to the room's other watchers
// on every node.
//
// Nothing here touches the message fan-out: the hub calls Join and Leave from a client's
// reader goroutine, and frames go through the clients' queues. Join and leave frames are
// coalesced per room (Config.Window); typing notices to a room's watchers are batched
// (Config.TypingBatch) and offered only to clients with nothing queued (hub.Client.Offer):
// never queued behind, or ahead of, their messages.
//
// Lock order: Tracker.mu → room.mu → (hub.Client.mu, cluster.Registry.mu).
package presence

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	cluster "github.com/chatrt/chat/pkg/presence"
	"github.com/chatrt/chat/services/pusher/internal/hub"
	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"
)

// Config tunes a Tracker. Zero values take the defaults.
type Config struct {
	// Node is this node's id on the bus (NewNodeID when "").
	Node string
	// Heartbeat is how often the node publishes its full state (cluster.DefaultHeartbeat);
	// Timeout how long another node's rooms are believed without news (cluster.DefaultTimeout).
	Heartbeat, Timeout time.Duration
	// Window: a room's watchers get at most one join and one leave frame per Window (1s).
	Window time.Duration
	// TypingBatch: typing notices to a room's watchers go out together every TypingBatch
	// (100ms), one write per watcher.
	TypingBatch time.Duration
	// PublishDelay: local changes are published together this long after the first (20ms).
	PublishDelay time.Duration
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Node == "" {
		c.Node = NewNodeID()
	}
	def(&c.Heartbeat, cluster.DefaultHeartbeat)
	def(&c.Timeout, cluster.DefaultTimeout)
	def(&c.Window, time.Second)
	def(&c.TypingBatch, 100*time.Millisecond)
	def(&c.PublishDelay, 20*time.Millisecond)
}

// NewNodeID is a node id unique to this process: host name and random bytes.
func NewNodeID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	host, _ := os.Hostname()
	if len(host) > 32 {
		host = host[:32]
	}
	// One subject token (StateSubject.<node>): a dotted host name would have spanned
	// several, which the wildcard subscription took but a per-node one would not.
	return strings.ReplaceAll(host, ".", "_") + "-" + hex.EncodeToString(b)
}

// maxUpdateBytes bounds one published update (NATS's default max payload is 1 MiB).
const maxUpdateBytes = 256 << 10

// Tracker is the node's presence. It implements hub.Presence.
type Tracker struct {
	cfg  Config
	nc   *nats.Conn
	view *cluster.View
	log  *slog.Logger

	mu    sync.Mutex
	rooms map[string]*room

	pmu      sync.Mutex
	dirty    map[*room]struct{} // rooms whose local counts changed since they were published
	wake     chan struct{}
	sync     chan struct{}
	lastFull time.Time // guarded by the publisher goroutine
}

// New returns a tracker publishing on nc; it listens and publishes once Run starts.
func New(nc *nats.Conn, cfg Config, log *slog.Logger) *Tracker {
	cfg.setDefaults()
	t := &Tracker{cfg: cfg, nc: nc, log: log, rooms: make(map[string]*room),
		dirty: make(map[*room]struct{}), wake: make(chan struct{}, 1), sync: make(chan struct{}, 1)}
	t.view = cluster.NewView(nc, cluster.ViewConfig{Self: cfg.Node, Timeout: cfg.Timeout, Log: log,
		OnChange: t.remoteChanged, OnTyping: t.remoteTyping, OnSync: func() { signal(t.sync) }})
	return t
}

// Node is the node's id.
func (t *Tracker) Node() string { return t.cfg.Node }

// Counts is room's presence on every node: this one's connections and what the others
// report.
func (t *Tracker) Counts(room string) cluster.Counts {
	var c cluster.Counts
	t.mu.Lock()
	r := t.rooms[room]
	t.mu.Unlock()
	if r != nil {
		r.mu.Lock()
		c = r.local.Clone()
		r.mu.Unlock()
	}
	t.view.Registry().AddTo(room, &c)
	return c
}

// Run listens to the other nodes and publishes this node's changes and heartbeats until
// ctx ends, then tells the others it is gone.
func (t *Tracker) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return t.view.Run(gctx) })
	g.Go(func() error { return t.publish(gctx) })
	return g.Wait()
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// publish is the node's one publisher: changes PublishDelay after they happen, the full
// state every heartbeat and when a new view asks, and a goodbye at the end.
func (t *Tracker) publish(ctx context.Context) error {
	hb := time.NewTicker(t.cfg.Heartbeat)
	defer hb.Stop()
	t.publishFull() // a restarted node replaces what the others still know of it
	for {
		select {
		case <-ctx.Done():
			t.send(&cluster.Update{Node: t.cfg.Node, Bye: true})
			_ = t.nc.Flush()
			return nil
		case <-t.wake:
			select {
			case <-time.After(t.cfg.PublishDelay):
			case <-ctx.Done():
				continue
			}
			t.publishChanges()
		case <-hb.C:
			t.publishFull()
		case <-t.sync:
			if time.Since(t.lastFull) > 250*time.Millisecond {
				t.publishFull()
			}
		}
	}
}

// markDirty records that r's local counts changed, for the publisher. Caller holds r.mu.
func (t *Tracker) markDirty(r *room) {
	t.pmu.Lock()
	t.dirty[r] = struct{}{}
	t.pmu.Unlock()
	signal(t.wake)
}

// publishChanges publishes the changed rooms: each with its anonymous count and the new
// counts of the members that changed. Rooms left empty are forgotten once published.
func (t *Tracker) publishChanges() {
	t.pmu.Lock()
	dirty := t.dirty
	t.dirty = make(map[*room]struct{})
	t.pmu.Unlock()
	u := &cluster.Update{Node: t.cfg.Node, Rooms: make(map[string]cluster.Counts)}
	size := 0
	var empty []*room
	for r := range dirty {
		r.mu.Lock()
		c, ok := r.takeChanges()
		if r.local.Empty() && len(r.watchers) == 0 {
			empty = append(empty, r)
		}
		r.mu.Unlock()
		if !ok {
			continue
		}
		u.Rooms[r.name] = c
		if size += countsSize(r.name, &c); size > maxUpdateBytes {
			t.send(u)
			u, size = &cluster.Update{Node: t.cfg.Node, Rooms: make(map[string]cluster.Counts)}, 0
		}
	}
	if len(u.Rooms) > 0 {
		t.send(u)
	}
	for _, r := range empty {
		t.mu.Lock()
		r.mu.Lock()
		if r.local.Empty() && len(r.watchers) == 0 && !r.dead && t.rooms[r.name] == r {
			r.dead = true
			delete(t.rooms, r.name)
		}
		r.mu.Unlock()
		t.mu.Unlock()
	}
}

// publishFull publishes every room of the node with its whole counts.
func (t *Tracker) publishFull() {
	t.lastFull = time.Now()
	t.mu.Lock()
	rooms := make([]*room, 0, len(t.rooms))
	for _, r := range t.rooms {
		rooms = append(rooms, r)
	}
	t.mu.Unlock()
	u := &cluster.Update{Node: t.cfg.Node, Full: true, Rooms: make(map[string]cluster.Counts)}
	size := 0
	for _, r := range rooms {
		r.mu.Lock()
		c := r.local.Clone() // pending changes stay: a room left empty is published by them
		r.mu.Unlock()
		if c.Empty() {
			continue
		}
		u.Rooms[r.name] = c
		if size += countsSize(r.name, &c); size > maxUpdateBytes {
			t.send(u)
			u, size = &cluster.Update{Node: t.cfg.Node, Full: true, Rooms: make(map[string]cluster.Counts)}, 0
		}
	}
	if len(u.Rooms) > 0 {
		t.send(u)
	}
}

func countsSize(room string, c *cluster.Counts) int {
	n := len(room) + 32
	for m := range c.Members {
		n += len(m) + 16
	}
	return n
}

func (t *Tracker) send(u *cluster.Update) {
	b, err := json.Marshal(u)
	if err == nil {
		err = t.nc.Publish(cluster.StateSubject+"."+t.cfg.Node, b)
	}
	if err != nil {
		t.log.Warn("presence publish", "error", err)
	}
}

// lockRoom returns room's entry, made if needed, locked.
func (t *Tracker) lockRoom(name string) *room {
	for {
		t.mu.Lock()
		r := t.rooms[name]
		if r == nil {
			r = &room{name: name, t: t, watchers: make(map[*hub.Client]struct{})}
			t.rooms[name] = r
		}
		t.mu.Unlock()
		r.mu.Lock()
		if !r.dead {
			return r
		}
		r.mu.Unlock()
	}
}

// existing returns room's entry, locked, or nil when the node has no connection to it.
func (t *Tracker) existing(name string) *room {
	t.mu.Lock()
	r := t.rooms[name]
	t.mu.Unlock()
	if r == nil {
		return nil
	}
	r.mu.Lock()
	if r.dead {
		r.mu.Unlock()
		return nil
	}
	return r
}

// Join counts c's new subscription to room as m; a watcher gets the room's presence
// frame (after its subscribed frame, which the hub queued).
func (t *Tracker) Join(room string, c *hub.Client, m hub.Member) {
	r := t.lockRoom(room)
	defer r.mu.Unlock()
	r.count(m.Name, +1)
	t.markDirty(r)
	now := time.Now()
	if !m.Watch {
		r.changedLocked(now)
		return
	}
	if len(r.watchers) == 0 {
		r.shown, r.shownFrame = r.current(), nil // nobody was told anything yet
	} else {
		r.changedLocked(now) // the others may learn of c now; c's frame shows what they know
	}
	r.watchers[c] = struct{}{}
	c.Hub().FlushRoom(room) // the join and leave frames the others are owed go before c's presence
	c.Enqueue(r.presenceFrame())
}

// Leave uncounts c's subscription to room.
func (t *Tracker) Leave(room string, c *hub.Client, m hub.Member) {
	r := t.existing(room)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	r.count(m.Name, -1)
	if m.Watch {
		delete(r.watchers, c)
	}
	t.markDirty(r)
	r.changedLocked(time.Now())
}

// Typing forwards m's typing notice in room to the room's other watchers here and on
// the other nodes.
func (t *Tracker) Typing(room string, c *hub.Client, m hub.Member) {
	b, _ := json.Marshal(cluster.Typing{Node: t.cfg.Node, Room: room, Name: m.Name})
	if err := t.nc.Publish(cluster.TypingSubject+"."+room, b); err != nil {
		t.log.Warn("presence typing publish", "error", err)
	}
	if r := t.existing(room); r != nil {
		r.addTyping(m.Name, c)
		r.mu.Unlock()
	}
}

func (t *Tracker) remoteTyping(ty cluster.Typing) {
	if r := t.existing(ty.Room); r != nil {
		r.addTyping(ty.Name, nil)
		r.mu.Unlock()
	}
}

// remoteChanged is told by the view which rooms changed on other nodes.
func (t *Tracker) remoteChanged(rooms []string) {
	now := time.Now()
	for _, name := range rooms {
		if r := t.existing(name); r != nil {
			r.changedLocked(now)
			r.mu.Unlock()
		}
	}
}

// String names the tracker in logs.
func (t *Tracker) String() string { return fmt.Sprintf("presence node %s", t.cfg.Node) }
