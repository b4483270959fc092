// Package presence is who is connected to which room, across every pusher (issue 12).
// Each pusher (a node) tells the others over core NATS (never JetStream, never MongoDB)
// how many connections each of its rooms has, named and anonymous: an Update with the
// changed rooms when they change, and every heartbeat interval a full Update of all its
// rooms. A View (view.go) listens to them and sums the nodes' rooms in a Registry
// (registry.go); a node's room not refreshed within the timeout is dropped, so the members
// of a pusher that died leave everyone's presence within the timeout, and a lost update
// heals with the next heartbeat. The pusher adds its own connections to what its View
// knows of the others; the api answers GET /rooms/{room}/presence and the online counts of
// GET /rooms from its View.
//
// Typing notices (Typing) travel on the same subjects and are forwarded, never stored.
package presence

import (
	"cmp"
	"slices"
	"time"
)

// NATS subjects. A node publishes its updates on StateSubject + "." + its id and typing
// notices on TypingSubject + "." + room; a View subscribes to Wildcard once. A new View
// asks every node for a full update on SyncSubject.
const (
	Prefix        = "chat.presence"
	Wildcard      = Prefix + ".>"
	StateSubject  = Prefix + ".state"
	TypingSubject = Prefix + ".typing"
	SyncSubject   = Prefix + ".sync"
)

// Defaults of the heartbeat (how often a node sends its full state) and the timeout (how
// long a node's room is believed without news): two heartbeats may be lost, and a dead
// node's members are gone 10 s after its last update (the issue asks for 15 s).
const (
	DefaultHeartbeat = 3 * time.Second
	DefaultTimeout   = 10 * time.Second
)

// Counts are one room's connections on one node (or summed): named members with their
// connection counts, and anonymous connections.
type Counts struct {
	Anonymous int            `json:"anon,omitempty"`
	Members   map[string]int `json:"members,omitempty"`
}

// Online is the number of connections: anonymous and named.
func (c *Counts) Online() int {
	n := c.Anonymous
	for _, k := range c.Members {
		n += k
	}
	return n
}

// Empty reports whether the room has no connection.
func (c *Counts) Empty() bool { return c.Online() == 0 }

// Add adds o's counts to c.
func (c *Counts) Add(o *Counts) {
	c.Anonymous += o.Anonymous
	for name, k := range o.Members {
		if k <= 0 {
			continue
		}
		if c.Members == nil {
			c.Members = make(map[string]int, len(o.Members))
		}
		c.Members[name] += k
	}
}

// Clone is a copy of c.
func (c *Counts) Clone() Counts {
	out := Counts{Anonymous: c.Anonymous}
	if len(c.Members) > 0 {
		out.Members = make(map[string]int, len(c.Members))
		for name, k := range c.Members {
			if k > 0 {
				out.Members[name] = k
			}
		}
	}
	return out
}

// Member is a named member of a room and its connection count (0 in a leave: gone).
type Member struct {
	Name        string `json:"name"`
	Connections int    `json:"connections"`
}

// Sorted is c's members sorted by name.
func (c *Counts) Sorted() []Member {
	out := make([]Member, 0, len(c.Members))
	for name, k := range c.Members {
		if k > 0 {
			out = append(out, Member{Name: name, Connections: k})
		}
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Update is what a node publishes. Full: Rooms holds rooms of the node with their whole
// counts (a heartbeat; a node with many rooms sends several). Otherwise Rooms holds the
// changed rooms: Anonymous is the room's new anonymous count on the node, and Members the
// new connection counts of the members that changed (0: gone). A room whose counts are
// all zero is gone from the node. Bye: the node stops; forget it.
type Update struct {
	Node  string            `json:"node"`
	Full  bool              `json:"full,omitempty"`
	Bye   bool              `json:"bye,omitempty"`
	Rooms map[string]Counts `json:"rooms,omitempty"`
}

// Typing is a typing notice: Name typed in Room on Node.
type Typing struct {
	Node string `json:"node"`
	Room string `json:"room"`
	Name string `json:"name"`
}
