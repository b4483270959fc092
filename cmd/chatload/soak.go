package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	chatclient "github.com/chatrt/chat/clients/go"
)

// soakConfig is the -soak mode's part of the configuration.
type soakConfig struct {
	On              bool          `json:"on"`
	Subs            int           `json:"subs"`
	Rooms           int           `json:"rooms"`
	RoomLife        time.Duration `json:"room_life"`
	Session         time.Duration `json:"session"`
	Away            time.Duration `json:"away"`
	Sizes           []int         `json:"sizes"`
	Restart         string        `json:"restart,omitempty"`
	RestartAt       float64       `json:"restart_at"`
	RestartPusher   int           `json:"restart_pusher"`
	Metrics         []string      `json:"metrics"`
	MaxHeapGrowth   float64       `json:"max_heap_growth_mib"`
	MaxGoroutines   int           `json:"max_goroutine_growth"`
	TickRate        float64       `json:"tick_rate"`
	TickSize        int           `json:"tick_size"`
	Window          int           `json:"window"`
	MeasureTimeout  time.Duration `json:"measure_timeout"`
	Cold            int           `json:"cold"`
	RestartReadyFor time.Duration `json:"restart_ready_for"`
}

// SubsPerRoom is how many clients follow each room.
func (c *soakConfig) SubsPerRoom() int { return max(1, c.Subs/c.Rooms) }

func (c *soakConfig) flags(fs *flag.FlagSet, sizes, metrics *string) {
	fs.BoolVar(&c.On, "soak", false, "run a bounded soak (see README, Performance): rooms created and abandoned, clients joining, leaving and resuming, a pusher restarted mid-way; fails on any lost, duplicated or out-of-order delivery and on pusher heap or goroutine growth")
	fs.IntVar(&c.Subs, "soak-subs", 32, "-soak: clients at a time (spread over the active rooms)")
	fs.IntVar(&c.Rooms, "soak-rooms", 8, "-soak: rooms active at a time; each is abandoned after its life and replaced by a new name")
	fs.DurationVar(&c.RoomLife, "soak-room-life", 20*time.Second, "-soak: mean life of a room (±50%)")
	fs.DurationVar(&c.Session, "soak-session", 4*time.Second, "-soak: mean time a client stays before leaving (±50%)")
	fs.DurationVar(&c.Away, "soak-away", time.Second, "-soak: mean time a client stays away before resuming with since (±50%)")
	fs.StringVar(sizes, "soak-sizes", "16,200,1000,4000", "-soak: message sizes (characters) drawn at random for each post")
	fs.StringVar(&c.Restart, "soak-restart", "", "-soak: shell command (sh -c) that restarts one pusher mid-way; it gets CHATLOAD_PUSHER_URL (http://host:port) and CHATLOAD_PUSHER_INDEX; the soak then waits for that pusher's /readyz and checks it is a new process (empty: no restart)")
	fs.Float64Var(&c.RestartAt, "soak-restart-at", 0.5, "-soak: when to run -soak-restart, as a fraction of -duration")
	fs.IntVar(&c.RestartPusher, "soak-restart-pusher", 0, "-soak: index in -ws of the pusher -soak-restart restarts")
	fs.StringVar(metrics, "soak-metrics", "", "-soak: each pusher's Prometheus endpoint, comma-separated, in -ws order (default: -ws with http and /metrics)")
	fs.Float64Var(&c.MaxHeapGrowth, "soak-max-heap-growth", 32, "-soak: MiB a pusher's live heap may grow from the baseline (after warm-up) to the end (both with no client, after two GCs)")
	fs.IntVar(&c.MaxGoroutines, "soak-max-goroutine-growth", 20, "-soak: goroutines a pusher may gain from the baseline to the end")
	fs.Float64Var(&c.TickRate, "soak-tick-rate", 200, "-soak: posts/s into one fixed room while measuring, so the pushers allocate and collect")
	fs.IntVar(&c.TickSize, "soak-tick-size", 4000, "-soak: size of those posts")
	fs.IntVar(&c.Window, "soak-window", 1024, "-soak: the pushers' CHAT_WINDOW: the baseline waits for that many tick posts, so the tick room's window is full at both measurements")
	fs.DurationVar(&c.MeasureTimeout, "soak-measure-timeout", 90*time.Second, "-soak: bound on one measurement (waiting for two GCs on every pusher)")
	fs.IntVar(&c.Cold, "soak-cold", 8, "-soak: abandoned rooms (the oldest) resumed once more at the end from the middle of their history")
	fs.DurationVar(&c.RestartReadyFor, "soak-restart-ready", time.Minute, "-soak: bound on the restart hook and on the restarted pusher's /readyz")
}

