// Package chattest holds test helpers shared by the services' tests: an embedded NATS
// server and a FerretDB child process on random ports in temporary directories, which
// tests may stop and restart (same port, same data) to inject outages, and condition
// waits with deadlines.
package chattest

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/embedded"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS is an embedded NATS server owned by a test.
type NATS struct {
	t    testing.TB
	dir  string
	port int
	srv  *server.Server
}

// StartNATS starts a NATS server with JetStream; it is shut down when the test ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	n := &NATS{t: t, dir: t.TempDir(), port: freePort(t)}
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

// freePort is a port for a server that tests stop and restart on it: from below the
// ephemeral range (embedded.FreePorts), so no client's connection takes it meanwhile.
func freePort(t testing.TB) int {
	t.Helper()
	ports, err := embedded.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}

// URL is the client URL (stable across restarts).
func (n *NATS) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// Server is the running server, nil while stopped.
func (n *NATS) Server() *server.Server { return n.srv }

// Stop shuts the server down (no-op when stopped).
func (n *NATS) Stop() {
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
}

// Start (re)starts the server on the same port with the same store.
func (n *NATS) Start() {
	n.t.Helper()
	if n.srv != nil {
		return
	}
	s, err := embedded.StartNATS(embedded.NATSOptions{Port: n.port, StoreDir: n.dir})
	if err != nil {
		n.t.Fatalf("start nats: %v", err)
	}
	n.srv = s
}

// Connect returns a client connection that retries forever and closes when the test ends.
func (n *NATS) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(n.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect nats: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// EnsureStreams creates the chat streams with default options.
func (n *NATS) EnsureStreams(t testing.TB, js jetstream.JetStream) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := chat.EnsureStreams(ctx, js, chat.DefaultStreamOptions())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Eventually polls cond every 10ms until it holds or timeout passes, then fails the test.
// Its args are evaluated when it is called: a Later among them shows the state at the
// deadline instead.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	EventuallyEvery(t, timeout, 10*time.Millisecond, cond, format, args...)
}

// Later prints as what f returns when it is printed.
type Later func() string

func (l Later) String() string { return l() }

// EventuallyEvery is Eventually polling every interval: for conditions that cost the
// system under test, such as counting a FerretDB collection (a full scan each time,
// which polled every 10ms starved the persister's writes after a restart).
func EventuallyEvery(t testing.TB, timeout, interval time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, fmt.Sprintf(format, args...))
		}
		time.Sleep(interval)
	}
}
