// Package topology runs the scaled deployment of the chat backend as processes on
// loopback, in the shape of docker-compose.yml: a 3-node NATS cluster with JetStream
// (stream CHAT replicated R3), FerretDB as the MongoDB, api, persister and pusher
// replicas, and real nginx in front, configured by deploy.RenderNginx from the same
// template as the compose load balancer. Every member is a Process that can be killed
// (-9), stopped (SIGTERM) and started again on the same ports and data, for fault tests.
// deploy/cmd/topology is its command.
package topology

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/chatrt/chat/deploy"
	"github.com/chatrt/chat/harness/embedded"
	"golang.org/x/sync/errgroup"
)

// Options shape a topology. Zero counts mean the compose defaults.
type Options struct {
	// BinDir holds the binaries (Build). Required.
	BinDir string
	// Dir receives data, logs and configuration; created if missing. Required.
	Dir string
	// Nginx is the nginx binary; empty: "nginx" on PATH or /usr/sbin/nginx.
	Nginx string
	// Port is nginx's port on 127.0.0.1; 0: a free port.
	Port int
	// APIs, Persisters, Pushers are the replica counts (default 2, 2, 3).
	APIs, Persisters, Pushers int
	// Env is added to every service's environment (KEY=value); APIEnv, PersisterEnv
	// and PusherEnv to one kind's (later entries win).
	Env, APIEnv, PersisterEnv, PusherEnv []string
	// StartTimeout bounds the start of each member (default 60s).
	StartTimeout time.Duration
}

// NATSNodes is the size of the NATS cluster (and the stream's replica count).
const NATSNodes = 3

// Topology is a running topology.
type Topology struct {
	// URL is the load balancer, the only entry point clients need: http://127.0.0.1:port.
	URL string
	// NATSURL lists every NATS server (comma-separated), as the services get it.
	NATSURL string
	// MongoURI is FerretDB's mongodb:// URI.
	MongoURI string

	NATS       []*Process // nats-1..3; Addr is the client port, Monitor the HTTP monitoring port
	FerretDB   *Process
	APIs       []*Process
	Persisters []*Process
	Pushers    []*Process
	Nginx      *Process

	dir string
}

// NginxBinary finds nginx: "nginx" on PATH, else Debian's /usr/sbin/nginx (not on a
// non-root PATH).
func NginxBinary() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", errors.New("nginx not found (Debian: apt-get install nginx-light)")
}