func (c *soakConfig) parse(cfg *config, sizes, metrics string) error {
	c.Sizes = c.Sizes[:0]
	for _, f := range splitList(sizes) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 4096 {
			return fmt.Errorf("-soak-sizes: %q is not a size in 1..4096", f)
		}
		c.Sizes = append(c.Sizes, n)
	}
	c.Metrics = splitList(metrics)
	if len(c.Metrics) == 0 {
		for _, u := range cfg.WS {
			c.Metrics = append(c.Metrics, pusherBase(u)+"/metrics")
		}
	}
	switch {
	case len(c.Sizes) == 0:
		return errors.New("-soak-sizes: none")
	case c.Subs < 1, c.Rooms < 1, c.RoomLife <= 0, c.Session <= 0, c.Away < 0, c.TickRate <= 0, c.TickSize < 1,
		c.TickSize > 4096, c.Window < 0, c.MeasureTimeout <= 0, c.Cold < 0, c.MaxHeapGrowth < 0, c.MaxGoroutines < 0:
		return errors.New("-soak-*: out of range")
	case cfg.Rate <= 0:
		return errors.New("-soak needs -rate > 0")
	case len(cfg.WS) == 0:
		return errors.New("-soak needs -ws")
	case len(c.Metrics) != len(cfg.WS):
		return fmt.Errorf("-soak-metrics: %d endpoints for %d pushers", len(c.Metrics), len(cfg.WS))
	case c.Restart != "" && (c.RestartPusher < 0 || c.RestartPusher >= len(cfg.WS)):
		return errors.New("-soak-restart-pusher: not an index in -ws")
	case c.RestartAt < 0 || c.RestartAt > 1:
		return errors.New("-soak-restart-at: a fraction in [0, 1]")
	}
	return nil
}

// pusherBase turns a pusher's websocket URL into its http base URL (ws://h:p/ws → http://h:p).
func pusherBase(ws string) string {
	u, err := url.Parse(ws)
	if err != nil {
		return ws
	}
	scheme := "http"
	if u.Scheme == "wss" || u.Scheme == "https" {
		scheme = "https"
	}
	return scheme + "://" + u.Host
}

// soak is one run of the soak.
type soak struct {
	cfg    *config
	sc     *soakConfig
	http   *http.Client
	scr    *scraper
	wsURLs []string
	runID  string
	start  time.Time

	clientN atomic.Int64
	roomN   atomic.Int64
	conns   []atomic.Int64 // clients connected, by pusher

	mu   sync.Mutex
	rep  soakReport
	cold []coldRoom
}

type coldRoom struct {
	name string
	acks []soakAck
}

func newSoak(cfg *config) *soak {
	s := &soak{cfg: cfg, sc: &cfg.Soak, scr: newScraper(cfg.Soak.Metrics), wsURLs: cfg.WS, conns: make([]atomic.Int64, len(cfg.WS)),
		start: time.Now(), runID: strconv.FormatInt(time.Now().UnixMilli()%(36*36*36*36*36*36), 36)}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true, IdleConnTimeout: time.Minute,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	s.http = &http.Client{Transport: tr, Timeout: 15 * time.Second}
	s.rep.Date = time.Now().UTC().Format(time.RFC3339)
	s.rep.RunID = s.runID
	s.rep.Config = *cfg
	s.rep.Posts.Retries = map[string]int{}
	s.rep.Clients.CloseCodes = map[string]int{}
	return s
}

