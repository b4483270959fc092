package hub

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/chatrt/chat/services/pusher/internal/transport"
	"github.com/prometheus/client_golang/prometheus"
)

// Memory: every room the node has seen costs a fixed overhead plus its window. The room
// windows of a node share one byte budget (Config.WindowBytes) besides the per-room cap
// (Config.Window), and rooms leave memory again:
//
//   - A room nobody subscribes to is evicted (dropped entirely) once it has had no publish
//     and no subscribe for Config.RoomIdle (Run sweeps), or earlier, least recently used
//     first, when the windows reach the budget. The rooms are kept in a list ordered by
//     their last publish or subscribe (moved under Hub.mu, which every publish takes for
//     the room lookup anyway): an eviction pass walks it from the least recently used end.
//   - When the budget is reached and the rooms with subscribers alone exceed it, their
//     windows are trimmed, oldest frames first: the floor rises, and resumes below it are
//     served from the backlog (JetStream, MongoDB), as any resume older than the window.
//   - When even that does not bring the windows under the budget (every frame is gone and
//     what is left is the fixed cost of rooms with subscribers), a subscribe that would
//     create a room is refused with the error frame "too many rooms on this server"; a
//     publish still creates its room (it has no subscribers, so the next pass evicts it).
//
// A pass runs when a publish or a new room takes the total over the budget, and frees
// down to 7/8 of it, so passes are amortized over budget/8 bytes of publishes. If a pass
// cannot get there, the next one waits until another budget/16 was added: the total stays
// within about budget + budget/16 even then, and a publish never walks the rooms each time.
//
// Evicting a room must not make resumes wrong. A room created again (by a publish or a
// subscribe) starts with floor = the highest seq any evicted room held (floorMark), not
// the node's start: every message of the room with a seq above its floor must be in its
// window, and everything the evicted instance held is at or below that mark. A message of
// the room above the mark cannot have been handed to the hub between the eviction and the
// creation (it would have created the room), so the new window holds every one above its
// floor. The duplicate filter may hand the new room a held message with a seq below the
// floor after its creation: room.add explains why that is harmless. A resume below the
// floor replays from the backlog up to the floor, then from the window: no gap, no
// duplicate, only slower. The mark is global (one number, not one per evicted room): after
// evictions, new rooms serve fewer resumes from memory, never wrong ones.
//
// Races: an eviction marks the room dead under its lock, taken with TryLock under Hub.mu
// (a room busy with a fan-out or a subscribe is in use: skipped), and only if it has no
// subscriber. Fanout and Subscribe look a room up, lock it, and look it up again if they
// find it dead, so nothing registers on, or is published to, a room no longer in the map.

// DefaultWindowBytes is the default budget of a node's room windows.
const DefaultWindowBytes = 64 << 20

// DefaultRoomIdle is how long a room without subscribers stays in memory after its last
// publish or subscribe: long enough that a client reconnecting after a network change
// resumes from memory, short enough that abandoned rooms leave within minutes.
const DefaultRoomIdle = 5 * time.Minute

var errTooManyRooms = errors.New("too many rooms on this server, try again later")

const (
	ptrSize     = 8
	frameStruct = 32 // a frame: seq and slice header
	// roomOverhead is a room's fixed cost besides its name and ring: the struct (with its
	// list links and time) and its map entry, rounded up. TestRoomBudgetBoundsHeap checks
	// the whole account against the live heap.
	roomOverhead = 384
)

// sizeClasses are the Go allocator's small object sizes: a frame's buffer costs the class
// it falls in, not its length.
var sizeClasses = []int{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768}

func allocSize(n int) int64 {
	if n > sizeClasses[len(sizeClasses)-1] {
		return int64((n + 8191) &^ 8191)
	}
	return int64(sizeClasses[sort.SearchInts(sizeClasses, n)])
}

// frameCost is what a frame held in a window costs the heap: its buffer (the header space
// Frame may leave unused in front included) and the frame itself.
func frameCost(f *frame) int64 { return allocSize(cap(f.raw)+transport.MaxFrameHeader) + frameStruct }

func (c Config) windowBytes() int64 {
	if c.WindowBytes <= 0 {
		return DefaultWindowBytes
	}
	return c.WindowBytes
}

func (c Config) roomIdle() time.Duration {
	switch {
	case c.RoomIdle == 0:
		return DefaultRoomIdle
	case c.RoomIdle < 0:
		return 0
	}
	return c.RoomIdle
}

func (h *Hub) registerBudgetMetrics(reg prometheus.Registerer) {
	h.metrics.roomEvictions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_pusher_room_evictions_total",
		Help: "Rooms dropped from memory, by reason (idle: no publish or subscribe for CHAT_ROOM_IDLE; budget: CHAT_WINDOW_BYTES reached)."},
		[]string{"reason"})
	if reg == nil {
		return
	}
	reg.MustRegister(h.metrics.roomEvictions,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chat_pusher_rooms", Help: "Rooms held in memory."},
			func() float64 { return float64(h.Rooms()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chat_pusher_window_bytes",
			Help: "Bytes the rooms and their windows cost, counted against CHAT_WINDOW_BYTES."},
			func() float64 { return float64(h.used.Load()) }))
}

// Rooms is the number of rooms held in memory.
func (h *Hub) Rooms() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.rooms)
}

