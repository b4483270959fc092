package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// run executes one bounded run and returns its report.
func run(ctx context.Context, cfg config) (*report, error) {
	limit := cfg.ConnectTimeout + cfg.Warmup + cfg.Duration + cfg.Drain + cfg.Settle + time.Minute
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	rep := newReport(&cfg)
	srv := &rep.Server
	sample := func() procSample {
		if len(cfg.ServerPIDs) == 0 {
			return procSample{}
		}
		s, err := readProcs(cfg.ServerPIDs)
		if err != nil && rep.Errors == nil {
			rep.Errors = append(rep.Errors, err.Error())
		}
		return s
	}
	srv.RSSBefore = sample().RSSBytes

	var h holder
	var subs subResult
	if cfg.Subs > 0 {
		if cfg.Procs > 0 {
			cs, err := startChildren(&cfg)
			if err != nil {
				return nil, err
			}
			h = cs
		} else {
			h = localHolder{newSubGroup(&cfg)}
		}
		connStart := time.Now()
		ok, failed, err := h.connect(ctx)
		rep.ConnectSeconds = time.Since(connStart).Seconds()
		subs.Connected, subs.ConnectFailed = ok, failed
		if err != nil {
			subs.ConnectError = err.Error()
		}
		if ok == 0 {
			return nil, fmt.Errorf("no subscriber connected: %v", err)
		}
	}

	if cfg.Idle {
		sleepCtx(ctx, cfg.Settle)
		srv.RSSConnected = sample().RSSBytes
		cpu0 := sample()
		sleepCtx(ctx, cfg.Duration) // hold the idle sockets
		end := sample()
		srv.RSSEnd, srv.CPUSeconds = end.RSSBytes, end.CPUSeconds-cpu0.CPUSeconds
		srv.SysSeconds = end.SysSeconds - cpu0.SysSeconds
		if h != nil {
			res, err := h.finish(expected{}, 0)
			if err != nil {
				rep.Errors = append(rep.Errors, err.Error())
			}
			subs.merge(res)
		}
		rep.finish(&cfg, subs, pubResult{})
		return rep, nil
	}

	srv.RSSConnected = sample().RSSBytes
	start := time.Now().Add(100 * time.Millisecond)
	from, to := start.Add(cfg.Warmup), start.Add(cfg.Warmup+cfg.Duration)
	if h != nil {
		h.setWindow(from.UnixNano(), to.UnixNano())
	}
	pub := newPubGroup(&cfg)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		sleepCtx(ctx, time.Until(from))
		s0, t0 := sample(), selfCPU()
		sleepCtx(ctx, time.Until(to))
		s1, t1 := sample(), selfCPU()
		srv.CPUSeconds, srv.SysSeconds, srv.RSSEnd = s1.CPUSeconds-s0.CPUSeconds, s1.SysSeconds-s0.SysSeconds, s1.RSSBytes
		srv.WriteCalls = s1.WriteCalls - s0.WriteCalls
		rep.Tool.CPUSecondsWindow = t1 - t0
	}()
	var mw *metricsWatch
	watched := make(chan struct{})
	if len(cfg.Metrics) > 0 {
		mw = &metricsWatch{s: newScraper(cfg.Metrics)}
		go func() {
			defer close(watched)
			mw.window(ctx, from, to)
		}()
	} else {
		close(watched)
	}
	churned := make(chan churnResult, 1)
	go func() { churned <- churn(ctx, &cfg, start, to) }()
	pub.run(ctx, start, from.UnixNano(), to.UnixNano())
	pubEnd := time.Now()
	rep.Churn = <-churned
	<-sampled
	<-watched
	if h != nil {
		res, err := h.finish(pub.expected(), cfg.Drain)
		if err != nil {
			rep.Errors = append(rep.Errors, err.Error())
		}
		subs.merge(res)
	}
	pr := pub.result()
	rep.finish(&cfg, subs, pr)
	if mw != nil {
		res, err := mw.drain(ctx, pubEnd, cfg.Drain, pr.WindowAcked)
		if err != nil {
			rep.Errors = append(rep.Errors, "metrics: "+err.Error())
		}
		rep.Persister = &res
	}
	if ctx.Err() != nil {
		return rep, errors.New("run interrupted or over its time limit")
	}
	return rep, nil
}

func selfCPU() float64 {
	s, _ := readProc(0)
	return s.CPUSeconds
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
