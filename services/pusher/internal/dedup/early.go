package dedup

import "time"

// earlyMax bounds the ids remembered for being made ahead of the clock.
const earlyMax = 4096

// early remembers ULIDs whose time was ahead of the node's clock (beyond the skew) when a
// copy was stored, until the index's horizon passes that time: only then would a later
// copy be decided by the index alone, which may have forgotten this one. When full it
// forgets the id made latest and distrusts every ULID made at or after that time until
// the horizon passes it (those then ask the store: slower, never wrong). So a flood of
// far-future ids costs store checks, not memory nor correctness.
type early struct {
	max      int
	ids      map[string]earlyID
	distrust time.Time // ULIDs made at or after it are not trusted (zero: none)
}

type earlyID struct {
	seq uint64
	t   time.Time
}

func (e *early) get(id string) (uint64, bool) {
	x, ok := e.ids[id]
	return x.seq, ok
}

// put remembers id; covered is horizon+skew (ULIDs made before it ask the store anyway).
func (e *early) put(id string, seq uint64, t, covered time.Time) {
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
		if e.distrust.IsZero() || lt.Before(e.distrust) {
			e.distrust = lt
		}
		return
	}
	e.ids[id] = earlyID{seq, t}
}

// trusts reports whether a ULID made at t (inside the coverage) may be decided by the
// index alone.
func (e *early) trusts(t, covered time.Time) bool {
	if !e.distrust.IsZero() && covered.After(e.distrust) {
		e.distrust = time.Time{} // the horizon passed it: the store decides those anyway
	}
	return e.distrust.IsZero() || t.Before(e.distrust)
}