// WindowBytes is what the rooms and their windows cost, as counted against the budget.
func (h *Hub) WindowBytes() int64 { return h.used.Load() }

// room returns the live room name, created if needed, and marks it used at now. A
// subscribe (sub) does not create a room while the windows are over budget after an
// eviction pass (errTooManyRooms).
func (h *Hub) room(name string, now time.Time, sub bool) (*room, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.rooms[name]
	if !ok {
		if sub && h.used.Load() > h.budget {
			h.evictLocked()
			if h.used.Load() > h.budget {
				return nil, errTooManyRooms
			}
		}
		r = newRoom(name, h.floorMark, h.cfg.Window)
		h.rooms[name] = r
		h.peakRooms = max(h.peakRooms, len(h.rooms))
		h.used.Add(r.bytes)
		h.pushFrontLocked(r)
	} else if h.front != r {
		h.unlinkLocked(r)
		h.pushFrontLocked(r)
	}
	r.touched = now
	return r, nil
}

// lockRoom returns room name locked, live (not evicted).
func (h *Hub) lockRoom(name string, now time.Time, sub bool) (*room, error) {
	for {
		r, err := h.room(name, now, sub)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		if !r.dead {
			return r, nil
		}
		r.mu.Unlock()
	}
}

func (h *Hub) pushFrontLocked(r *room) {
	r.prev, r.next = nil, h.front
	if h.front != nil {
		h.front.prev = r
	}
	h.front = r
	if h.back == nil {
		h.back = r
	}
}

func (h *Hub) unlinkLocked(r *room) {
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		h.front = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	} else {
		h.back = r.prev
	}
	r.prev, r.next = nil, nil
}

// dropLocked evicts r. Caller holds Hub.mu and r.mu; r has no subscribers.
func (h *Hub) dropLocked(r *room, reason string) {
	r.dead = true
	h.floorMark = max(h.floorMark, r.last)
	h.used.Add(-r.bytes)
	r.bytes, r.ring = 0, nil
	delete(h.rooms, r.name)
	h.unlinkLocked(r)
	h.metrics.roomEvictions.WithLabelValues(reason).Inc()
}

// maybeEvict runs an eviction pass when the windows are over budget (see above for when).
func (h *Hub) maybeEvict() {
	if u := h.used.Load(); u <= h.budget || u < h.retryAt.Load() {
		return
	}
	h.mu.Lock()
	h.evictLocked()
	h.mu.Unlock()
}

// evictLocked brings the windows down to 7/8 of the budget: rooms without subscribers
// first, least recently used first; then the oldest frames of the rooms with subscribers.
// Caller holds Hub.mu.
func (h *Hub) evictLocked() {
	if h.used.Load() < h.retryAt.Load() {
		return
	}
	target := h.budget - h.budget/8
	// Rooms with subscribers that the walk passes go to the front (they are in use), so
	// the next pass does not walk over them again: n bounds the walk.
	r, n := h.back, len(h.rooms)
	for ; r != nil && n > 0 && h.used.Load() > target; n-- {
		prev := r.prev
		if r.mu.TryLock() {
			if len(r.subs) == 0 {
				h.dropLocked(r, "budget")
			} else {
				h.unlinkLocked(r)
				h.pushFrontLocked(r)
			}
			r.mu.Unlock()
		}
		r = prev
	}
	for r, n = h.back, len(h.rooms); r != nil && n > 0 && h.used.Load() > target; n-- {
		if r.mu.TryLock() {
			h.used.Add(-r.trim(h.used.Load() - target))
			r.mu.Unlock()
		}
		r = r.prev
	}
	h.retryAt.Store(0)
	if u := h.used.Load(); u > target {
		h.retryAt.Store(u + h.budget/16)
	}
	h.shrinkLocked()
}

// shrinkLocked rebuilds the room map once it holds a quarter of what it once did: a Go
// map keeps the memory of its largest size. Caller holds Hub.mu.
func (h *Hub) shrinkLocked() {
	if h.peakRooms < 1024 || len(h.rooms) > h.peakRooms/4 {
		return
	}
	m := make(map[string]*room, len(h.rooms))
	for k, v := range h.rooms {
		m[k] = v
	}
	h.rooms, h.peakRooms = m, len(m)
}

// Run evicts rooms without subscribers that have been idle for Config.RoomIdle, checking
// every quarter of it, until ctx ends.
func (h *Hub) Run(ctx context.Context) error {
	idle := h.cfg.roomIdle()
	if idle <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(max(idle/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			h.evictIdle(now.Add(-idle))
		}
	}
}

// evictIdle evicts the rooms without subscribers last used before cutoff, a batch at a
// time so that publishes are not held up behind a long sweep.
func (h *Hub) evictIdle(cutoff time.Time) {
	for more := true; more; {
		h.mu.Lock()
		r, n, changed := h.back, 0, false
		for ; r != nil && n < 1024 && r.touched.Before(cutoff); n++ {
			prev := r.prev
			if r.mu.TryLock() {
				changed = true
				if len(r.subs) == 0 {
					h.dropLocked(r, "idle")
				} else { // in use: idle again from now
					h.unlinkLocked(r)
					h.pushFrontLocked(r)
					r.touched = time.Now()
				}
				r.mu.Unlock()
			}
			r = prev
		}
		more = n == 1024 && changed
		h.shrinkLocked()
		h.mu.Unlock()
	}
}
