package main

import (
	"fmt"
	"slices"
)

// soakAck is a post the api acknowledged (201): its seq and id.
type soakAck struct {
	Seq uint64 `json:"seq"`
	ID  string `json:"id"`
}

// soakDelivery is one message frame a soak client read.
type soakDelivery struct {
	Seq  uint64
	ID   string
	Room string
}

// deliveryLog is what one client saw of one room, over all its connections (joins,
// leaves, resumes with since=<last seq seen>, reconnects after a close): the frames in
// arrival order. From is where it started: the since of its first join, or, for a join
// without since, the seq of its first subscribed frame. It must have received exactly
// the room's acknowledged messages with From < seq ≤ the room's last one, in seq order,
// once each.
type deliveryLog struct {
	Client     string
	Room       string
	From       uint64
	Deliveries []soakDelivery
}

// verdict counts what a check found; verdicts add up.
type verdict struct {
	Expected   int      `json:"expected"`
	Delivered  int      `json:"delivered"`
	Lost       int      `json:"lost"`
	Duplicated int      `json:"duplicated"`
	OutOfOrder int      `json:"out_of_order"`
	Foreign    int      `json:"foreign"`  // of another room, or a seq never acknowledged
	WrongID    int      `json:"wrong_id"` // a seq delivered with another id than acknowledged
	Details    []string `json:"details,omitempty"`
}

// maxDetails bounds the examples a verdict keeps.
const maxDetails = 20

func (v *verdict) bad() int { return v.Lost + v.Duplicated + v.OutOfOrder + v.Foreign + v.WrongID }

func (v *verdict) note(format string, args ...any) {
	if len(v.Details) < maxDetails {
		v.Details = append(v.Details, fmt.Sprintf(format, args...))
	}
}

func (v *verdict) add(o verdict) {
	v.Expected += o.Expected
	v.Delivered += o.Delivered
	v.Lost += o.Lost
	v.Duplicated += o.Duplicated
	v.OutOfOrder += o.OutOfOrder
	v.Foreign += o.Foreign
	v.WrongID += o.WrongID
	for _, d := range o.Details {
		v.note("%s", d)
	}
}

// checkLog compares a client's deliveries with the room's acknowledged messages (any
// order; the ones after log.From up to and including upTo are expected).
func checkLog(acks []soakAck, upTo uint64, log deliveryLog) verdict {
	var v verdict
	ids := make(map[uint64]string, len(acks))
	var want []uint64
	for _, a := range acks {
		ids[a.Seq] = a.ID
		if a.Seq > log.From && a.Seq <= upTo {
			want = append(want, a.Seq)
		}
	}
	slices.Sort(want)
	v.Expected = len(want)
	seen := make(map[uint64]bool, len(log.Deliveries))
	var last uint64
	for i, d := range log.Deliveries {
		v.Delivered++
		id, acked := ids[d.Seq]
		switch {
		case d.Room != log.Room:
			v.Foreign++
			v.note("%s: frame %d is seq %d of room %q, subscribed to %q", log.Client, i, d.Seq, d.Room, log.Room)
			continue
		case seen[d.Seq]:
			v.Duplicated++
			v.note("%s: seq %d delivered again (frame %d)", log.Client, d.Seq, i)
			continue
		case !acked || d.Seq <= log.From:
			v.Foreign++
			v.note("%s: seq %d (frame %d) was never acknowledged in %s after %d", log.Client, d.Seq, i, log.Room, log.From)
			continue
		case d.Seq < last:
			v.OutOfOrder++
			v.note("%s: seq %d after seq %d (frame %d)", log.Client, d.Seq, last, i)
		}
		if id != d.ID {
			v.WrongID++
			v.note("%s: seq %d delivered with id %q, acknowledged as %q", log.Client, d.Seq, d.ID, id)
		}
		seen[d.Seq] = true
		last = max(last, d.Seq)
	}
	for _, seq := range want {
		if !seen[seq] {
			v.Lost++
			v.note("%s: never received seq %d (%s) of %s (from %d)", log.Client, seq, ids[seq], log.Room, log.From)
		}
	}
	return v
}