// Start starts every member in dependency order (NATS cluster, FerretDB, one api to
// create the streams, the other services, nginx), each waited for until ready. On error
// it stops what it started.
func Start(ctx context.Context, o Options) (*Topology, error) {
	if o.BinDir == "" || o.Dir == "" {
		return nil, errors.New("topology: BinDir and Dir are required")
	}
	o.APIs, o.Persisters, o.Pushers = orDefault(o.APIs, 2), orDefault(o.Persisters, 2), orDefault(o.Pushers, 3)
	if o.StartTimeout <= 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.Nginx == "" {
		bin, err := NginxBinary()
		if err != nil {
			return nil, err
		}
		o.Nginx = bin
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	bin, err := filepath.Abs(o.BinDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	ports, err := embedded.FreePorts(3*NATSNodes + 2 + o.APIs + o.Persisters + o.Pushers)
	if err != nil {
		return nil, err
	}
	next := func() int { p := ports[0]; ports = ports[1:]; return p }
	if o.Port == 0 {
		o.Port = next()
	}
	t := &Topology{dir: dir, URL: fmt.Sprintf("http://127.0.0.1:%d", o.Port)}

	var clientURLs []string
	nodes := make([]natsNode, NATSNodes)
	for i := range nodes {
		nodes[i] = natsNode{name: fmt.Sprintf("nats-%d", i+1), client: next(), cluster: next(), monitor: next()}
		clientURLs = append(clientURLs, fmt.Sprintf("nats://127.0.0.1:%d", nodes[i].client))
	}
	t.NATSURL = strings.Join(clientURLs, ",")
	for _, n := range nodes {
		p, err := n.process(dir, bin, nodes)
		if err != nil {
			return nil, err
		}
		t.NATS = append(t.NATS, p)
	}
	ferretAddr := fmt.Sprintf("127.0.0.1:%d", next())
	t.MongoURI = "mongodb://" + ferretAddr + "/"
	t.FerretDB = &Process{Name: "ferretdb", Addr: ferretAddr, bin: filepath.Join(bin, BinFerretDB),
		args: []string{"-addr", ferretAddr, "-dir", filepath.Join(dir, "ferretdb")}, ready: dialReady(ferretAddr)}

	common := []string{
		"CHAT_NATS_URL=" + t.NATSURL,
		"CHAT_MONGO_URI=" + t.MongoURI,
		fmt.Sprintf("CHAT_STREAM_REPLICAS=%d", NATSNodes),
	}
	service := func(kind, binName string, i int, env []string) *Process {
		addr := fmt.Sprintf("127.0.0.1:%d", next())
		e := append(append(append([]string{}, common...), "CHAT_HTTP_ADDR="+addr), o.Env...)
		return &Process{Name: fmt.Sprintf("%s-%d", kind, i+1), Addr: addr, bin: filepath.Join(bin, binName),
			env: append(e, env...), ready: httpReady("http://" + addr + "/readyz")}
	}
	var apiPorts, pusherPorts []int
	for i := range o.APIs {
		p := service("api", BinAPI, i, append([]string{"CHAT_TRUSTED_PROXIES=127.0.0.1"}, o.APIEnv...))
		t.APIs = append(t.APIs, p)
		apiPorts = append(apiPorts, port(p.Addr))
	}
	for i := range o.Persisters {
		t.Persisters = append(t.Persisters, service("persister", BinPersister, i, o.PersisterEnv))
	}
	for i := range o.Pushers {
		p := service("pusher", BinPusher, i, o.PusherEnv)
		t.Pushers = append(t.Pushers, p)
		pusherPorts = append(pusherPorts, port(p.Addr))
	}
	nginxDir := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(nginxDir, 0o755); err != nil {
		return nil, err
	}
	conf, err := deploy.RenderNginx(deploy.LoopbackNginxParams(o.Port, apiPorts, pusherPorts, nginxDir))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(nginxDir, "nginx.conf"), conf, 0o644); err != nil {
		return nil, err
	}
	lbAddr := fmt.Sprintf("127.0.0.1:%d", o.Port)
	t.Nginx = &Process{Name: "nginx", Addr: lbAddr, bin: o.Nginx,
		args:  []string{"-p", nginxDir, "-c", filepath.Join(nginxDir, "nginx.conf"), "-e", "stderr", "-g", "daemon off;"},
		ready: httpReady("http://" + lbAddr + "/healthz")}
	for _, p := range t.All() {
		p.LogPath = filepath.Join(dir, "logs", p.Name+".log")
	}

	// Dependency order; members of one step start together.
	steps := [][]*Process{t.NATS, {t.FerretDB}, t.APIs[:1],
		append(append(append([]*Process{}, t.APIs[1:]...), t.Persisters...), t.Pushers...), {t.Nginx}}
	for _, step := range steps {
		g, gctx := errgroup.WithContext(ctx)
		for _, p := range step {
			g.Go(func() error {
				sctx, cancel := context.WithTimeout(gctx, o.StartTimeout)
				defer cancel()
				return startRestarting(sctx, p)
			})
		}
		if err := g.Wait(); err != nil {
			t.Close()
			return nil, err
		}
	}
	return t, nil
}

// All lists every member in start order.
func (t *Topology) All() []*Process {
	out := append([]*Process{}, t.NATS...)
	out = append(out, t.FerretDB)
	out = append(out, t.APIs...)
	out = append(out, t.Persisters...)
	out = append(out, t.Pushers...)
	return append(out, t.Nginx)
}

// Dir is the topology's state directory (data, logs under logs/, nginx/nginx.conf).
func (t *Topology) Dir() string { return t.dir }

// Close stops every member in reverse dependency order: nginx, the services (SIGTERM,
// draining, together), FerretDB, NATS. Members that do not exit in time are killed.
func (t *Topology) Close() error {
	var errs []error
	stopAll := func(ps []*Process, timeout time.Duration) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, p := range ps {
			if p == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := p.Stop(timeout); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	stopAll([]*Process{t.Nginx}, 10*time.Second)
	services := append(append(append([]*Process{}, t.APIs...), t.Persisters...), t.Pushers...)
	stopAll(services, 30*time.Second)
	stopAll([]*Process{t.FerretDB}, 10*time.Second)
	stopAll(t.NATS, 10*time.Second)
	return errors.Join(errs...)
}

// startRestarting starts p, and starts it again if it exits before it is ready, as
// compose's restart policy does (a service may give up while the fresh NATS cluster
// is still electing its leaders), until ctx ends.
func startRestarting(ctx context.Context, p *Process) error {
	for {
		err := p.Start(ctx)
		if err == nil || p.Running() || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

func orDefault(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	var n int
	fmt.Sscanf(p, "%d", &n)
	return n
}

// httpReady waits for url to answer 200.
func httpReady(url string) func(context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return func(ctx context.Context) error {
		var last string
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
				last = resp.Status
			} else {
				last = err.Error()
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("GET %s: %s", url, last)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// dialReady waits for addr to accept TCP connections.
func dialReady(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		for {
			c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
			if err == nil {
				c.Close()
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("dial %s: %w", addr, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}
