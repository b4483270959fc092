package dedup

import "time"

// earlyMax bounds the ids remembered for being made ahead of the clock.
const earlyMax = 4096

// early remembers ULIDs whose time was ahead of the node's clock (beyond the skew) when a
// copy was stored, until the index's horizon passes that time: only then would a later
// copy be decided by the index alone, which may have forgotten this one. When full it
// forgets the id made latest, and ULIDs made within the span of the forgotten ones'
// times are not trusted until the horizon passes that whole span (they ask the store:
// slower, never wrong). So a flood of ids made ahead costs store checks, not memory
// nor correctness.
type early struct {
	max int
	ids map[string]earlyID
	// ULIDs made in [lo, hi] are not trusted (zero: none): the span of forgotten ones.
	lo, hi time.Time
}

type earlyID struct {
	seq uint64
	t   time.Time
}

func (e *early) get(id string) (uint64, bool) {
	x, ok := e.ids[id]
	return x.seq, ok
}

func (e *early) distrusted(t time.Time) bool {
	return !e.lo.IsZero() && !t.Before(e.lo) && !t.After(e.hi)
}

// put remembers id; covered is horizon+skew (ULIDs made before it ask the store anyway).
func (e *early) put(id string, seq uint64, t, covered time.Time) {
	if e.distrusted(t) {
		return // asks the store whenever it comes, until the horizon passes hi >= t
	}
	if e.ids == nil {
		e.ids = make(map[string]earlyID)
	}
	if len(e.ids) >= e.max {
		for k, x := range e.ids {
			if x.t.Before(covered) {
				delete(e.ids, k)
			}
		}
	}
	if len(e.ids) >= e.max {
		latest, lt := id, t
		for k, x := range e.ids {
			if x.t.After(lt) {
				latest, lt = k, x.t
			}
		}
		if latest != id {
			delete(e.ids, latest)
			e.ids[id] = earlyID{seq, t}
		}
		if e.lo.IsZero() {
			e.lo, e.hi = lt, lt
		}
		e.lo, e.hi = minTime(e.lo, lt), maxTime(e.hi, lt)
		return
	}
	e.ids[id] = earlyID{seq, t}
}

// trusts reports whether a ULID made at t (inside the coverage) may be decided by the
// index alone.
func (e *early) trusts(t, covered time.Time) bool {
	if !e.lo.IsZero() && covered.After(e.hi) {
		e.lo, e.hi = time.Time{}, time.Time{} // the horizon passed them: the store decides those anyway
	}
	return !e.distrusted(t)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
