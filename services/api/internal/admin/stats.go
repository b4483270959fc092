package admin

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/ops"
	"github.com/nats-io/nats.go/jetstream"
)

// statsBody is GET /admin/api/stats.
type statsBody struct {
	At time.Time `json:"at"`
	// Nodes: every node that answered chat.ops.stats within the wait.
	Nodes      []ops.Stats   `json:"nodes"`
	BadReplies int           `json:"bad_replies"`
	Stream     *streamStats  `json:"stream"`     // CHAT; null when unavailable (see errors)
	DeadLetter *streamStats  `json:"deadletter"` // DEADLETTER
	Consumer   *consumerInfo `json:"consumer"`   // the persisters' durable consumer
	// Rooms: the busiest rooms over all pushers (subscribers summed, messages per
	// second the highest any pusher measured: each pusher sees all of a room's messages).
	Rooms  []ops.RoomStats `json:"rooms"`
	Errors []string        `json:"errors"`
}

type streamStats struct {
	Name      string    `json:"name"`
	Messages  uint64    `json:"messages"`
	Bytes     uint64    `json:"bytes"`
	FirstSeq  uint64    `json:"first_seq"`
	LastSeq   uint64    `json:"last_seq"`
	FirstTime time.Time `json:"first_time"`
	LastTime  time.Time `json:"last_time"`
	// Created is the stream's creation time: the epoch (chat.EpochID, sent in the
	// pushers' subscribed frames, and the base of derived ids) names it.
	Created time.Time    `json:"created"`
	Epoch   string       `json:"epoch"`
	Cluster *clusterInfo `json:"cluster,omitempty"`
}

// clusterInfo: the NATS servers holding the stream (leader and replicas).
type clusterInfo struct {
	Name     string        `json:"name"`
	Leader   string        `json:"leader"`
	Replicas []replicaInfo `json:"replicas"`
}

type replicaInfo struct {
	Name          string  `json:"name"`
	Current       bool    `json:"current"`
	Offline       bool    `json:"offline"`
	Lag           uint64  `json:"lag"`
	ActiveSeconds float64 `json:"active_seconds"`
}

type consumerInfo struct {
	Name string `json:"name"`
	// Pending: messages not yet delivered; AckPending: delivered, not yet acked
	// (stored); Behind: the stream's last seq minus the ack floor.
	Pending     uint64 `json:"pending"`
	AckPending  int    `json:"ack_pending"`
	Redelivered int    `json:"redelivered"`
	Waiting     int    `json:"waiting"`
	AckFloor    uint64 `json:"ack_floor"`
	Delivered   uint64 `json:"delivered"`
	Behind      uint64 `json:"behind"`
}

// busiestRooms is how many rooms the stats list.
const busiestRooms = 20

func (h *Handler) stats(w http.ResponseWriter, r *http.Request) {
	body := statsBody{Errors: []string{}, Nodes: []ops.Stats{}}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		chatInfo *jetstream.StreamInfo
	)
	fail := func(what string, err error) {
		mu.Lock()
		body.Errors = append(body.Errors, what+": "+err.Error())
		mu.Unlock()
	}
	wg.Go(func() {
		nodes, bad, err := ops.Gather(r.Context(), h.o.NATS, h.o.StatsWait)
		if err != nil {
			fail("nodes", err)
		}
		mu.Lock()
		body.Nodes = append(body.Nodes, nodes...)
		body.BadReplies = bad
		mu.Unlock()
	})
	wg.Go(func() {
		ctx, cancel := h.jsContext(r)
		defer cancel()
		info, err := streamInfo(ctx, h.js, chat.StreamName)
		if err != nil {
			fail("stream "+chat.StreamName, err)
			return
		}
		chatInfo = info
		ci, err := h.js.Consumer(ctx, chat.StreamName, chat.PersisterConsumer)
		if err == nil {
			var c *jetstream.ConsumerInfo
			if c, err = ci.Info(ctx); err == nil {
				mu.Lock()
				body.Consumer = &consumerInfo{Name: c.Name, Pending: c.NumPending, AckPending: c.NumAckPending,
					Redelivered: c.NumRedelivered, Waiting: c.NumWaiting, AckFloor: c.AckFloor.Stream,
					Delivered: c.Delivered.Stream}
				mu.Unlock()
			}
		}
		if err != nil {
			fail("consumer "+chat.PersisterConsumer, err)
		}
	})
	wg.Go(func() {
		ctx, cancel := h.jsContext(r)
		defer cancel()
		info, err := streamInfo(ctx, h.js, chat.DeadLetterStream)
		if err != nil {
			fail("stream "+chat.DeadLetterStream, err)
			return
		}
		mu.Lock()
		body.DeadLetter = toStreamStats(info)
		mu.Unlock()
	})
	wg.Wait()
	if chatInfo != nil {
		body.Stream = toStreamStats(chatInfo)
		if c := body.Consumer; c != nil && body.Stream.LastSeq > c.AckFloor {
			c.Behind = body.Stream.LastSeq - c.AckFloor
		}
	}
	body.Rooms = mergeRooms(body.Nodes)
	body.At = time.Now().UTC()
	writeJSON(w, http.StatusOK, body)
}

func streamInfo(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.Info(ctx)
}

func toStreamStats(info *jetstream.StreamInfo) *streamStats {
	st := info.State
	s := &streamStats{Name: info.Config.Name, Messages: st.Msgs, Bytes: st.Bytes, FirstSeq: st.FirstSeq,
		LastSeq: st.LastSeq, FirstTime: st.FirstTime, LastTime: st.LastTime, Created: info.Created.UTC(),
		Epoch: chat.EpochID(info.Created)}
	if c := info.Cluster; c != nil {
		ci := &clusterInfo{Name: c.Name, Leader: c.Leader, Replicas: []replicaInfo{}}
		for _, p := range c.Replicas {
			if p != nil {
				ci.Replicas = append(ci.Replicas, replicaInfo{Name: p.Name, Current: p.Current, Offline: p.Offline,
					Lag: p.Lag, ActiveSeconds: p.Active.Seconds()})
			}
		}
		s.Cluster = ci
	}
	return s
}

// mergeRooms sums each room's subscribers over the pushers and keeps the highest rate
// any of them measured, busiest first (as the pushers rank them).
func mergeRooms(nodes []ops.Stats) []ops.RoomStats {
	byRoom := map[string]*ops.RoomStats{}
	for _, n := range nodes {
		for _, r := range n.Rooms {
			m, ok := byRoom[r.Room]
			if !ok {
				m = &ops.RoomStats{Room: r.Room}
				byRoom[r.Room] = m
			}
			m.Subscribers += r.Subscribers
			m.MessagesPerSecond = max(m.MessagesPerSecond, r.MessagesPerSecond)
		}
	}
	out := make([]ops.RoomStats, 0, len(byRoom))
	for _, r := range byRoom {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b ops.RoomStats) int {
		return cmp.Or(cmp.Compare(b.MessagesPerSecond*float64(b.Subscribers), a.MessagesPerSecond*float64(a.Subscribers)),
			cmp.Compare(b.Subscribers, a.Subscribers), cmp.Compare(b.MessagesPerSecond, a.MessagesPerSecond),
			cmp.Compare(a.Room, b.Room))
	})
	return out[:min(len(out), busiestRooms)]
}
