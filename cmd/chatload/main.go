// Command chatload drives a running chat deployment and measures it: N websocket
// subscribers spread over rooms, pusher URLs and local source addresses (optionally in
// child processes), P publishers posting over HTTP at a target rate with the send time in
// each message, and the serving processes' CPU and memory from /proc. Every subscriber
// must receive every acknowledged message of its room exactly once; the report counts
// what was lost or duplicated. With -soak it runs a soak instead (soak.go): rooms created
// and abandoned, clients leaving and resuming with since, a pusher restarted by a hook,
// every delivery checked exactly and the pushers' heap and goroutines compared with a
// baseline. Every run is bounded in time and stops by itself.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chatrt/chat/pkg/buildinfo"
)

// config is the run's configuration, from flags (and, in a child, from the parent).
type config struct {
	API            string         `json:"api"`
	WS             []string       `json:"ws"`
	Subs           int            `json:"subs"`
	Rooms          int            `json:"rooms"`
	RoomPrefix     string         `json:"room_prefix"`
	Rate           float64        `json:"rate"`
	Publishers     int            `json:"publishers"`
	Duration       time.Duration  `json:"duration"`
	Warmup         time.Duration  `json:"warmup"`
	Drain          time.Duration  `json:"drain"`
	ConnectTimeout time.Duration  `json:"connect_timeout"`
	DialParallel   int            `json:"dial_parallel"`
	Size           int            `json:"size"`
	ServerPIDs     []int          `json:"server_pids"`
	SrcIPs         []string       `json:"src_ips"`
	Procs          int            `json:"procs"`
	JSON           string         `json:"-"`
	Version        bool           `json:"-"`
	Idle           bool           `json:"idle"`
	Settle         time.Duration  `json:"settle"`
	PersistSample  float64        `json:"persist_sample"`
	Metrics        []string       `json:"metrics,omitempty"`
	Soak           soakConfig     `json:"soak,omitzero"`
	Presence       presenceConfig `json:"presence,omitzero"`

	// child only: this process holds the subscribers with global index in [SubFrom, SubTo).
	SubFrom int `json:"sub_from"`
	SubTo   int `json:"sub_to"`
}

const childEnv = "CHATLOAD_CHILD"

