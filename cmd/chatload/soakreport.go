package main

import (
	"fmt"
	"io"
	"slices"
)

// soakReport is the soak's result.
type soakReport struct {
	Date   string `json:"date"`
	RunID  string `json:"run_id"`
	Config config `json:"config"`
	Passed bool   `json:"passed"`
	// Failures lists every reason the soak failed (empty: passed).
	Failures []string `json:"failures,omitempty"`
	Seconds  float64  `json:"seconds"`

	Rooms struct {
		Created  int `json:"created"`
		Verified int `json:"verified"`
		Cold     int `json:"cold_resumed"`
	} `json:"rooms"`
	Posts struct {
		Acked   int            `json:"acked"`
		Bytes   int64          `json:"bytes"` // message characters acknowledged into the rooms
		Ticks   int            `json:"ticks"` // posts into the tick room
		Retries map[string]int `json:"retries,omitempty"`
	} `json:"posts"`
	Clients struct {
		Joins        int            `json:"joins"`
		Leaves       int            `json:"leaves"`
		Resumes      int            `json:"resumes"`    // rejoins with since after a leave or a close
		Reconnects   int            `json:"reconnects"` // after the server ended the connection
		DialFailures int            `json:"dial_failures"`
		CloseCodes   map[string]int `json:"close_codes,omitempty"` // closes the server initiated (1006: dropped)
	} `json:"clients"`
	Deliveries  verdict `json:"deliveries"`   // the rooms' clients
	ColdResumes verdict `json:"cold_resumes"` // the final resumes into abandoned rooms
	ErrorFrames int     `json:"error_frames"`
	BadFrames   int     `json:"bad_frames"`
	Restart     struct {
		Command  string  `json:"command,omitempty"`
		URL      string  `json:"url,omitempty"`
		AtSecond float64 `json:"at_second"` // into the main phase
		Seconds  float64 `json:"seconds"`   // hook + until ready
		Clients  int     `json:"clients"`   // connected to it when the hook ran
		Error    string  `json:"error,omitempty"`
	} `json:"restart"`
	Pushers []pusherFigures `json:"pushers"`
}

// writeSummary prints the soak's figures and verdict.
func (r *soakReport) writeSummary(w io.Writer) {
	c := &r.Config
	sc := &c.Soak
	fmt.Fprintf(w, "chatload soak %s (run %s): %s warm-up + %s, %d pushers, %d rooms at a time (life %s), %d clients at a time (stay %s, away %s), %.0f posts/s, sizes %v\n",
		r.Date, r.RunID, c.Warmup, c.Duration, len(c.WS), sc.Rooms, sc.RoomLife, sc.SubsPerRoom()*sc.Rooms, sc.Session, sc.Away, c.Rate, sc.Sizes)
	fmt.Fprintf(w, "  rooms         %d created and abandoned, %d checked, %d resumed cold at the end\n", r.Rooms.Created, r.Rooms.Verified, r.Rooms.Cold)
	fmt.Fprintf(w, "  posts         %d acknowledged (%.1f MiB of text), %d tick posts, retries %v\n", r.Posts.Acked, float64(r.Posts.Bytes)/(1<<20), r.Posts.Ticks, r.Posts.Retries)
	cl := &r.Clients
	fmt.Fprintf(w, "  clients       %d joins, %d leaves, %d resumes with since (%d after a server close), %d failed dials, server closes %v\n",
		cl.Joins, cl.Leaves, cl.Resumes, cl.Reconnects, cl.DialFailures, cl.CloseCodes)
	d := &r.Deliveries
	fmt.Fprintf(w, "  deliveries    %d of %d expected: lost %d, duplicated %d, out of order %d, foreign %d, wrong id %d; error frames %d, unparsable %d\n",
		d.Delivered, d.Expected, d.Lost, d.Duplicated, d.OutOfOrder, d.Foreign, d.WrongID, r.ErrorFrames, r.BadFrames)
	cr := &r.ColdResumes
	fmt.Fprintf(w, "  cold resumes  %d of %d expected: lost %d, duplicated %d, out of order %d, foreign %d, wrong id %d\n",
		cr.Delivered, cr.Expected, cr.Lost, cr.Duplicated, cr.OutOfOrder, cr.Foreign, cr.WrongID)
	if rs := &r.Restart; rs.URL != "" {
		status := "ok"
		if rs.Error != "" {
			status = rs.Error
		}
		fmt.Fprintf(w, "  restart       %s at %.1f s with %d clients on it, back in %.1f s: %s\n", rs.URL, rs.AtSecond, rs.Clients, rs.Seconds, status)
	} else {
		fmt.Fprintf(w, "  restart       none (no -soak-restart)\n")
	}
	for _, p := range r.Pushers {
		restarted := ""
		if p.Restarted {
			restarted = " (restarted: the end is a new process)"
		}
		fmt.Fprintf(w, "  pusher        %s%s: live heap %.1f → %.1f MiB (%+.1f, max +%.0f), heap in use %.1f → %.1f MiB, goroutines %.0f → %.0f (%+.0f, max +%d)\n",
			p.URL, restarted, mib(int64(p.Baseline.LiveHeap)), mib(int64(p.End.LiveHeap)), p.HeapGrowth/(1<<20), sc.MaxHeapGrowth,
			mib(int64(p.Baseline.HeapInuse)), mib(int64(p.End.HeapInuse)), p.Baseline.Goroutines, p.End.Goroutines, p.GoroutineGrowth, sc.MaxGoroutines)
	}
	for _, det := range append(slices.Clone(r.Deliveries.Details), r.ColdResumes.Details...) {
		fmt.Fprintf(w, "  detail        %s\n", det)
	}
	if r.Passed {
		fmt.Fprintf(w, "PASS in %.1f s\n", r.Seconds)
		return
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  FAILURE       %s\n", f)
	}
	fmt.Fprintf(w, "FAIL in %.1f s\n", r.Seconds)
}
