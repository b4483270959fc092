package presence

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func summary(r *Registry, room string) string {
	var c Counts
	r.AddTo(room, &c)
	return fmt.Sprintf("%d/%d %v", c.Online(), c.Anonymous, c.Sorted())
}

// Updates sum over nodes; a change sets absolute counts (so a repeated one is harmless);
// a full update replaces a room; rooms expire per node; bye forgets a node.
func TestRegistry(t *testing.T) {
	r := NewRegistry(time.Second)
	t0 := time.Now()
	apply := func(u Update, at time.Duration) []string {
		ch := r.Apply(&u, t0.Add(at))
		slices.Sort(ch)
		return ch
	}
	if ch := apply(Update{Node: "a", Full: true, Rooms: map[string]Counts{"x": {Anonymous: 2, Members: map[string]int{"Ann": 1}}, "y": {Anonymous: 1}}}, 0); fmt.Sprint(ch) != "[x y]" {
		t.Fatalf("changed %v", ch)
	}
	apply(Update{Node: "b", Rooms: map[string]Counts{"x": {Members: map[string]int{"Ann": 2, "Bob": 1}}}}, 0)
	if got := summary(r, "x"); got != "6/2 [{Ann 3} {Bob 1}]" {
		t.Fatalf("x = %s", got)
	}
	// The same change again changes nothing.
	if ch := apply(Update{Node: "b", Rooms: map[string]Counts{"x": {Members: map[string]int{"Ann": 2}}}}, 0); len(ch) != 0 {
		t.Fatalf("a repeated change reported %v", ch)
	}
	// Bob leaves b; a full update of a replaces x (Ann gone there).
	apply(Update{Node: "b", Rooms: map[string]Counts{"x": {Members: map[string]int{"Bob": 0}}}}, 500*time.Millisecond)
	apply(Update{Node: "a", Full: true, Rooms: map[string]Counts{"x": {Anonymous: 1}}}, 900*time.Millisecond)
	if got := summary(r, "x"); got != "3/1 [{Ann 2}]" {
		t.Fatalf("x = %s", got)
	}
	if r.Online("y") != 1 {
		t.Fatalf("y online %d", r.Online("y"))
	}
	// At 1.6 s: y of a (seen at 0) expired, x of b (seen at 0.5) too; x of a (0.9) stays.
	if gone := r.Expire(t0.Add(1600 * time.Millisecond)); len(gone) != 2 {
		t.Fatalf("expired %v", gone)
	}
	if got := summary(r, "x"); got != "1/1 []" || r.Online("y") != 0 || r.Nodes() != 1 {
		t.Fatalf("after expiry x = %s, y %d, nodes %d", got, r.Online("y"), r.Nodes())
	}
	if ch := apply(Update{Node: "a", Bye: true}, 2*time.Second); fmt.Sprint(ch) != "[x]" || r.Nodes() != 0 {
		t.Fatalf("bye changed %v, nodes %d", ch, r.Nodes())
	}
	// A change emptying a room removes it.
	apply(Update{Node: "c", Rooms: map[string]Counts{"z": {Anonymous: 1}}}, 0)
	apply(Update{Node: "c", Rooms: map[string]Counts{"z": {}}}, 0)
	if r.Nodes() != 0 {
		t.Fatalf("empty room kept: %d nodes", r.Nodes())
	}
}
