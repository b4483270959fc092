package hub

import (
	"sort"
	"sync"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/services/pusher/internal/transport"
)

// frame is one message encoded once per node as a complete websocket text frame (header
// and payload), shared by every client it goes to: written as is straight to an idle
// client's socket, or queued and copied into a busy client's next batched write.
type frame struct {
	seq uint64
	raw []byte
}

// messageFrame encodes m as a complete server text frame: a message (in its state, as
// the MongoDB tier returns it) or a change (its edited, deleted or reactions frame).
func messageFrame(m *chat.Message) []byte {
	return transport.Frame(m.AppendJSON(make([]byte, transport.MaxFrameHeader, transport.MaxFrameHeader+frameSize(m)), "message"))
}

// frameSize bounds the length of m's frame (unless its text needs escapes), so that it is
// encoded without growing its buffer, whose capacity the window budget counts: a
// message's field names, sent_at and a 20-digit seq in 124 bytes, plus its strings, and
// a state's extra fields. A change's frame has a message's fields at most, without name
// and sent_at (edited_at in its place), and a reactions change has the reactions only.
func frameSize(m *chat.Message) int {
	n := 124 + len(m.ID) + len(m.Room) + len(m.Name) + len(m.Message)
	if !m.EditedAt.IsZero() && m.Event == "" {
		n += len(`,"edited_at":"2006-01-02T15:04:05.000Z"`)
	}
	if m.Deleted {
		n += len(`,"deleted":true`)
	}
	if len(m.Reactions) > 0 {
		n += len(`,"reactions":{}`)
		for e := range m.Reactions {
			n += len(e) + len(`"":100,`)
		}
	}
	return n
}

// room holds a room's subscribers and a window of its recent frames, from which most
// resumes are served without touching JetStream or MongoDB.
type room struct {
	name string

	mu   sync.Mutex
	subs []*sub   // in no particular order; sub.idx is each one's index
	ring []*frame // circular once it holds window frames
	head int      // index of the oldest frame
	// floor: every message of the room with seq > floor is in the ring (or not yet seen
	// by the feed). It starts at the seq the node's feed started after and rises as the
	// ring drops old entries.
	floor uint64
	last  uint64 // highest seq in the ring (floor while it holds none)
	bytes int64  // what the room costs: roomOverhead, the ring and its frames (budget.go)
	added uint64 // frames added since the room was created (RoomStats)
	dead  bool   // evicted: no longer in Hub.rooms; whoever finds it so looks the room up again

	lastFanout time.Time // when the last message went out to the subscribers
	ride       *ride     // frames waiting to go out with the next message (OfferRoom)

	// guarded by Hub.mu: the hub's least recently used list (budget.go)
	prev, next *room
	touched    time.Time // last publish or subscribe
}

func newRoom(name string, floor uint64, window int) *room {
	r := &room{name: name, ring: make([]*frame, 0, min(window, 16)), floor: floor, last: floor}
	r.bytes = roomOverhead + int64(len(name)) + int64(cap(r.ring))*ptrSize
	return r
}

// addSub registers s. Caller holds mu.
func (r *room) addSub(s *sub) {
	s.idx = len(r.subs)
	r.subs = append(r.subs, s)
}

// removeSub unregisters s, if registered, by moving the last one into its place. Caller
// holds mu.
func (r *room) removeSub(s *sub) {
	i := s.idx
	if i < 0 || i >= len(r.subs) || r.subs[i] != s {
		return
	}
	last := len(r.subs) - 1
	r.subs[i] = r.subs[last]
	r.subs[i].idx = i
	r.subs[last] = nil
	r.subs = r.subs[:last]
	s.idx = -1
}

// add appends f (a room's seqs arrive in increasing order), dropping the oldest frame once
// the ring holds window frames, and returns how much r.bytes changed. Caller holds mu.
//
// The ring may hold frames at or below the floor: a room created again starts with the
// floor of the evicted rooms (Hub.newRoomLocked), and a message the duplicate filter held
// back may then still arrive with a lower seq. Such frames keep the ring ordered (they come
// before any later one of the room) and are never served from it to a cursor below the
// floor (those go to the backlog up to the floor first), so they do no harm; floor and
// last only ever rise.
func (r *room) add(f *frame, window int) int64 {
	delta := frameCost(f)
	r.added++
	if len(r.ring) < window {
		c := cap(r.ring)
		r.ring = append(r.ring, f) // growing: head stays 0
		delta += int64(cap(r.ring)-c) * ptrSize
	} else {
		old := r.ring[r.head]
		r.floor = max(r.floor, old.seq)
		delta -= frameCost(old)
		r.ring[r.head] = f
		r.head = (r.head + 1) % len(r.ring)
	}
	r.last = max(r.last, f.seq)
	r.bytes += delta
	return delta
}

// trim drops the ring's oldest frames until it has shed at least want bytes (or holds
// none), raising the floor past them, and returns the bytes shed. The ring is copied into
// a right-sized array. Caller holds mu.
func (r *room) trim(want int64) int64 {
	n, freed := len(r.ring), int64(0)
	i := 0
	for ; i < n && freed < want; i++ {
		f := r.at(i)
		r.floor = max(r.floor, f.seq)
		freed += frameCost(f)
	}
	if i == 0 {
		return 0
	}
	rest := make([]*frame, n-i)
	for j := range rest {
		rest[j] = r.at(i + j)
	}
	freed += int64(cap(r.ring)-cap(rest)) * ptrSize
	r.ring, r.head = rest, 0
	r.bytes -= freed
	return freed
}

// at returns the i-th oldest frame. Caller holds mu.
func (r *room) at(i int) *frame { return r.ring[(r.head+i)%len(r.ring)] }

// after returns the ring's frames with seq > seq, oldest first. Caller holds mu.
func (r *room) after(seq uint64) [][]byte {
	n := len(r.ring)
	i := sort.Search(n, func(i int) bool { return r.at(i).seq > seq })
	out := make([][]byte, 0, n-i)
	for ; i < n; i++ {
		out = append(out, r.at(i).raw)
	}
	return out
}