func main() {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(childMain(spec))
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatload:", err)
		os.Exit(2)
	}
	if cfg.Version {
		fmt.Println(buildinfo.Read().String("chatload"))
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.Soak.On {
		os.Exit(soakMain(ctx, cfg))
	}
	rep, err := run(ctx, cfg)
	if rep != nil {
		rep.writeSummary(os.Stdout)
		if cfg.JSON != "" {
			if werr := rep.writeJSON(cfg.JSON); werr != nil {
				fmt.Fprintln(os.Stderr, "chatload:", werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatload:", err)
		os.Exit(1)
	}
}

type intList []int

func (l *intList) String() string { return fmt.Sprint(*l) }
func (l *intList) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return fmt.Errorf("bad pid %q", f)
		}
		*l = append(*l, n)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseFlags(args []string) (config, error) {
	var cfg config
	var ws, src, metrics, soakSizes, soakMetrics string
	var pids intList
	fs := flag.NewFlagSet("chatload", flag.ContinueOnError)
	fs.StringVar(&cfg.API, "api", "http://127.0.0.1:8080", "base URL of the api (POST /rooms/{room}/messages)")
	fs.StringVar(&ws, "ws", "ws://127.0.0.1:8080/ws", "pusher websocket URL(s), comma-separated; subscribers are spread over them")
	fs.IntVar(&cfg.Subs, "subs", 100, "websocket subscribers (one room each)")
	fs.IntVar(&cfg.Rooms, "rooms", 1, "rooms; subscribers and posts are spread evenly over them")
	fs.StringVar(&cfg.RoomPrefix, "room-prefix", "load", "room names are <prefix>-<i>")
	fs.Float64Var(&cfg.Rate, "rate", 10, "posts per second, total (0: no posts)")
	fs.IntVar(&cfg.Publishers, "publishers", 4, "concurrent HTTP publishers (keep-alive connections)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured window")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "publishing before the measured window (delivered and checked, not timed)")
	fs.DurationVar(&cfg.Drain, "drain", 5*time.Second, "after publishing, how long to wait for the last deliveries")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", 2*time.Minute, "bound on connecting and subscribing every subscriber")
	fs.IntVar(&cfg.DialParallel, "dial-parallel", 64, "websocket handshakes in flight per process")
	fs.IntVar(&cfg.Size, "size", 64, "message text bytes (at least the send-time prefix)")
	fs.Var(&pids, "server-pid", "pid(s) of the serving process(es) to measure CPU and RSS of; repeatable or comma-separated")
	fs.StringVar(&src, "src-ips", "", "local addresses to dial websockets from, comma-separated (e.g. 127.0.0.1,127.0.0.2); more addresses, more ports")
	fs.IntVar(&cfg.Procs, "procs", 0, "hold the subscribers in this many child processes (0: in this process)")
	fs.StringVar(&cfg.JSON, "json", "", "write the JSON report to this file (- for stdout)")
	fs.BoolVar(&cfg.Idle, "idle", false, "connect the subscribers, post nothing, and measure server RSS per connection")
	fs.DurationVar(&cfg.Settle, "settle", 3*time.Second, "-idle: wait this long after connecting before reading RSS")
	fs.Float64Var(&cfg.PersistSample, "persist-sample", 0, "acknowledged posts per second whose arrival in history (GET after=seq-1, every 20 ms, at most 4 in flight) is polled to measure persister lag (0: off); on FerretDB the polls are expensive and distort the result: prefer -metrics")
	fs.StringVar(&metrics, "metrics", "", "Prometheus endpoint(s) of the persister(s), comma-separated (e.g. http://127.0.0.1:8080/metrics on the all-in-one, :8082/metrics for a persister): persister lag (chat_persister_lag_seconds) of the messages stored from the window's start to the end of the drain, and the consumer's pending count sampled every 250 ms")
	fs.BoolVar(&cfg.Presence.On, "presence", false, "subscribers opt in to presence and typing (?presence=1), each under its own name s<index>")
	fs.IntVar(&cfg.Presence.Typers, "typers", 0, "with -presence: the first N subscribers send a typing frame every -typing-every while posts go out")
	fs.DurationVar(&cfg.Presence.TypingEvery, "typing-every", 2100*time.Millisecond, "interval of each typer's typing frames (the server forwards at most one per 2 s)")
	fs.Float64Var(&cfg.Presence.Churn, "churn", 0, "presence changes per second while posts go out: churn/2 connections a second subscribe under a name of their own (opted in with -presence), stay -churn-hold and close")
	fs.DurationVar(&cfg.Presence.ChurnHold, "churn-hold", time.Second, "how long each -churn connection stays subscribed")
	fs.BoolVar(&cfg.Version, "version", false, "print the build (version, commit, commit time) and exit")
	cfg.Soak.flags(fs, &soakSizes, &soakMetrics)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.WS, cfg.SrcIPs, cfg.ServerPIDs, cfg.Metrics = splitList(ws), splitList(src), pids, splitList(metrics)
	if cfg.Soak.On {
		if err := cfg.Soak.parse(&cfg, soakSizes, soakMetrics); err != nil {
			return cfg, err
		}
	}
	return cfg, cfg.validate()
}

func (c *config) validate() error {
	switch {
	case c.Subs < 0, c.Rooms < 1, c.Rate < 0, c.Publishers < 1, c.Size < 0, c.Procs < 0, c.DialParallel < 1:
		return errors.New("-subs, -rooms, -rate, -publishers, -size, -procs, -dial-parallel: out of range")
	case c.Duration <= 0 || c.Warmup < 0 || c.Drain < 0:
		return errors.New("-duration must be > 0, -warmup and -drain >= 0")
	case c.Subs > 0 && len(c.WS) == 0:
		return errors.New("-ws: need at least one URL")
	case c.Procs > c.Subs && c.Subs > 0:
		return errors.New("-procs: more processes than subscribers")
	case (c.Presence.Churn > 0 || c.Presence.On) && len(c.WS) == 0:
		return errors.New("-presence, -churn: need a -ws URL")
	}
	if err := c.Presence.validate(); err != nil {
		return err
	}
	targets := append(append(append([]string{c.API}, c.WS...), c.Metrics...), c.Soak.Metrics...)
	for _, u := range targets {
		if _, err := url.Parse(u); err != nil {
			return fmt.Errorf("bad URL %q: %w", u, err)
		}
	}
	for _, u := range c.Metrics {
		if pu, _ := url.Parse(u); pu.Scheme != "http" && pu.Scheme != "https" {
			return fmt.Errorf("-metrics: %s is not an http(s) URL", u)
		}
	}
	for _, ip := range c.SrcIPs {
		if !strings.HasPrefix(ip, "127.") && ip != "::1" {
			return fmt.Errorf("-src-ips: %s is not a loopback address (loopback only)", ip)
		}
	}
	for _, u := range targets {
		pu, _ := url.Parse(u)
		if h := pu.Hostname(); h != "localhost" && !strings.HasPrefix(h, "127.") && h != "::1" {
			return fmt.Errorf("%s: loopback targets only", u)
		}
	}
	c.SubFrom, c.SubTo = 0, c.Subs
	return nil
}

func roomName(cfg *config, i int) string { return cfg.RoomPrefix + "-" + strconv.Itoa(i) }

func (c *config) marshal() string {
	b, _ := json.Marshal(c)
	return string(b)
}

// soakMain runs -soak and returns the exit code: 0 passed, 1 failed.
func soakMain(ctx context.Context, cfg config) int {
	var restart func(ctx context.Context, url string, index int) error
	if cfg.Soak.Restart != "" {
		restart = restartHook(cfg.Soak.Restart)
	}
	rep, err := runSoak(ctx, cfg, restart)
	if rep != nil {
		rep.writeSummary(os.Stdout)
		if cfg.JSON != "" {
			if werr := writeJSONFile(cfg.JSON, rep); werr != nil {
				fmt.Fprintln(os.Stderr, "chatload:", werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatload: soak:", err)
		return 1
	}
	if !rep.Passed {
		return 1
	}
	return 0
}
