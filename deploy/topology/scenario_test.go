package topology_test

// A scenario runs posters and subscribers (clients_test.go) on rooms of its own while a
// fault is injected and healed, then checks exact counts: every acknowledged message is
// in MongoDB once and in the CHAT stream once, and every subscriber saw every message of
// its room once, in seq order. Rows and recovery times go to the summary TestMain prints.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/chatrt/chat/deploy/topology"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/chattest"
	"github.com/chatrt/chat/pkg/history"
	"github.com/nats-io/nats.go/jetstream"
)

type summaryRow struct {
	fault                                      string
	acked, stored, delivered, lost, duplicated int
	recovery, notes                            string
}

var summary struct {
	sync.Mutex
	rows []summaryRow
}

func printSummary() {
	summary.Lock()
	defer summary.Unlock()
	if len(summary.rows) == 0 {
		return
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nTOPOLOGY FAULT SUMMARY (3 NATS R3, ferretdb, api x2, persister x2, pusher x3, nginx)")
	fmt.Fprintln(tw, "fault\tacked\tstored\tdelivered\tlost\tduplicated\trecovery\tnotes")
	for _, r := range summary.rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", r.fault, r.acked, r.stored, r.delivered, r.lost, r.duplicated, r.recovery, r.notes)
	}
	_ = tw.Flush()
}

// env is what every scenario shares: the running topology and clients of its NATS and
// MongoDB for the checks.
type env struct {
	topo  *topology.Topology
	js    jetstream.JetStream
	store *history.Store
}

type scenario struct {
	t        *testing.T
	env      *env
	fault    string
	rooms    []string
	load     *load
	subs     []*subscriber
	recovery []string
	notes    []string
}

// newScenario prepares posters and subs subscribers (alternating over two rooms named
// after key) through nginx; call start to begin posting.
func newScenario(t *testing.T, e *env, fault, key string, subs int) *scenario {
	sc := &scenario{t: t, env: e, fault: fault, rooms: []string{key + "-a", key + "-b"}}
	sc.load = newLoad(t, e.topo.URL, key)
	for i := range subs {
		sc.subs = append(sc.subs, startSubscriber(t, e.topo.URL, fmt.Sprintf("%s-s%d", key, i), sc.rooms[i%2]))
	}
	return sc
}

func (sc *scenario) start() { sc.load.start(sc.rooms, 15*time.Millisecond) }

func (sc *scenario) recovered(format string, args ...any) {
	sc.recovery = append(sc.recovery, fmt.Sprintf(format, args...))
}

func (sc *scenario) note(format string, args ...any) {
	sc.notes = append(sc.notes, fmt.Sprintf(format, args...))
}

// readRoom pages through a room in MongoDB.
func (sc *scenario) readRoom(ctx context.Context, room string) ([]chat.Message, error) {
	var out []chat.Message
	var after uint64
	for range 1000 {
		page, err := sc.env.store.After(ctx, room, after, 200)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < 200 {
			return out, nil
		}
		after = page[len(page)-1].Seq
	}
	return nil, errors.New("too many pages")
}

