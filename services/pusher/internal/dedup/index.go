package dedup

import (
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// entryOverhead approximates what one indexed id costs besides its bytes: its map slot
// (string header, seq, bucket share) and its place in the eviction queue.
const entryOverhead = 96

// index maps the explicit ids the node's feed handled recently to the lowest seq seen,
// bounded in bytes; oldest first out. Its horizon is the local time before which an
// explicit id may have been handled (or stored, before the node started) without being
// indexed: every one handled after it is in the index.
type index struct {
	budget  int
	bytes   int
	seqs    map[string]uint64
	queue   []indexed // ring, oldest at head
	head    int
	n       int
	horizon time.Time
}

type indexed struct {
	id string
	at time.Time // when the feed handled it
}

func newIndex(budget int, start time.Time) *index {
	return &index{budget: budget, seqs: make(map[string]uint64), queue: make([]indexed, 1024), horizon: start}
}

func (x *index) get(id string) (uint64, bool) {
	seq, ok := x.seqs[id]
	return seq, ok
}

// put records id at seq (ids are put once, in feed order) and evicts the oldest ids
// beyond the budget, moving the horizon to the last one evicted.
func (x *index) put(id string, seq uint64, at time.Time) {
	x.seqs[id] = seq
	if x.n == len(x.queue) {
		grown := make([]indexed, 2*len(x.queue))
		for i := 0; i < x.n; i++ {
			grown[i] = x.queue[(x.head+i)%len(x.queue)]
		}
		x.queue, x.head = grown, 0
	}
	x.queue[(x.head+x.n)%len(x.queue)] = indexed{id: id, at: at}
	x.n++
	x.bytes += len(id) + entryOverhead
	for x.bytes > x.budget && x.n > 1 {
		old := x.queue[x.head]
		x.queue[x.head] = indexed{}
		x.head = (x.head + 1) % len(x.queue)
		x.n--
		x.bytes -= len(old.id) + entryOverhead
		delete(x.seqs, old.id)
		if old.at.After(x.horizon) {
			x.horizon = old.at
		}
	}
	// Shrink a mostly empty ring so a burst of short ids does not pin memory.
	if len(x.queue) > 1024 && x.n < len(x.queue)/4 {
		small := make([]indexed, len(x.queue)/2)
		for i := 0; i < x.n; i++ {
			small[i] = x.queue[(x.head+i)%len(x.queue)]
		}
		x.queue, x.head = small, 0
	}
}

// derived reports whether id has the shape of an id derived for a message published
// without one (chat.DeriveID: "js.<epoch>.<seq>") for this very seq. Such an id is
// unique by construction; only a copy published earlier with that id spelled out could
// collide, and that one is in the index (or older than the horizon).
func derived(id string, seq uint64) bool {
	if !strings.HasPrefix(id, "js.") {
		return false
	}
	i := strings.LastIndexByte(id, '.')
	var buf [20]byte
	return i > 2 && id[i+1:] == string(strconv.AppendUint(buf[:0], seq, 10))
}

// createdAt returns the creation time an id encodes: a ULID's 48-bit millisecond time.
func createdAt(id string) (time.Time, bool) {
	if len(id) != ulid.EncodedSize {
		return time.Time{}, false
	}
	u, err := ulid.ParseStrict(id)
	if err != nil {
		return time.Time{}, false
	}
	return ulid.Time(u.Time()), true
}
