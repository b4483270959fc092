package app

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/chatrt/chat/pkg/ops"
	"github.com/chatrt/chat/services/pusher/internal/hub"
)

// busiestRooms is how many rooms a pusher reports on the operations channel.
const busiestRooms = 20

// roomRates turns the hub's per-room frame counts into messages per second for the
// operations channel. Rates are measured between samples at least rateWindow apart, so
// any number of admin pages asking at any pace see the same numbers.
type roomRates struct {
	hub *hub.Hub

	mu    sync.Mutex
	at    time.Time         // when prev was sampled
	prev  map[string]uint64 // frames per room at that time
	rates []ops.RoomStats   // the busiest rooms, as of the last sample
}

const rateWindow = time.Second

// busiest returns the busiest rooms: by subscribers × messages per second (the frames
// the node writes for the room), then subscribers, then messages per second.
func (rr *roomRates) busiest() []ops.RoomStats {
	now := time.Now()
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if rr.prev != nil && now.Sub(rr.at) < rateWindow {
		return rr.rates
	}
	stats := rr.hub.RoomStats()
	next := make(map[string]uint64, len(stats))
	all := make([]ops.RoomStats, 0, len(stats))
	dt := now.Sub(rr.at).Seconds()
	for _, s := range stats {
		next[s.Name] = s.Frames
		rate := 0.0
		if p, ok := rr.prev[s.Name]; ok && s.Frames >= p && dt > 0 {
			rate = float64(s.Frames-p) / dt
		}
		all = append(all, ops.RoomStats{Room: s.Name, Subscribers: s.Subscribers, MessagesPerSecond: rate})
	}
	slices.SortFunc(all, func(a, b ops.RoomStats) int {
		return cmp.Or(cmp.Compare(b.MessagesPerSecond*float64(b.Subscribers), a.MessagesPerSecond*float64(a.Subscribers)),
			cmp.Compare(b.Subscribers, a.Subscribers), cmp.Compare(b.MessagesPerSecond, a.MessagesPerSecond),
			cmp.Compare(a.Room, b.Room))
	})
	rr.at, rr.prev, rr.rates = now, next, all[:min(len(all), busiestRooms)]
	return rr.rates
}
