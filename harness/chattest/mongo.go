package chattest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/history"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Mongo is a FerretDB (on SQLite) owned by a test. It runs as a child process built
// without -race (see ferretBinary): inside a -race test binary every SQLite instruction
// is instrumented and FerretDB's queries are full scans, so a few thousand messages made
// each query cost ~10ms and fault tests timed out their writes.
type Mongo struct {
	t    testing.TB
	dir  string
	addr string
	bin  string

	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been waited for
	stderr *tailBuffer
}

// StartMongo starts FerretDB on SQLite; it is stopped when the test ends.
func StartMongo(t testing.TB) *Mongo {
	t.Helper()
	m := &Mongo{t: t, dir: t.TempDir(), addr: "127.0.0.1:" + strconv.Itoa(freePort(t)), bin: ferretBinary(t)}
	t.Cleanup(m.Stop)
	m.Start()
	return m
}

// URI is the mongodb:// URI (stable across restarts).
func (m *Mongo) URI() string { return "mongodb://" + m.addr + "/" }

// Stop stops the server with SIGTERM and waits for it to exit (killing it after 10s);
// no-op when stopped. A server that exited by itself meanwhile fails the test.
func (m *Mongo) Stop() {
	if m.cmd == nil {
		return
	}
	select {
	case <-m.exited:
		m.t.Errorf("ferretdb exited unexpectedly: %v\n%s", m.cmd.ProcessState, m.stderr)
	default:
		if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			_ = m.cmd.Process.Kill()
		}
		select {
		case <-m.exited:
		case <-time.After(10 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.exited
			m.t.Errorf("ferretdb did not stop within 10s of SIGTERM; killed\n%s", m.stderr)
		}
	}
	m.cmd = nil
}

// Start (re)starts the server on the same address with the same data.
func (m *Mongo) Start() {
	m.t.Helper()
	if m.cmd != nil {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := m.spawn()
		if err == nil {
			return
		}
		// Right after a stop the port may still be held briefly: the child then exits.
		if time.Now().After(deadline) {
			m.t.Fatalf("start ferretdb on %s: %v", m.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// spawn starts one child and waits for the URI line it prints once it accepts
// connections; on the first start it learns the random port from it.
func (m *Mongo) spawn() error {
	cmd := exec.Command(m.bin, "-addr", m.addr, "-dir", m.dir)
	dieWithParent(cmd)
	stderr := &tailBuffer{max: 16 << 10}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	uri := make(chan string, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		uri <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, r)
	}()
	exited := make(chan struct{})
	go func() {
		<-readDone // Wait closes stdout: read it to the end first
		_ = cmd.Wait()
		close(exited)
	}()
	fail := func(err error) error {
		_ = cmd.Process.Kill()
		<-exited
		return errors.Join(err, errors.New(stderr.String()))
	}
	select {
	case u := <-uri:
		addr, ok := strings.CutPrefix(u, "mongodb://")
		addr, _, _ = strings.Cut(addr, "/")
		if !ok || addr == "" {
			return fail(errors.New("ferretdb printed no mongodb:// URI: " + u))
		}
		if strings.HasSuffix(m.addr, ":0") {
			m.addr = addr
		}
	case <-time.After(60 * time.Second):
		return fail(errors.New("ferretdb printed no URI within 60s"))
	}
	m.cmd, m.exited, m.stderr = cmd, exited, stderr
	return nil
}

// Connect returns a mongo client that is disconnected when the test ends.
func (m *Mongo) Connect(t testing.TB) *mongo.Client {
	t.Helper()
	c, err := history.Connect(context.Background(), m.URI())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}
