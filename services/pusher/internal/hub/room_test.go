package hub

import "testing"

// The room's subscriber slice stays consistent through removals in any position, double
// removals and removals of subscriptions that were never registered.
func TestRoomSubsAddRemove(t *testing.T) {
	r := newRoom("r", 0, 8)
	subs := make([]*sub, 6)
	for i := range subs {
		subs[i] = &sub{room: r, idx: -1}
		r.addSub(subs[i])
	}
	check := func(want ...int) {
		t.Helper()
		if len(r.subs) != len(want) {
			t.Fatalf("%d subs, want %d", len(r.subs), len(want))
		}
		in := map[*sub]bool{}
		for i, s := range r.subs {
			if s.idx != i {
				t.Fatalf("sub at %d has idx %d", i, s.idx)
			}
			in[s] = true
		}
		for _, w := range want {
			if !in[subs[w]] {
				t.Fatalf("sub %d missing", w)
			}
		}
	}
	r.removeSub(subs[2]) // middle
	check(0, 1, 3, 4, 5)
	r.removeSub(subs[0]) // first
	check(1, 3, 4, 5)
	r.removeSub(subs[0]) // again
	check(1, 3, 4, 5)
	last := r.subs[len(r.subs)-1]
	r.removeSub(last) // last
	r.removeSub(&sub{room: r, idx: -1})
	r.removeSub(&sub{room: r, idx: 1}) // a stranger claiming an index
	if len(r.subs) != 3 || last.idx != -1 {
		t.Fatalf("after removing the last: %d subs, its idx %d", len(r.subs), last.idx)
	}
}
