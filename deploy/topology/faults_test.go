package topology_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatrt/chat/deploy/topology"
	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/harness/chattest/faultload"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"
)

// retryWindow bounds how long any one post may keep failing (502/503/network) while an
// api replica restarts.
const retryWindow = 5 * time.Second

func since(t time.Time) time.Duration { return time.Since(t).Round(10 * time.Millisecond) }

// unstored returns the acks whose messages are not stored (yet), each looked up by its id:
// FerretDB answers that from an index, and scans the whole collection for any query by
// room (seconds per poll under load once it holds thousands of messages, competing with
// the persisters' writes that the poll waits for).
func unstored(ctx context.Context, store *history.Store, acks []faultload.Ack) ([]faultload.Ack, error) {
	var out []faultload.Ack
	for _, a := range acks {
		if a.ID == "" {
			return nil, fmt.Errorf("ack of seq %d in %s has no id to look up", a.Seq, a.Room)
		}
		m, _, err := store.Get(ctx, a.Room, a.ID)
		switch {
		case errors.Is(err, history.ErrNotFound):
			out = append(out, a)
		case err != nil:
			return nil, err
		case m.Seq != a.Seq:
			return nil, fmt.Errorf("%s stored with seq %d, acknowledged with %d", a.ID, m.Seq, a.Seq)
		}
	}
	return out, nil
}

// highest is the highest acknowledged seq per room.
func highest(acks []faultload.Ack) map[string]uint64 {
	out := map[string]uint64{}
	for _, a := range acks {
		out[a.Room] = max(out[a.Room], a.Seq)
	}
	return out
}

// pusherKill: sockets spread over every pusher through nginx (no sticky sessions); one
// pusher is killed -9; its clients' sockets drop, they reconnect through nginx to the
// others with since=<last seq> and miss nothing.
func pusherKill(t *testing.T, e *env) {
	ctx := context.Background()
	sc := newScenario(t, e, "pusher kill -9", "pk", 9)
	var conns []int
	for _, p := range e.topo.Pushers {
		n := pusherConns(t, p)
		conns = append(conns, n)
		if n == 0 {
			t.Errorf("%s serves none of the %d sockets opened through nginx: %v", p.Name, len(sc.subs), conns)
		}
	}
	sc.note("sockets per pusher %v", conns)
	sc.start()
	sc.load.WaitMore(100, 20*time.Second)
	victim := e.topo.Pushers[0]
	n := pusherConns(t, victim)
	killAt := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	var affected []*faultload.Subscriber
	chattest.Eventually(t, 20*time.Second, func() bool {
		affected = affected[:0]
		for _, s := range sc.subs {
			if len(s.EndsSince(killAt)) > 0 {
				affected = append(affected, s)
			}
		}
		return len(affected) >= n
	}, "%d sockets ended after the kill, want the %d of %s", len(affected), n, victim.Name)
	var reconnected time.Duration
	for _, s := range affected {
		chattest.Eventually(t, 20*time.Second, func() bool { return !s.ConnectedSince(killAt).IsZero() },
			"%s did not reconnect", s.Name)
		reconnected = max(reconnected, s.ConnectedSince(killAt).Sub(killAt))
	}
	head := highest(sc.load.Snapshot())
	for _, s := range affected {
		chattest.Eventually(t, 20*time.Second, func() bool { return s.LastSeq() >= head[s.Room] },
			"%s did not catch up to seq %d", s.Name, head[s.Room])
	}
	sc.recovered("%d clients reconnected within %v, caught up %v after the kill", len(affected), reconnected.Round(10*time.Millisecond), since(killAt))
	if len(affected) != n {
		t.Errorf("%d sockets ended, but only %s (%d sockets) was killed", len(affected), victim.Name, n)
	}
	sc.load.WaitMore(100, 20*time.Second)
	restart := time.Now()
	if err := victim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	sc.recovered("%s restarted in %v", victim.Name, since(restart))
	sc.finish()
}

