package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"
)

// report is the result of a run: the JSON output, and the readable summary.
type report struct {
	Date           string   `json:"date"`
	Host           string   `json:"host"`
	CPUs           int      `json:"cpus"`
	Config         config   `json:"config"`
	ConnectSeconds float64  `json:"connect_seconds"`
	Errors         []string `json:"errors,omitempty"`

	Posts struct {
		TargetPerSec   float64        `json:"target_per_s"`
		AckedPerSec    float64        `json:"acked_per_s"` // acknowledged posts sent inside the window / window
		Attempted      uint64         `json:"attempted"`
		Acked          uint64         `json:"acked"`
		Statuses       map[string]int `json:"statuses"`
		FirstError     string         `json:"first_error,omitempty"`
		Latency        latencySummary `json:"latency"`
		PersistLag     latencySummary `json:"persist_lag"`
		PersistMissing uint64         `json:"persist_missing"`
	} `json:"posts"`

	// Persister is read from the services' own metrics (-metrics).
	Persister *metricsResult `json:"persister,omitempty"`

	Deliveries struct {
		Subscribers   int            `json:"subscribers"`
		ConnectFailed int            `json:"connect_failed"`
		ConnectError  string         `json:"connect_error,omitempty"`
		PerSec        float64        `json:"per_s"` // deliveries of messages sent inside the window / window
		Window        uint64         `json:"window"`
		Total         uint64         `json:"total"`
		Expected      uint64         `json:"expected"`
		Lost          uint64         `json:"lost"`
		Duplicates    uint64         `json:"duplicates"`
		OutOfOrder    uint64         `json:"out_of_order"`
		Disconnected  int            `json:"disconnected"`
		CloseCodes    map[string]int `json:"close_codes,omitempty"`
		ErrorFrames   uint64         `json:"error_frames"`
		BadFrames     uint64         `json:"bad_frames"`
		E2E           latencySummary `json:"e2e"`
	} `json:"deliveries"`

	// Presence: what the subscribers got and sent of presence and typing (-presence,
	// -typers); Churn: the joining and leaving connections (-churn).
	Presence struct {
		Frames       frameCounts `json:"frames"`
		TypingSent   uint64      `json:"typing_sent"`
		TypingErrors uint64      `json:"typing_errors"`
	} `json:"presence"`
	Churn churnResult `json:"churn"`

	Server struct {
		PIDs               []int   `json:"pids"`
		CPUSeconds         float64 `json:"cpu_seconds"` // over the window
		SysSeconds         float64 `json:"sys_seconds"` // of which in the kernel
		CPUUtilization     float64 `json:"cpu_utilization"`
		CPUPerMillion      float64 `json:"cpu_seconds_per_million_deliveries"`
		CPUPerThousandPost float64 `json:"cpu_seconds_per_thousand_posts"`
		WriteCalls         uint64  `json:"write_calls"` // write system calls in the window (syscw)
		RSSBefore          int64   `json:"rss_before_bytes"`
		RSSConnected       int64   `json:"rss_connected_bytes"`
		RSSEnd             int64   `json:"rss_end_bytes"`
		RSSPerConn         float64 `json:"rss_per_connection_bytes"` // (connected - before) / connections
		// -idle: (end - before) / connections, after holding the idle sockets for -duration
		// (the runtime has returned the handshakes' garbage to the OS by then).
		RSSPerConnHeld float64 `json:"rss_per_connection_held_bytes,omitempty"`
	} `json:"server"`

	Tool struct {
		CPUSecondsWindow   float64 `json:"cpu_seconds_window"` // this process
		ChildrenCPUSeconds float64 `json:"children_cpu_seconds"`
	} `json:"tool"`
}

func newReport(cfg *config) *report {
	r := &report{Date: time.Now().UTC().Format(time.RFC3339), Host: hostname(), CPUs: runtime.NumCPU(), Config: *cfg}
	r.Server.PIDs = cfg.ServerPIDs
	return r
}

