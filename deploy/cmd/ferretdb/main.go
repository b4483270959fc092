// Command ferretdb runs FerretDB on SQLite (github.com/chatrt/chat/harness/embedded) as a
// process, the MongoDB of the loopback topology (deploy/topology):
//
//	ferretdb -addr 127.0.0.1:27017 -dir ./data/ferretdb
//
// It prints the mongodb:// URI once it accepts connections and stops on SIGINT/SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/chatrt/chat/harness/embedded"
	"github.com/chatrt/chat/pkg/buildinfo"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:27017", "listen address (host:port)")
	dir := flag.String("dir", "data/ferretdb", "SQLite directory")
	version := flag.Bool("version", false, "print the build (version, commit, commit time) and exit")
	flag.Parse()
	if *version {
		fmt.Println(buildinfo.Read().String("ferretdb"))
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	f, err := embedded.StartFerret(embedded.FerretOptions{Addr: *addr, Dir: *dir, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(1)
	}
	fmt.Println(f.URI())
	<-ctx.Done()
	f.Stop()
}
