package presence

import (
	"sync"
	"time"
)

// Registry is the rooms of the other nodes, as their updates tell: per node and room the
// counts and when they were last refreshed. Safe for concurrent use.
type Registry struct {
	timeout time.Duration

	mu    sync.Mutex
	nodes map[string]map[string]*entry // node → room → counts
}

type entry struct {
	Counts
	seen time.Time
}

// NewRegistry forgets a node's room timeout after its last update of it (a full update
// refreshes every room it lists).
func NewRegistry(timeout time.Duration) *Registry {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Registry{timeout: timeout, nodes: make(map[string]map[string]*entry)}
}

// Apply records u, received at now, and returns the rooms whose counts changed.
func (r *Registry) Apply(u *Update, now time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	rooms := r.nodes[u.Node]
	if u.Bye {
		delete(r.nodes, u.Node)
		return keys(rooms)
	}
	if rooms == nil {
		rooms = make(map[string]*entry, len(u.Rooms))
		r.nodes[u.Node] = rooms
	}
	var changed []string
	for name, c := range u.Rooms {
		e := rooms[name]
		if e == nil {
			e = &entry{}
		}
		before := e.Counts.Clone()
		if u.Full {
			e.Counts = c.Clone()
		} else {
			e.Anonymous = c.Anonymous
			for m, k := range c.Members {
				if k > 0 {
					if e.Members == nil {
						e.Members = make(map[string]int)
					}
					e.Members[m] = k
				} else {
					delete(e.Members, m)
				}
			}
		}
		e.seen = now
		if e.Empty() {
			delete(rooms, name)
		} else {
			rooms[name] = e
		}
		if !equal(&before, &e.Counts) {
			changed = append(changed, name)
		}
	}
	if len(rooms) == 0 {
		delete(r.nodes, u.Node)
	}
	return changed
}

// Expire forgets the rooms not refreshed within the timeout before now and returns them.
func (r *Registry) Expire(now time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var gone []string
	for node, rooms := range r.nodes {
		for name, e := range rooms {
			if now.Sub(e.seen) > r.timeout {
				delete(rooms, name)
				gone = append(gone, name)
			}
		}
		if len(rooms) == 0 {
			delete(r.nodes, node)
		}
	}
	return gone
}

// AddTo adds every node's counts of room to c.
func (r *Registry) AddTo(room string, c *Counts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rooms := range r.nodes {
		if e := rooms[room]; e != nil {
			c.Add(&e.Counts)
		}
	}
}

// Online is the number of connections to room on every node.
func (r *Registry) Online(room string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rooms := range r.nodes {
		if e := rooms[room]; e != nil {
			n += e.Online()
		}
	}
	return n
}

// Nodes is the number of nodes with at least one room.
func (r *Registry) Nodes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.nodes)
}

func equal(a, b *Counts) bool {
	if a.Anonymous != b.Anonymous || len(a.Members) != len(b.Members) {
		return false
	}
	for m, k := range a.Members {
		if b.Members[m] != k {
			return false
		}
	}
	return true
}

func keys(m map[string]*entry) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
