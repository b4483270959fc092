package presence

import (
	"cmp"
	"slices"
	"sync"
	"time"

	cluster "github.com/chatrt/chat/pkg/presence"
	"github.com/chatrt/chat/services/pusher/internal/hub"
)

// room is one room's presence on this node: its local connections, its watchers, what
// they were last told (shown) and the typing notices waiting to go to them.
type room struct {
	name string
	t    *Tracker

	mu          sync.Mutex
	dead        bool                     // forgotten: no longer in Tracker.rooms
	local       cluster.Counts           // this node's connections
	changed     map[string]struct{}      // members whose local count changed since published
	anonChanged bool                     // the anonymous count changed since published
	watchers    map[*hub.Client]struct{} // the subscriptions here that asked for presence

	shown      cluster.Counts // the presence the watchers were last told
	shownFrame []byte         // shown as a presence frame, made on demand
	lastEmit   time.Time      // when join/leave frames last went out
	emitTimer  *time.Timer    // pending join/leave frames, set until they go out

	typing      []typingNotice
	typingTimer *time.Timer
}

type typingNotice struct {
	name string
	from *hub.Client // nil: from another node
}

// count adds delta to name's (or, name "", the anonymous) local connections. Caller holds mu.
func (r *room) count(name string, delta int) {
	if name == "" {
		r.local.Anonymous = max(r.local.Anonymous+delta, 0)
		r.anonChanged = true
		return
	}
	if r.local.Members == nil {
		r.local.Members = make(map[string]int)
	}
	if n := r.local.Members[name] + delta; n > 0 {
		r.local.Members[name] = n
	} else {
		delete(r.local.Members, name)
	}
	if r.changed == nil {
		r.changed = make(map[string]struct{})
	}
	r.changed[name] = struct{}{}
}

// takeChanges returns the room's pending change for the other nodes (its anonymous
// count and the new counts of the members that changed) and clears it; ok false when
// there is none. Caller holds mu.
func (r *room) takeChanges() (cluster.Counts, bool) {
	if len(r.changed) == 0 && !r.anonChanged {
		return cluster.Counts{}, false
	}
	c := cluster.Counts{Anonymous: r.local.Anonymous}
	if len(r.changed) > 0 {
		c.Members = make(map[string]int, len(r.changed))
		for name := range r.changed {
			c.Members[name] = r.local.Members[name]
		}
	}
	r.changed, r.anonChanged = nil, false
	return c, true
}

// current is the room's presence on every node. Caller holds mu.
func (r *room) current() cluster.Counts {
	c := r.local.Clone()
	r.t.view.Registry().AddTo(r.name, &c)
	return c
}

// presenceFrame is shown as a presence frame. Caller holds mu.
func (r *room) presenceFrame() []byte {
	if r.shownFrame == nil {
		r.shownFrame = stateFrame("presence", r.name, r.shown.Online(), r.shown.Anonymous, r.shown.Sorted())
	}
	return r.shownFrame
}

// changedLocked notes that the room's presence may have changed: its watchers get the
// difference now if no join/leave frames went out within the window, else at its end.
// Caller holds mu.
func (r *room) changedLocked(now time.Time) {
	if len(r.watchers) == 0 || r.emitTimer != nil {
		return
	}
	if wait := r.t.cfg.Window - now.Sub(r.lastEmit); wait > 0 {
		r.emitTimer = time.AfterFunc(wait, func() {
			r.mu.Lock()
			r.emitTimer = nil
			r.emitLocked(time.Now())
			r.mu.Unlock()
		})
		return
	}
	r.emitLocked(now)
}

// emitLocked sends the watchers what changed since shown: a join frame with the members
// whose connections went up, a leave frame with those whose went down (0: gone), each
// with the room's online and anonymous counts; anonymous changes alone make a frame with
// no members. Caller holds mu.
func (r *room) emitLocked(now time.Time) {
	if len(r.watchers) == 0 {
		return
	}
	cur := r.current()
	var joined, left []cluster.Member
	for name, n := range cur.Members {
		if n > r.shown.Members[name] {
			joined = append(joined, cluster.Member{Name: name, Connections: n})
		} else if n < r.shown.Members[name] {
			left = append(left, cluster.Member{Name: name, Connections: n})
		}
	}
	for name := range r.shown.Members {
		if _, ok := cur.Members[name]; !ok {
			left = append(left, cluster.Member{Name: name, Connections: 0})
		}
	}
	online := cur.Online()
	var frames [][]byte
	if len(joined) > 0 || cur.Anonymous > r.shown.Anonymous {
		frames = append(frames, stateFrame("join", r.name, online, cur.Anonymous, sortMembers(joined)))
	}
	if len(left) > 0 || cur.Anonymous < r.shown.Anonymous {
		frames = append(frames, stateFrame("leave", r.name, online, cur.Anonymous, sortMembers(left)))
	}
	if len(frames) == 0 {
		return
	}
	r.lastEmit = now
	r.shown, r.shownFrame = cur, nil
	// The frames ride with the room's next message when messages flow (hub.EnqueueRoom):
	// no write, and no writer to wake, of their own per watcher.
	var h *hub.Hub
	to := make(map[*hub.Client]struct{}, len(r.watchers))
	for w := range r.watchers {
		h = w.Hub()
		to[w] = struct{}{}
	}
	h.EnqueueRoom(r.name, frames, to, now)
}

func sortMembers(m []cluster.Member) []cluster.Member {
	slices.SortFunc(m, func(a, b cluster.Member) int { return cmp.Compare(a.Name, b.Name) })
	return m
}

// addTyping queues name's typing notice (from: the sender's own client, which does not
// get it back) for the watchers; they go out at the end of the batch. Caller holds mu.
func (r *room) addTyping(name string, from *hub.Client) {
	if len(r.watchers) == 0 {
		return
	}
	r.typing = append(r.typing, typingNotice{name: name, from: from})
	if r.typingTimer == nil {
		r.typingTimer = time.AfterFunc(r.t.cfg.TypingBatch, r.flushTyping)
	}
}

// flushTyping offers the batch's typing frames to each watcher (one per name, none of
// its own), dropped for a watcher with anything queued. Watchers that sent none of the
// notices get the same frames through hub.OfferRoom: with the room's next message when
// messages are flowing (no write of their own), else at once.
func (r *room) flushTyping() {
	r.mu.Lock()
	notices := r.typing
	r.typing, r.typingTimer = nil, nil
	var names []string
	frames := map[string][]byte{}
	senders := map[*hub.Client]map[string]int{} // watcher → its own notices per name
	count := map[string]int{}
	for _, n := range notices {
		if _, ok := frames[n.name]; !ok {
			names = append(names, n.name)
			frames[n.name] = typingFrame(r.name, n.name)
		}
		count[n.name]++
		if n.from != nil {
			if senders[n.from] == nil {
				senders[n.from] = map[string]int{}
			}
			senders[n.from][n.name]++
		}
	}
	all := make([][]byte, len(names))
	for i, name := range names {
		all[i] = frames[name]
	}
	now := time.Now()
	var h *hub.Hub
	to := make(map[*hub.Client]struct{}, len(r.watchers))
	for w := range r.watchers {
		h = w.Hub()
		own := senders[w]
		if own == nil {
			to[w] = struct{}{}
			continue
		}
		var out [][]byte
		for _, name := range names {
			if count[name] > own[name] {
				out = append(out, frames[name])
			}
		}
		if len(out) > 0 {
			w.Offer(out, now)
		}
	}
	r.mu.Unlock()
	if h != nil && len(all) > 0 {
		h.OfferRoom(r.name, all, to, now)
	}
}