func (s *soak) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rep.Failures) < 50 {
		s.rep.Failures = append(s.rep.Failures, fmt.Sprintf(format, args...))
	}
}

func (s *soak) add(n *int, d int) {
	s.mu.Lock()
	*n += d
	s.mu.Unlock()
}

func (s *soak) count(m *map[string]int, key string) {
	s.mu.Lock()
	(*m)[key]++
	s.mu.Unlock()
}

func (s *soak) closeCode(code int) { s.count(&s.rep.Clients.CloseCodes, strconv.Itoa(code)) }

func (s *soak) roomDone(name string, acks []soakAck, v verdict) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.Rooms.Verified++
	s.rep.Deliveries.add(v)
	if len(s.cold) < s.sc.Cold && len(acks) > 1 {
		s.cold = append(s.cold, coldRoom{name: name, acks: acks})
	}
}

func (s *soak) roomName() string {
	n := s.roomN.Add(1) - 1
	s.add(&s.rep.Rooms.Created, 1)
	return s.cfg.RoomPrefix + "-" + s.runID + "-" + strconv.FormatInt(n, 10)
}

// restartHook runs cmd with sh -c, telling it which pusher to restart.
func restartHook(cmd string) func(ctx context.Context, url string, index int) error {
	return func(ctx context.Context, url string, index int) error {
		c := exec.CommandContext(ctx, "sh", "-c", cmd)
		c.Env = append(os.Environ(), "CHATLOAD_PUSHER_URL="+url, "CHATLOAD_PUSHER_INDEX="+strconv.Itoa(index))
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		if err := c.Run(); err != nil {
			return fmt.Errorf("-soak-restart %q: %w", cmd, err)
		}
		return nil
	}
}

// runSoak runs the soak: a warm-up of the full workload, the baseline (no client, two
// GCs on every pusher), the main phase (with the restart), the cold resumes, the end
// measurement, and the verdict. restart nil means no restart.
func runSoak(ctx context.Context, cfg config, restart func(ctx context.Context, url string, index int) error) (*soakReport, error) {
	sc := &cfg.Soak
	limit := cfg.Warmup + cfg.Duration + 2*sc.MeasureTimeout + 2*sc.RoomLife + 2*cfg.Drain + 2*sc.RestartReadyFor + 2*time.Minute
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	s := newSoak(&cfg)
	figs := make([]pusherFigures, len(sc.Metrics))
	for i, u := range sc.Metrics {
		figs[i].URL = u
		if _, err := s.scr.samplePusher(ctx, u); err != nil {
			return nil, fmt.Errorf("pusher metrics: %w", err)
		}
	}

	// The tick poster runs through the whole soak (its room must be in the same state at
	// both measurements: a full window), at the tick rate only while measuring.
	ticking := &atomic.Bool{}
	tickCtx, stopTicks := context.WithCancel(ctx)
	tickDone := make(chan struct{})
	go func() {
		defer close(tickDone)
		s.tick(tickCtx, ticking)
	}()
	defer func() { stopTicks(); <-tickDone }()

	s.workload(ctx, cfg.Warmup, nil)
	base, err := s.measure(ctx, ticking, sc.Window)
	if err != nil {
		return s.finish(figs), err
	}
	for i := range figs {
		figs[i].Baseline = base[i]
	}
	s.workload(ctx, cfg.Duration, restart)
	s.coldResumes(ctx)
	end, err := s.measure(ctx, ticking, 0)
	if err != nil {
		return s.finish(figs), err
	}
	for i := range figs {
		figs[i].End = end[i]
	}
	if ctx.Err() != nil {
		s.fail("soak interrupted or over its time limit (%v)", limit)
	}
	return s.finish(figs), nil
}