// finish stops the posters, posts a sentinel per room (a duplicate push would arrive
// before it), waits for MongoDB and every subscriber to have everything and checks the
// exact counts.
func (sc *scenario) finish() {
	t := sc.t
	t.Helper()
	sc.load.halt()
	sentinel := map[string]uint64{}
	for _, room := range sc.rooms {
		a, ok := sc.load.post(room, room+"-end")
		if !ok {
			t.FailNow()
		}
		sentinel[room] = a.seq
	}
	acks := sc.load.snapshot()
	perRoom := map[string]int{}
	for _, a := range acks {
		perRoom[a.room]++
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	chattest.Eventually(t, 20*time.Second, func() bool {
		for _, room := range sc.rooms {
			n, err := sc.env.store.Count(ctx, room)
			if err != nil || int(n) < perRoom[room] {
				return false
			}
		}
		return true
	}, "MongoDB does not hold every acknowledged message")
	stored := map[string][]chat.Message{}
	for _, room := range sc.rooms {
		msgs, err := sc.readRoom(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		stored[room] = msgs
	}
	for _, s := range sc.subs {
		want := sentinel[s.room]
		chattest.Eventually(t, 20*time.Second, func() bool { return s.lastSeq() >= want },
			"%s saw up to seq %d, want %d", s.name, s.lastSeq(), want)
	}
	for _, s := range sc.subs {
		s.close()
	}

	row := summaryRow{fault: sc.fault, acked: len(acks)}
	bySeq := map[uint64]chat.Message{}
	ids := map[string]int{}
	for _, room := range sc.rooms {
		for _, m := range stored[room] {
			row.stored++
			if _, dup := bySeq[m.Seq]; dup {
				row.duplicated++
				t.Errorf("seq %d stored twice", m.Seq)
			}
			bySeq[m.Seq] = m
			ids[m.Message]++
		}
	}
	for text, n := range ids {
		if n > 1 {
			row.duplicated += n - 1
			t.Errorf("message %q stored %d times", text, n)
		}
	}
	ackedSeq := map[uint64]bool{}
	for _, a := range acks {
		ackedSeq[a.seq] = true
		m, ok := bySeq[a.seq]
		switch {
		case !ok:
			row.lost++
			t.Errorf("acknowledged %s (seq %d) is not in MongoDB", a.id, a.seq)
		case m.ID != a.id || m.Room != a.room || m.Message != a.id:
			t.Errorf("seq %d: stored %+v, acknowledged %+v", a.seq, m, a)
		}
	}
	for seq, m := range bySeq {
		if !ackedSeq[seq] {
			row.duplicated++
			t.Errorf("stored but never acknowledged: seq %d %q", seq, m.Message)
		}
	}
	var reconnects, closes []string
	rejected := map[int]int{}
	for _, s := range sc.subs {
		s.mu.Lock()
		row.delivered += len(s.seqs) + s.dups
		row.duplicated += s.dups
		if s.dups > 0 || s.disorder > 0 || s.wrongRoom > 0 {
			t.Errorf("%s: %d duplicates %v, %d out of order, %d of another room", s.name, s.dups, s.dupInfo, s.disorder, s.wrongRoom)
		}
		for _, m := range stored[s.room] {
			if id, ok := s.ids[m.Seq]; !ok {
				row.lost++
				t.Errorf("%s: never received seq %d (%s)", s.name, m.Seq, m.Message)
			} else if id != m.ID {
				t.Errorf("%s: seq %d pushed with id %q, stored with %q", s.name, m.Seq, id, m.ID)
			}
		}
		if len(s.seqs) != len(stored[s.room]) {
			t.Errorf("%s: received %d messages, room %s has %d", s.name, len(s.seqs), s.room, len(stored[s.room]))
		}
		if n := len(s.connects) - 1; n > 0 {
			reconnects = append(reconnects, fmt.Sprint(n))
		}
		for _, e := range s.ends {
			closes = append(closes, fmt.Sprint(e.code))
		}
		for code, n := range s.rejected {
			rejected[code] += n
		}
		s.mu.Unlock()
	}
	// The CHAT stream holds each acknowledged message once: no retry was published twice.
	st, err := sc.env.js.Stream(ctx, chat.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	for _, room := range sc.rooms {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(chat.Subject(room)))
		if err != nil {
			t.Fatal(err)
		}
		if got := info.State.Subjects[chat.Subject(room)]; got != uint64(perRoom[room]) {
			t.Errorf("CHAT stream holds %d messages of room %s, want the %d acknowledged", got, room, perRoom[room])
		}
	}
	if f := sc.load.failures(); f != "" {
		sc.note("post retries: %s, longest %v", f, sc.load.longestRetry.Round(time.Millisecond))
	}
	sc.note("longest ack pause %v", sc.load.longestPause.Round(time.Millisecond))
	if len(reconnects) > 0 {
		sc.note("reconnects %d subs", len(reconnects))
	}
	if len(closes) > 0 {
		sc.note("socket ends %s", countCodes(closes))
	}
	if len(rejected) > 0 {
		sc.note("upgrades refused %v", rejected)
	}
	row.recovery = strings.Join(sc.recovery, "; ")
	row.notes = strings.Join(sc.notes, "; ")
	t.Logf("%s: acked=%d stored=%d delivered=%d lost=%d duplicated=%d | %s | %s",
		row.fault, row.acked, row.stored, row.delivered, row.lost, row.duplicated, row.recovery, row.notes)
	summary.Lock()
	summary.rows = append(summary.rows, row)
	summary.Unlock()
}

// countCodes is "1012x4 1006x2".
func countCodes(codes []string) string {
	n := map[string]int{}
	var order []string
	for _, c := range codes {
		if n[c] == 0 {
			order = append(order, c)
		}
		n[c]++
	}
	var out []string
	for _, c := range order {
		out = append(out, fmt.Sprintf("%sx%d", c, n[c]))
	}
	return strings.Join(out, " ")
}

// get GETs url; status 0 with the error when there is no answer.
func get(url string) (int, string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}
