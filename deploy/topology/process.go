package topology

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is one member of the topology: a binary with fixed arguments, environment and
// ports, so it can be killed, stopped and started again in place (same ports, same data
// directory). Its stdout and stderr are appended to LogPath.
type Process struct {
	// Name is unique in the topology: nats-1, ferretdb, api-1, persister-2, pusher-3, nginx.
	Name string
	// Addr is the host:port of its main listener (clients, HTTP or MongoDB wire).
	Addr string
	// LogPath receives the process's output, across restarts.
	LogPath string
	// Monitor is the HTTP monitoring base URL of a NATS server (/healthz, /jsz); empty
	// for the others (their health endpoints are on URL).
	Monitor string

	bin   string
	args  []string
	env   []string
	ready func(ctx context.Context) error // nil: started is ready

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // exit status of the last run
}

// URL is "http://" + Addr.
func (p *Process) URL() string { return "http://" + p.Addr }

// Start starts the process (an error if it is running) and waits until it is ready:
// listening, healthy or ready as its kind defines (/readyz for the services, /healthz
// for NATS, which includes JetStream being current).
func (p *Process) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: already running (pid %d)", p.Name, p.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: log: %w", p.Name, err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.mu.Unlock()
		return fmt.Errorf("%s: start: %w", p.Name, err)
	}
	logf.Close() // the child has its own copy
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		if p.cmd == cmd {
			p.cmd = nil
		}
		p.mu.Unlock()
		close(exited)
	}()
	if p.ready == nil {
		return nil
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-rctx.Done():
		}
	}()
	if err := p.ready(rctx); err != nil {
		select {
		case <-exited:
			return fmt.Errorf("%s exited before it was ready: %v (log %s)", p.Name, p.exitErr(), p.LogPath)
		default:
		}
		return fmt.Errorf("%s not ready: %w (log %s)", p.Name, err, p.LogPath)
	}
	return nil
}

func (p *Process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Running reports whether the process is running.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Pid is the process id, 0 when not running.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Kill sends SIGKILL (kill -9, a crash: nothing is flushed or drained) and waits for
// the process to exit. Killing a stopped process does nothing.
func (p *Process) Kill() error {
	return p.signal(syscall.SIGKILL, time.Minute)
}

// Stop sends SIGTERM (a graceful shutdown: the services drain) and waits up to timeout
// for the exit, then kills it. It returns an error if the process had to be killed.
func (p *Process) Stop(timeout time.Duration) error {
	return p.signal(syscall.SIGTERM, timeout)
}

// Signal sends sig without waiting; Exited tells when the process is gone.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s: not running", p.Name)
	}
	return p.sendLocked(sig)
}

// Exited is closed when the current run ends (a closed channel if not running).
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.exited
}

func (p *Process) sendLocked(sig syscall.Signal) error {
	if err := kill(p.cmd.Process, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s: signal %v: %w", p.Name, sig, err)
	}
	return nil
}

func (p *Process) signal(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	if p.cmd == nil {
		p.mu.Unlock()
		return nil
	}
	exited := p.exited
	err := p.sendLocked(sig)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
	}
	p.mu.Lock()
	if p.cmd != nil {
		_ = p.sendLocked(syscall.SIGKILL)
	}
	p.mu.Unlock()
	<-exited
	return fmt.Errorf("%s: did not exit within %v of %v, killed", p.Name, timeout, sig)
}