func (s *soak) finish(figs []pusherFigures) *soakReport {
	stopped := false
	for i := range figs {
		if figs[i].End.Scraped == "" {
			stopped = true
			continue
		}
		figs[i].judge(s.sc.MaxHeapGrowth*(1<<20), s.sc.MaxGoroutines)
		for _, f := range figs[i].Failures {
			s.fail("%s", f)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &s.rep
	r.Pushers = figs
	r.Seconds = time.Since(s.start).Seconds()
	if v := r.Deliveries; v.bad() > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("deliveries: %d lost, %d duplicated, %d out of order, %d foreign, %d with a wrong id",
			v.Lost, v.Duplicated, v.OutOfOrder, v.Foreign, v.WrongID))
	}
	if v := r.ColdResumes; v.bad() > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("cold resumes: %d lost, %d duplicated, %d out of order, %d foreign, %d with a wrong id",
			v.Lost, v.Duplicated, v.OutOfOrder, v.Foreign, v.WrongID))
	}
	if r.BadFrames > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d unparsable or unknown frames", r.BadFrames))
	}
	if r.Deliveries.Expected == 0 {
		r.Failures = append(r.Failures, "no delivery was expected: nothing was checked")
	}
	if stopped {
		r.Failures = append(r.Failures, "the soak stopped before its end measurement")
	}
	r.Passed = len(r.Failures) == 0
	rep := *r
	return &rep
}

// workload runs -soak-rooms room slots for d: each runs a room for its life (±50%,
// ended early when d is over) and then a new one. restart, if set, runs at
// -soak-restart-at of d. It returns when every room is checked.
func (s *soak) workload(ctx context.Context, d time.Duration, restart func(ctx context.Context, url string, index int) error) {
	phase, end := context.WithTimeout(ctx, d)
	defer end()
	var wg sync.WaitGroup
	for range s.sc.Rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for phase.Err() == nil {
				s.runRoom(ctx, phase, s.roomName(), jitter(s.sc.RoomLife, 0.5))
			}
		}()
	}
	if restart != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at := time.Duration(float64(d) * s.sc.RestartAt)
			if !sleepUntil(phase, time.Now().Add(at)) {
				return
			}
			s.restart(ctx, restart, at)
		}()
	}
	wg.Wait()
}

// restart runs the hook, then waits until the pusher answers /readyz as a new process.
func (s *soak) restart(ctx context.Context, hook func(ctx context.Context, url string, index int) error, at time.Duration) {
	i := s.sc.RestartPusher
	base := pusherBase(s.wsURLs[i])
	t0 := time.Now()
	r := &s.rep.Restart
	s.mu.Lock()
	r.Command, r.URL, r.AtSecond = s.sc.Restart, base, at.Seconds()
	s.mu.Unlock()
	// Restart it while it serves clients (they must see 1012 and resume): wait a little
	// for a few if fewer are connected right now.
	wctx, cancel := context.WithTimeout(ctx, 2*s.sc.Session)
	for s.conns[i].Load() < 3 && sleepUntil(wctx, time.Now().Add(20*time.Millisecond)) {
	}
	cancel()
	before, err := s.scr.samplePusher(ctx, s.sc.Metrics[i])
	if err == nil {
		s.mu.Lock()
		r.Clients = int(s.conns[i].Load())
		s.mu.Unlock()
		hctx, cancel := context.WithTimeout(ctx, s.sc.RestartReadyFor)
		err = hook(hctx, base, i)
		cancel()
	}
	if err == nil {
		err = s.waitRestarted(ctx, i, before.Start)
	}
	s.mu.Lock()
	r.Seconds = time.Since(t0).Seconds()
	if err != nil {
		r.Error = err.Error()
	}
	s.mu.Unlock()
	if err != nil {
		s.fail("restart: %v", err)
	}
}