// natsKill: the CHAT stream's leader is killed -9. The other two elect a leader and the
// stream keeps accepting (posts retry 503 with the same key) and delivering; the node
// restarts on its store, rejoins and catches up.
func natsKill(t *testing.T, e *env) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sc := newScenario(t, e, "nats stream leader kill -9", "nk", 6)
	sc.start()
	sc.load.WaitMore(100, 20*time.Second)
	state, err := nodeStream(e.topo.NATS[0])
	if err != nil {
		t.Fatal(err)
	}
	leader := state.leader
	i := slices.IndexFunc(e.topo.NATS, func(p *topology.Process) bool { return p.Name == leader })
	if i < 0 {
		t.Fatalf("stream leader %q is not a topology node", leader)
	}
	victim := e.topo.NATS[i]
	killAt := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	survivor := e.topo.NATS[(i+1)%len(e.topo.NATS)]
	var newLeader string
	chattest.Eventually(t, 20*time.Second, func() bool {
		state, err := nodeStream(survivor)
		newLeader = state.leader
		return err == nil && newLeader != "" && newLeader != leader
	}, "no new stream leader after %s was killed (%s says %q)", leader, survivor.Name, newLeader)
	sc.recovered("new leader %s after %v", newLeader, since(killAt))
	sc.load.WaitMore(20, 25*time.Second)
	sc.recovered("posts acknowledged again by %v", since(killAt))
	// The first posts the new leader acknowledged reach every subscriber and MongoDB
	// (consumers on the dead node are noticed by missed heartbeats and recreated).
	acks := sc.load.Snapshot()
	head := highest(acks)
	chattest.Eventually(t, 40*time.Second, func() bool {
		for _, s := range sc.subs {
			if s.LastSeq() < head[s.Room] {
				return false
			}
		}
		return true
	}, "subscribers did not get the posts acknowledged after the kill")
	sc.recovered("delivered to all subscribers by %v", since(killAt))
	var last []faultload.Ack // each room's
	for _, a := range acks {
		if a.Seq == head[a.Room] {
			last = append(last, a)
		}
	}
	chattest.EventuallyEvery(t, 40*time.Second, 100*time.Millisecond, func() bool {
		var err error
		if last, err = unstored(ctx, e.store, last); err != nil {
			t.Fatal(err)
		}
		return len(last) == 0
	}, "the posts acknowledged after the kill are not stored")
	sc.recovered("stored by %v", since(killAt))
	restart := time.Now()
	if err := victim.Start(ctx); err != nil { // waits for /healthz: JetStream current
		t.Fatal(err)
	}
	sc.recovered("%s back and healthy in %v", victim.Name, since(restart))
	st, err := e.js.Stream(ctx, chat.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	target := info.State.LastSeq
	var got streamState
	chattest.Eventually(t, 20*time.Second, func() bool {
		got, err = nodeStream(victim)
		return err == nil && got.last >= target
	}, "%s holds CHAT up to seq %d (%v), the stream is at %d", victim.Name, got.last, err, target)
	sc.recovered("caught up to seq %d %v after restart", target, since(restart))
	sc.load.WaitMore(100, 20*time.Second)
	sc.finish()
	// Every node holds the same stream once the posts stopped.
	chattest.Eventually(t, 10*time.Second, func() bool {
		var states [][2]uint64
		for _, p := range e.topo.NATS {
			st, err := nodeStream(p)
			if err != nil {
				return false
			}
			states = append(states, [2]uint64{st.msgs, st.last})
		}
		return states[0] == states[1] && states[1] == states[2]
	}, "the NATS nodes hold different CHAT streams")
}

