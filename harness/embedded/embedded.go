// Package embedded runs the servers the system needs in-process: a NATS server with
// JetStream and a MongoDB-wire server (FerretDB on SQLite). The all-in-one command uses
// them as its local default; tests use them (on random ports and temporary directories)
// to run against real servers and to stop and restart them for fault injection.
package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/nats-io/nats-server/v2/server"
)

// NATSOptions configure an embedded NATS server.
type NATSOptions struct {
	Host     string // default 127.0.0.1
	Port     int    // 0 or -1: a random free port
	StoreDir string // JetStream file store; required
}

// StartNATS starts a NATS server with JetStream and waits until it accepts clients.
// Stop it with Shutdown and WaitForShutdown.
func StartNATS(o NATSOptions) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, fmt.Errorf("start nats: StoreDir is required")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	if err := os.MkdirAll(o.StoreDir, 0o755); err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "chat-embedded",
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		// Room for the api's 64 KiB bodies plus headers.
		MaxPayload: 1 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("start nats on %s:%d: not ready after 30s", o.Host, o.Port)
	}
	return s, nil
}

// FerretOptions configure an embedded FerretDB.
type FerretOptions struct {
	Addr   string // host:port; default 127.0.0.1:0 (random port)
	Dir    string // SQLite directory (one file per database); required
	Logger *slog.Logger
}

// Ferret is a running embedded FerretDB.
type Ferret struct {
	uri    string
	addr   string
	cancel context.CancelFunc
	done   chan struct{}
}

// StartFerret starts FerretDB with the SQLite handler and waits until it accepts connections.
// Beside it runs an indexer that makes FerretDB's lookups by _id use an index
// (idindex.go).
func StartFerret(o FerretOptions) (*Ferret, error) {
	if o.Dir == "" {
		return nil, fmt.Errorf("start ferretdb: Dir is required")
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("start ferretdb: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start ferretdb: %w", err)
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: o.Addr},
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
		Logger:    slog.New(&lazyHandler{inner: o.Logger.Handler()}),
	})
	if err != nil {
		return nil, fmt.Errorf("start ferretdb on %s: %w", o.Addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fd := &Ferret{cancel: cancel, done: make(chan struct{})}
	indexed := make(chan struct{})
	go func() {
		defer close(indexed)
		newIDIndexer(dir, o.Logger).Run(ctx)
	}()
	go func() {
		defer close(fd.done)
		_ = f.Run(ctx)
		<-indexed
	}()
	fd.uri = f.MongoDBURI()
	host, port, _ := net.SplitHostPort(fd.uri[len("mongodb://") : len(fd.uri)-1])
	fd.addr = net.JoinHostPort(host, port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fd.addr, time.Second)
		if err == nil {
			c.Close()
			return fd, nil
		}
		if time.Now().After(deadline) {
			fd.Stop()
			return nil, fmt.Errorf("start ferretdb on %s: not accepting connections: %w", fd.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URI is the mongodb:// URI of the server.
func (f *Ferret) URI() string { return f.uri }

// Addr is the host:port the server listens on.
func (f *Ferret) Addr() string { return f.addr }

// Stop stops the server and waits for it to close its listener and store.
func (f *Ferret) Stop() {
	f.cancel()
	<-f.done
}
