package hub

import (
	"sort"
	"sync"

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

// messageFrame encodes m as a complete server text frame.
func messageFrame(m *chat.Message) []byte {
	return transport.Frame(m.AppendJSON(make([]byte, transport.MaxFrameHeader, transport.MaxFrameHeader+160+len(m.Name)+len(m.Message)), "message"))
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
	last  uint64 // seq of the newest frame in the ring
}

func newRoom(name string, floor uint64, window int) *room {
	return &room{name: name, ring: make([]*frame, 0, min(window, 16)), floor: floor, last: floor}
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

// add appends f (seqs arrive in increasing order), dropping the oldest frame once the ring
// holds window frames. Caller holds mu.
func (r *room) add(f *frame, window int) {
	if len(r.ring) < window {
		r.ring = append(r.ring, f) // growing: head stays 0
	} else {
		r.floor = r.ring[r.head].seq
		r.ring[r.head] = f
		r.head = (r.head + 1) % len(r.ring)
	}
	r.last = f.seq
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