// persisterKill: one of the two persisters sharing the durable consumer is killed -9;
// the other stores everything (what the dead one had taken but not acked is redelivered
// after CHAT_ACK_WAIT=2s), nothing is lost or stored twice.
func persisterKill(t *testing.T, e *env) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sc := newScenario(t, e, "persister kill -9", "sk", 4)
	sc.start()
	sc.load.WaitMore(200, 20*time.Second)
	victim, other := e.topo.Persisters[0], e.topo.Persisters[1]
	killAt := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	atKill := sc.load.Snapshot()
	missing := atKill
	chattest.EventuallyEvery(t, 20*time.Second, 100*time.Millisecond, func() bool {
		var err error
		if missing, err = unstored(ctx, e.store, missing); err != nil {
			t.Fatal(err)
		}
		return len(missing) == 0
	}, "%v messages acknowledged before the kill are not stored", chattest.Later(func() string { return fmt.Sprint(len(missing)) }))
	sc.recovered("all %d acked before the kill stored %v after it", len(atKill), since(killAt))
	sc.load.WaitMore(150, 20*time.Second)
	restart := time.Now()
	if err := victim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	sc.recovered("%s restarted in %v", victim.Name, since(restart))
	_, metrics, err := get(other.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, "chat_persister_redeliveries_total "); ok {
			sc.note("%s redeliveries=%s", other.Name, v)
		}
	}
	sc.finish()
	st, err := e.js.Stream(ctx, chat.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.Consumer(ctx, "persister")
	if err != nil {
		t.Fatal(err)
	}
	var info *jetstream.ConsumerInfo
	chattest.Eventually(t, 10*time.Second, func() bool {
		info, err = cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, "persister consumer still has pending messages: %+v %v", info, err)
}

// apiRollingRestart: each api replica in turn gets SIGTERM (drains in-flight posts),
// exits and starts again; nginx moves new requests to the other replica, and no post
// keeps failing longer than the retry window.
func apiRollingRestart(t *testing.T, e *env) {
	ctx := context.Background()
	sc := newScenario(t, e, "api rolling restart (SIGTERM)", "ar", 4)
	sc.start()
	sc.load.WaitMore(100, 20*time.Second)
	for _, p := range e.topo.APIs {
		stopAt := time.Now()
		if err := p.Stop(30 * time.Second); err != nil {
			t.Error(err)
		}
		stopped := since(stopAt)
		startAt := time.Now()
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		ready := since(startAt)
		// nginx took the stopped replica out for fail_timeout (5s, max_fails=2) and has no
		// active health checks: stopping the next one before this one is back in
		// rotation would leave no api. Wait until it serves posts again.
		chattest.Eventually(t, 15*time.Second, func() bool { return metricSum(p, "chat_api_posts_total") >= 10 },
			"%s gets no posts from nginx after its restart", p.Name)
		sc.recovered("%s stopped in %v, ready in %v, back in nginx rotation %v after its start", p.Name, stopped, ready, since(startAt))
	}
	sc.finish()
	if sc.load.LongestRetry() > retryWindow {
		t.Errorf("a post kept failing for %v, more than the %v retry window", sc.load.LongestRetry(), retryWindow)
	}
}

// pusherRollingDeploy: each pusher in turn gets SIGTERM: /readyz answers 503 while it
// drains, its clients are closed with 1012 spread over CHAT_CLOSE_SPREAD, reconnect
// through nginx to the others and resume; the pusher exits and starts again (the new
// version).
func pusherRollingDeploy(t *testing.T, e *env) {
	ctx := context.Background()
	sc := newScenario(t, e, "pusher rolling deploy (SIGTERM)", "pr", 12)
	sc.start()
	sc.load.WaitMore(100, 20*time.Second)
	for _, p := range e.topo.Pushers {
		n := pusherConns(t, p)
		sigAt := time.Now()
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// Readiness while it drains, as the load balancer's health check would see it:
		// 503 from when it handles the signal until it exits (a 200 may come first,
		// before the signal is handled; no answer at the very end, as it exits).
		exited := p.Exited()
		ready := map[int]int{} // status (0: no answer) -> count
		var after503 []int
	poll:
		for {
			select {
			case <-exited:
				break poll
			default:
			}
			status, _, _ := get(p.URL() + "/readyz")
			select {
			case <-exited:
				break poll // an answer racing the exit says nothing
			default:
			}
			ready[status]++
			if ready[503] > 0 {
				after503 = append(after503, status)
			}
			time.Sleep(20 * time.Millisecond)
		}
		drained := since(sigAt)
		var closes []time.Time
		chattest.Eventually(t, 10*time.Second, func() bool {
			closes = closes[:0]
			for _, s := range sc.subs {
				for _, end := range s.EndsSince(sigAt) {
					if end.Code != websocket.CloseServiceRestart {
						t.Errorf("%s: socket ended with %d during %s's drain, want 1012", s.Name, end.Code, p.Name)
					}
					closes = append(closes, end.At)
				}
			}
			return len(closes) >= n
		}, "%d sockets closed, %s had %d", len(closes), p.Name, n)
		if len(closes) != n {
			t.Errorf("%d sockets closed during %s's drain, it had %d", len(closes), p.Name, n)
		}
		slices.SortFunc(closes, func(a, b time.Time) int { return a.Compare(b) })
		var spread time.Duration
		if n > 1 {
			spread = closes[len(closes)-1].Sub(closes[0])
			// Closes are CHAT_CLOSE_SPREAD/n apart: (n-1)/n of it from first to last.
			if want := closeSpread * time.Duration(n-1) / time.Duration(n) / 2; spread < want {
				t.Errorf("%s closed %d sockets within %v, want them spread over at least %v", p.Name, n, spread, want)
			}
		}
		// After the first 503: more 503s, then no answer once the server shut down.
		gone := slices.Index(after503, 0)
		if ready[503] == 0 || slices.Contains(after503, 200) || (gone >= 0 && slices.ContainsFunc(after503[gone:], func(s int) bool { return s != 0 })) {
			t.Errorf("%s /readyz while draining (status: count, 0 = no answer): %v, after the first 503: %v; "+
				"want 503 until it exits (the load balancer must see it unready before its sockets close)", p.Name, ready, after503)
		}
		var resumed time.Duration
		for _, s := range sc.subs {
			if len(s.EndsSince(sigAt)) == 0 {
				continue
			}
			var why string
			chattest.Eventually(t, 20*time.Second, func() bool { ok, w := s.ReconnectedSince(sigAt); why = w; return ok },
				"%s did not reconnect: %s", s.Name, why)
			resumed = max(resumed, s.ConnectedSince(sigAt).Sub(sigAt))
		}
		restart := time.Now()
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		sc.recovered("%s: %d closes 1012 over %v, exited %v after SIGTERM, all resumed within %v, restarted in %v",
			p.Name, n, spread.Round(10*time.Millisecond), drained, resumed.Round(10*time.Millisecond), since(restart))
		sc.note("%s readyz while draining %v", p.Name, ready)
		sc.load.WaitMore(50, 20*time.Second)
	}
	sc.finish()
}

// metricSum adds up every series of a metric on a service's /metrics (0 if absent).
func metricSum(p *topology.Process, name string) float64 {
	_, text, err := get(p.URL() + "/metrics")
	if err != nil {
		return 0
	}
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			var v float64
			if _, err := fmt.Sscan(rest[strings.LastIndex(rest, " ")+1:], &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}