func (s *soak) waitRestarted(ctx context.Context, i int, startBefore float64) error {
	ctx, cancel := context.WithTimeout(ctx, s.sc.RestartReadyFor)
	defer cancel()
	ready := pusherBase(s.wsURLs[i]) + "/readyz"
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ready, nil)
		resp, err := s.http.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			last = resp.Status
			if resp.StatusCode == http.StatusOK {
				p, err := s.scr.samplePusher(ctx, s.sc.Metrics[i])
				if err == nil && p.Start != startBefore {
					return nil
				}
				last = "ready, but the same process as before the hook"
			}
		} else {
			last = err.Error()
		}
		if !sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
			return fmt.Errorf("pusher %s not restarted and ready within %v: %s", ready, s.sc.RestartReadyFor, last)
		}
	}
}

// coldResumes resumes once more into the oldest abandoned rooms, from the middle of
// their history, on each pusher in turn: the pusher may have evicted them by now, and
// the resume must still deliver exactly the messages after that seq.
func (s *soak) coldResumes(ctx context.Context) {
	s.mu.Lock()
	rooms := slices.Clone(s.cold)
	s.mu.Unlock()
	for k, r := range rooms {
		acks := slices.Clone(r.acks)
		slices.SortFunc(acks, func(a, b soakAck) int { return cmp.Compare(a.Seq, b.Seq) })
		from := acks[(len(acks)-1)/2].Seq
		last := lastSeq(acks)
		log := deliveryLog{Client: fmt.Sprintf("cold-%d", k), Room: r.name, From: from}
		u := s.wsURLs[k%len(s.wsURLs)]
		err := s.readUntil(ctx, u, &log, last)
		if err != nil {
			s.fail("cold resume of %s on %s: %v", r.name, u, err)
		}
		v := checkLog(acks, last, log)
		s.mu.Lock()
		s.rep.Rooms.Cold++
		s.rep.ColdResumes.add(v)
		s.mu.Unlock()
	}
}

// readUntil subscribes at u from log.From (the Go client, no reconnection) and records
// the message frames, delivered or left out by the client, until one with seq ≥ last (or
// the drain bound), then waits briefly for anything delivered after it (a duplicate).
func (s *soak) readUntil(ctx context.Context, u string, log *deliveryLog, last uint64) error {
	c, err := chatclient.New([]string{u})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	reached := make(chan struct{})
	var once sync.Once
	record := func(seq uint64, id, room string) {
		mu.Lock()
		log.Deliveries = append(log.Deliveries, soakDelivery{Seq: seq, ID: id, Room: room})
		mu.Unlock()
		if seq >= last {
			once.Do(func() { close(reached) })
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sub, err := c.Subscribe(sctx, log.Room, func(m chatclient.Msg) { record(m.Seq, m.ID, m.Room) },
		chatclient.Since(log.From), chatclient.MaxReconnects(0),
		chatclient.OnSkipped(func(f chatclient.Frame) {
			var m struct{ ID string }
			if f.Type != "message" || json.Unmarshal(f.Data, &m) != nil {
				s.add(&s.rep.BadFrames, 1)
				return
			}
			record(f.Seq, m.ID, f.Room)
		}),
		chatclient.OnFrame(func(chatclient.Frame) { s.add(&s.rep.BadFrames, 1) }))
	if err != nil {
		return err
	}
	defer func() {
		sub.Stop()
		<-sub.Closed()
	}()
	timer := time.NewTimer(max(s.cfg.Drain, 5*time.Second))
	defer timer.Stop()
	select {
	case <-reached:
	case <-sub.Closed():
		return fmt.Errorf("read: %w", sub.Err())
	case <-timer.C:
		return fmt.Errorf("read: seq %d not received within %v", last, max(s.cfg.Drain, 5*time.Second))
	case <-ctx.Done():
		return fmt.Errorf("read: %w", ctx.Err())
	}
	sleepUntil(ctx, time.Now().Add(300*time.Millisecond))
	return nil
}
