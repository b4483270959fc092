package topology_test

// A scenario runs posters that retry with the same Idempotency-Key until acknowledged
// and websocket subscribers that resume with since=<last seq> (faultload.Load and
// faultload.Subscriber, all through nginx) on rooms of its own while a fault is injected
// and healed, then checks exact counts: every acknowledged message is in MongoDB once
// and in the CHAT stream once, and every subscriber saw every message of its room once,
// in seq order. Rows and recovery times go to the summary TestMain prints.

import (
	"context"
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
	"github.com/chatrt/chat/harness/chattest/faultload"
	"github.com/chatrt/chat/pkg/chat"
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
	load     *faultload.Load
	subs     []*faultload.Subscriber
	recovery []string
	notes    []string
}

// newScenario prepares posters and subs subscribers (alternating over two rooms named
// after key) through nginx; call start to begin posting.
func newScenario(t *testing.T, e *env, fault, key string, subs int) *scenario {
	sc := &scenario{t: t, env: e, fault: fault, rooms: []string{key + "-a", key + "-b"}}
	nginx := func() string { return e.topo.URL }
	sc.load = faultload.NewLoad(t, faultload.LoadOptions{URL: nginx,
		Retry: []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}})
	for i := range subs {
		sc.subs = append(sc.subs, faultload.StartSubscriber(t, fmt.Sprintf("%s-s%d", key, i), sc.rooms[i%2], nginx))
	}
	return sc
}

func (sc *scenario) start() { sc.load.Start(sc.rooms, 15*time.Millisecond) }

func (sc *scenario) recovered(format string, args ...any) {
	sc.recovery = append(sc.recovery, fmt.Sprintf(format, args...))
}

func (sc *scenario) note(format string, args ...any) {
	sc.notes = append(sc.notes, fmt.Sprintf(format, args...))
}

// finish stops the posters, posts a sentinel per room, waits for MongoDB and every
// subscriber to have everything and checks the exact counts (faultload.Finish), then
// that the CHAT stream holds each acknowledged message once.
func (sc *scenario) finish() {
	t := sc.t
	t.Helper()
	res := faultload.Finish(t, sc.env.store, sc.load, sc.rooms, sc.subs)
	row := summaryRow{fault: sc.fault, acked: res.Acked, stored: res.Stored, delivered: res.Delivered,
		lost: res.Lost, duplicated: res.Duplicated}
	var reconnects, closes []string
	rejected := map[int]int{}
	for _, s := range sc.subs {
		if n := s.Connects() - 1; n > 0 {
			reconnects = append(reconnects, fmt.Sprint(n))
		}
		for _, e := range s.Ends() {
			closes = append(closes, fmt.Sprint(e.Code))
		}
		for code, n := range s.Rejected() {
			rejected[code] += n
		}
	}
	// The CHAT stream holds each acknowledged message once: no retry was published twice.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := sc.env.js.Stream(ctx, chat.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	for _, room := range sc.rooms {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(chat.Subject(room)))
		if err != nil {
			t.Fatal(err)
		}
		if got := info.State.Subjects[chat.Subject(room)]; got != uint64(res.PerRoom[room]) {
			t.Errorf("CHAT stream holds %d messages of room %s, want the %d acknowledged", got, room, res.PerRoom[room])
		}
	}
	if f := sc.load.Failures(); f != "" {
		sc.note("post retries: %s, longest %v", f, sc.load.LongestRetry().Round(time.Millisecond))
	}
	sc.note("longest ack pause %v", sc.load.LongestPause().Round(time.Millisecond))
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