func (r *report) finish(cfg *config, s subResult, p pubResult) {
	win := cfg.Duration.Seconds()
	r.Posts.TargetPerSec = cfg.Rate
	r.Posts.AckedPerSec = float64(p.WindowAcked) / win
	r.Posts.Attempted, r.Posts.Acked, r.Posts.Statuses, r.Posts.FirstError = p.Attempted, p.Acked, p.Statuses, p.FirstError
	r.Posts.Latency, r.Posts.PersistLag, r.Posts.PersistMissing = p.Latency.summary(), p.PersistLag.summary(), p.PersistMissing

	d := &r.Deliveries
	d.Subscribers, d.ConnectFailed, d.ConnectError = s.Connected, s.ConnectFailed, s.ConnectError
	d.Window, d.Total, d.Expected = s.WindowDeliveries, s.Deliveries, s.Expected
	d.PerSec = float64(s.WindowDeliveries) / win
	d.Lost, d.Duplicates, d.OutOfOrder, d.Disconnected, d.CloseCodes = s.Lost, s.Duplicates, s.OutOfOrder, s.Disconnected, s.CloseCodes
	d.ErrorFrames, d.BadFrames, d.E2E = s.ErrorFrames, s.BadFrames, s.E2E.summary()
	r.Tool.ChildrenCPUSeconds = s.CPUSeconds
	r.Presence.Frames, r.Presence.TypingSent, r.Presence.TypingErrors = s.PresenceFrames, s.TypingSent, s.TypingErrors

	sv := &r.Server
	if len(cfg.ServerPIDs) > 0 {
		sv.CPUUtilization = sv.CPUSeconds / win
		if s.WindowDeliveries > 0 {
			sv.CPUPerMillion = sv.CPUSeconds / (float64(s.WindowDeliveries) / 1e6)
		}
		if p.WindowAcked > 0 {
			sv.CPUPerThousandPost = sv.CPUSeconds / (float64(p.WindowAcked) / 1e3)
		}
		if s.Connected > 0 {
			sv.RSSPerConn = float64(sv.RSSConnected-sv.RSSBefore) / float64(s.Connected)
			if cfg.Idle {
				sv.RSSPerConnHeld = float64(sv.RSSEnd-sv.RSSBefore) / float64(s.Connected)
			}
		}
	}
}

func (r *report) writeJSON(path string) error { return writeJSONFile(path, r) }

