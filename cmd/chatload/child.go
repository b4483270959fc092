package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// holder is whoever holds the subscribers: this process (subGroup) or child processes.
type holder interface {
	connect(ctx context.Context) (ok, failed int, err error)
	setWindow(from, to int64)
	finish(want expected, drain time.Duration) (subResult, error)
}

type localHolder struct{ g *subGroup }

func (l localHolder) connect(ctx context.Context) (int, int, error) { return l.g.connect(ctx) }
func (l localHolder) setWindow(from, to int64)                      { l.g.setWindow(from, to) }
func (l localHolder) finish(want expected, drain time.Duration) (subResult, error) {
	return l.g.finish(want, drain), nil
}

// The parent and a child talk in JSON lines: the child's stdout carries childMsg, its
// stdin parentMsg. Its stderr is the parent's.
type childMsg struct {
	Ready  *readyMsg  `json:"ready,omitempty"`
	Result *subResult `json:"result,omitempty"`
}

type readyMsg struct {
	OK     int    `json:"ok"`
	Failed int    `json:"failed"`
	Error  string `json:"error,omitempty"`
}

type parentMsg struct {
	Window *[2]int64 `json:"window,omitempty"`
	Finish *struct {
		Want  expected      `json:"want"`
		Drain time.Duration `json:"drain"`
	} `json:"finish,omitempty"`
}

// childMain runs a child: the subscribers [SubFrom, SubTo) of the parent's configuration.
func childMain(spec string) int {
	var cfg config
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "chatload child: bad config:", err)
		return 2
	}
	// Never outlive the run, even if the parent disappears without closing our stdin.
	limit := cfg.ConnectTimeout + cfg.Warmup + cfg.Duration + cfg.Drain + cfg.Settle + 2*time.Minute
	time.AfterFunc(limit, func() {
		fmt.Fprintln(os.Stderr, "chatload child: run limit reached")
		os.Exit(3)
	})
	g := newSubGroup(&cfg)
	ok, failed, err := g.connect(context.Background())
	ready := &readyMsg{OK: ok, Failed: failed}
	if err != nil {
		ready.Error = err.Error()
	}
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(childMsg{Ready: ready}); err != nil {
		return 1
	}
	in := json.NewDecoder(bufio.NewReader(os.Stdin))
	for {
		var m parentMsg
		if err := in.Decode(&m); err != nil {
			return 1 // parent gone
		}
		if m.Window != nil {
			g.setWindow(m.Window[0], m.Window[1])
		}
		if m.Finish != nil {
			res := g.finish(m.Finish.Want, m.Finish.Drain)
			if s, err := readProc(0); err == nil {
				res.CPUSeconds = s.CPUSeconds
			}
			if err := out.Encode(childMsg{Result: &res}); err != nil {
				return 1
			}
			return 0
		}
	}
}

// children holds the subscribers in child processes (this executable re-run with the
// configuration in the environment), each with its share of the global subscriber range.
type children struct {
	procs []*childProc
}

type childProc struct {
	cmd *exec.Cmd
	in  *json.Encoder
	w   io.Closer
	out *json.Decoder
}

func startChildren(cfg *config) (*children, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cs := &children{}
	for k := range cfg.Procs {
		cc := *cfg
		cc.SubFrom, cc.SubTo = cfg.Subs*k/cfg.Procs, cfg.Subs*(k+1)/cfg.Procs
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), childEnv+"="+cc.marshal())
		cmd.Stderr = os.Stderr
		w, err := cmd.StdinPipe()
		if err != nil {
			cs.kill()
			return nil, err
		}
		r, err := cmd.StdoutPipe()
		if err != nil {
			cs.kill()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			cs.kill()
			return nil, fmt.Errorf("start child: %w", err)
		}
		cs.procs = append(cs.procs, &childProc{cmd: cmd, in: json.NewEncoder(w), w: w, out: json.NewDecoder(bufio.NewReaderSize(r, 1<<20))})
	}
	return cs, nil
}

func (cs *children) kill() {
	for _, p := range cs.procs {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

// each runs f on every child concurrently and joins the errors.
func (cs *children) each(f func(p *childProc) error) error {
	errs := make([]error, len(cs.procs))
	var wg sync.WaitGroup
	for i, p := range cs.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(p)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (cs *children) connect(ctx context.Context) (ok, failed int, firstErr error) {
	var mu sync.Mutex
	err := cs.each(func(p *childProc) error {
		var m childMsg
		if err := p.out.Decode(&m); err != nil || m.Ready == nil {
			return fmt.Errorf("child %d: no ready message: %v", p.cmd.Process.Pid, err)
		}
		mu.Lock()
		defer mu.Unlock()
		ok += m.Ready.OK
		failed += m.Ready.Failed
		if m.Ready.Error != "" && firstErr == nil {
			firstErr = errors.New(m.Ready.Error)
		}
		return nil
	})
	if err != nil {
		cs.kill()
		return ok, failed, err
	}
	return ok, failed, firstErr
}

func (cs *children) setWindow(from, to int64) {
	w := [2]int64{from, to}
	_ = cs.each(func(p *childProc) error { return p.in.Encode(parentMsg{Window: &w}) })
}

func (cs *children) finish(want expected, drain time.Duration) (subResult, error) {
	var total subResult
	var mu sync.Mutex
	var m parentMsg
	m.Finish = &struct {
		Want  expected      `json:"want"`
		Drain time.Duration `json:"drain"`
	}{want, drain}
	err := cs.each(func(p *childProc) error {
		defer p.cmd.Wait()
		defer p.w.Close()
		if err := p.in.Encode(m); err != nil {
			return fmt.Errorf("child %d: %w", p.cmd.Process.Pid, err)
		}
		var cm childMsg
		if err := p.out.Decode(&cm); err != nil || cm.Result == nil {
			_ = p.cmd.Process.Kill()
			return fmt.Errorf("child %d: no result: %v", p.cmd.Process.Pid, err)
		}
		mu.Lock()
		total.merge(*cm.Result)
		mu.Unlock()
		return nil
	})
	return total, err
}
