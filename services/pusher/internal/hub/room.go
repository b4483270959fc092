package hub

import (
	"sort"
	"sync"

	"github.com/gorilla/websocket"
)

// frame is one message encoded once per node as a websocket text frame, shared by every
// client it goes to.
type frame struct {
	seq uint64
	pm  *websocket.PreparedMessage
}

// room holds a room's subscribers and a window of its recent frames, from which most
// resumes are served without touching JetStream or MongoDB.
type room struct {
	name string

	mu   sync.Mutex
	subs map[*sub]struct{}
	ring []*frame // circular once it holds window frames
	head int      // index of the oldest frame
	// floor: every message of the room with seq > floor is in the ring (or not yet seen
	// by the feed). It starts at the seq the node's feed started after and rises as the
	// ring drops old entries.
	floor uint64
	last  uint64 // seq of the newest frame in the ring
}

func newRoom(name string, floor uint64, window int) *room {
	return &room{name: name, subs: make(map[*sub]struct{}), ring: make([]*frame, 0, min(window, 16)), floor: floor, last: floor}
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
func (r *room) after(seq uint64) []*frame {
	n := len(r.ring)
	i := sort.Search(n, func(i int) bool { return r.at(i).seq > seq })
	out := make([]*frame, 0, n-i)
	for ; i < n; i++ {
		out = append(out, r.at(i))
	}
	return out
}
