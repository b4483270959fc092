package hub

// RoomStat is a room held in memory, for the operations channel: its subscribers and the
// frames (messages and changes) it received since it was created on this node.
type RoomStat struct {
	Name        string
	Subscribers int
	Frames      uint64
}

// RoomStats lists the rooms held in memory, in no particular order.
func (h *Hub) RoomStats() []RoomStat {
	h.mu.Lock()
	rooms := make([]*room, 0, len(h.rooms))
	for _, r := range h.rooms {
		rooms = append(rooms, r)
	}
	h.mu.Unlock()
	out := make([]RoomStat, 0, len(rooms))
	for _, r := range rooms {
		r.mu.Lock()
		if !r.dead {
			out = append(out, RoomStat{Name: r.name, Subscribers: len(r.subs), Frames: r.added})
		}
		r.mu.Unlock()
	}
	return out
}