// writeJSONFile writes v as indented JSON to path ("-": stdout).
func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func (r *report) writeSummary(w io.Writer) {
	c := &r.Config
	fmt.Fprintf(w, "chatload %s: %d subs over %d rooms, %.0f posts/s by %d publishers, %s window (+%s warmup), %d-byte messages\n",
		r.Date, c.Subs, c.Rooms, c.Rate, c.Publishers, c.Duration, c.Warmup, c.Size)
	d := &r.Deliveries
	if c.Subs > 0 {
		fmt.Fprintf(w, "  subscribers   %d connected, %d failed in %.1fs", d.Subscribers, d.ConnectFailed, r.ConnectSeconds)
		if d.ConnectError != "" {
			fmt.Fprintf(w, " (%s)", d.ConnectError)
		}
		fmt.Fprintln(w)
	}
	if !c.Idle && c.Rate > 0 {
		p := &r.Posts
		fmt.Fprintf(w, "  posts         %.0f/s acked (target %.0f), %d attempted, %d acked, statuses %v; latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
			p.AckedPerSec, p.TargetPerSec, p.Attempted, p.Acked, p.Statuses, p.Latency.P50, p.Latency.P99, p.Latency.Max)
		if p.FirstError != "" {
			fmt.Fprintf(w, "  first error   %s\n", p.FirstError)
		}
		if c.PersistSample > 0 {
			fmt.Fprintf(w, "  persist lag   %d samples: p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d not seen within 10 s\n",
				p.PersistLag.Count, p.PersistLag.P50, p.PersistLag.P99, p.PersistLag.Max, p.PersistMissing)
		}
	}
	if m := r.Persister; m != nil {
		drained := "drained"
		if !m.Drained {
			drained = "NOT drained"
		}
		fmt.Fprintf(w, "  persister     %d stored from window start to drain (%s %.1f s after publishing); lag p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, mean %.1f ms (bucket resolution, interpolated)\n",
			m.Stored, drained, m.DrainSeconds, m.LagP50, m.LagP90, m.LagP99, m.LagMean)
		fmt.Fprintf(w, "  persister     %d inserts of %.0f messages on average, insert mean %.1f ms, p99 %.1f ms; consumer pending max %.0f, last %.0f (%d samples), ack pending max %.0f\n",
			m.Inserts, m.BatchMean, m.WriteMean, m.WriteP99, m.PendingMax, m.PendingLast, m.PendingSamples, m.AckPendingMax)
	}
	if c.Subs > 0 && !c.Idle {
		fmt.Fprintf(w, "  deliveries    %.0f/s (%d in window, %d total of %d expected)\n", d.PerSec, d.Window, d.Total, d.Expected)
		fmt.Fprintf(w, "  e2e latency   p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n", d.E2E.P50, d.E2E.P90, d.E2E.P99, d.E2E.P999, d.E2E.Max)
		fmt.Fprintf(w, "  correctness   lost %d, duplicated %d, out of order %d, disconnected %d %v, error frames %d, unparsable %d\n",
			d.Lost, d.Duplicates, d.OutOfOrder, d.Disconnected, d.CloseCodes, d.ErrorFrames, d.BadFrames)
	}
	if pc := &c.Presence; pc.On || pc.Churn > 0 {
		pr := &r.Presence
		fmt.Fprintf(w, "  presence      opted in %v, %d typers sent %d typing frames (%d failed); %d churn connections joined and left (%d failed",
			pc.On, pc.Typers, pr.TypingSent, pr.TypingErrors, r.Churn.Joined, r.Churn.Failed)
		if r.Churn.FirstError != "" {
			fmt.Fprintf(w, ": %s", r.Churn.FirstError)
		}
		fmt.Fprintf(w, "); subscribers got %d presence, %d join, %d leave, %d typing frames\n",
			pr.Frames.Presence, pr.Frames.Join, pr.Frames.Leave, pr.Frames.Typing)
	}
	if s := &r.Server; len(s.PIDs) > 0 {
		fmt.Fprintf(w, "  server %v  cpu %.2f s in window (%.0f%% of a core, %.0f%% of it in the kernel)", s.PIDs, s.CPUSeconds, 100*s.CPUUtilization, 100*s.SysSeconds/max(s.CPUSeconds, 1e-9))
		if s.CPUPerMillion > 0 {
			fmt.Fprintf(w, ", %.2f cpu-s per million deliveries", s.CPUPerMillion)
		}
		if s.CPUPerThousandPost > 0 {
			fmt.Fprintf(w, ", %.3f cpu-s per thousand posts", s.CPUPerThousandPost)
		}
		if s.WriteCalls > 0 {
			fmt.Fprintf(w, "; %d write calls (%.2f deliveries per write)", s.WriteCalls, float64(r.Deliveries.Window)/float64(s.WriteCalls))
		}
		fmt.Fprintf(w, "\n  server rss    before %.1f MiB, connected %.1f MiB, end %.1f MiB; %.0f bytes (%.2f KiB) per connection\n",
			mib(s.RSSBefore), mib(s.RSSConnected), mib(s.RSSEnd), s.RSSPerConn, s.RSSPerConn/1024)
		if s.RSSPerConnHeld > 0 {
			fmt.Fprintf(w, "  held idle     %.0f bytes (%.2f KiB) per connection at the end of the hold\n", s.RSSPerConnHeld, s.RSSPerConnHeld/1024)
		}
	}
	fmt.Fprintf(w, "  load tool     %.2f cpu-s in window (this process), children %.2f cpu-s in total\n", r.Tool.CPUSecondsWindow, r.Tool.ChildrenCPUSeconds)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  error         %s\n", e)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
