// Command topology runs the scaled deployment on loopback, in the shape of
// docker-compose.yml: a 3-node NATS cluster (stream CHAT R3), FerretDB, api ×2,
// persister ×2, pusher ×3 and nginx (the compose load balancer's configuration, rendered
// for loopback upstreams). It builds the binaries first, prints where each part listens
// and stops everything on Ctrl-C. From the repository root:
//
//	go run ./deploy/cmd/topology [-port 8080] [-dir ./data/topology] [-api 2 -persister 2 -pusher 3]
//
// Every process inherits the environment, so other service settings come from the shell
// (e.g. CHAT_RATE_LIMIT=0); the topology sets CHAT_NATS_URL, CHAT_MONGO_URI,
// CHAT_HTTP_ADDR, CHAT_STREAM_REPLICAS=3 and the api's CHAT_TRUSTED_PROXIES itself.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/chatrt/chat/deploy/topology"
	"github.com/chatrt/chat/pkg/buildinfo"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "topology:", err)
		os.Exit(1)
	}
}

func run() error {
	port := flag.Int("port", 8080, "nginx port on 127.0.0.1 (0: a free port)")
	dir := flag.String("dir", "data/topology", "state directory: data, logs, configuration (kept across runs)")
	apis := flag.Int("api", 2, "api replicas")
	persisters := flag.Int("persister", 2, "persister replicas")
	pushers := flag.Int("pusher", 3, "pusher replicas")
	nginx := flag.String("nginx", "", "nginx binary (default: nginx on PATH or /usr/sbin/nginx)")
	version := flag.Bool("version", false, "print the build (version, commit, commit time) and exit")
	flag.Parse()
	if *version {
		fmt.Println(buildinfo.Read().String("topology"))
		return nil
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	root, err := topology.RepoRoot(wd)
	if err != nil {
		return err
	}
	state, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	bin := filepath.Join(state, "bin")
	fmt.Println("building binaries into", bin)
	if err := topology.Build(ctx, root, bin); err != nil {
		return err
	}
	start := time.Now()
	t, err := topology.Start(ctx, topology.Options{
		BinDir: bin, Dir: state, Nginx: *nginx, Port: *port,
		APIs: *apis, Persisters: *persisters, Pushers: *pushers,
	})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\nstarted in %v; logs in %s\n\n", time.Since(start).Round(time.Millisecond), filepath.Join(state, "logs"))
	fmt.Fprintln(tw, "member\tlistens\tpid\thealth")
	for _, p := range t.All() {
		health := p.URL() + "/readyz"
		switch {
		case p.Monitor != "":
			health = p.Monitor + "/healthz"
		case p == t.FerretDB:
			health = t.MongoURI
		case p == t.Nginx:
			health = t.URL + "/healthz (api)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", p.Name, p.Addr, p.Pid(), health)
	}
	fmt.Fprintf(tw, "\nopen %s (UI, API; /ws -> pushers)\nCHAT_NATS_URL=%s\nCHAT_MONGO_URI=%s\nCtrl-C stops everything.\n",
		t.URL, t.NATSURL, t.MongoURI)
	_ = tw.Flush()
	<-ctx.Done()
	fmt.Println("\nstopping (services drain first)")
	return t.Close()
}
