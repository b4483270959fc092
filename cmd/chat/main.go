// Command chat runs the whole chat system in one process: api (UI, REST), persister and
// pusher (/ws) on one HTTP port. With neither CHAT_NATS_URL nor CHAT_MONGO_URI set it also
// runs an embedded NATS server with JetStream (127.0.0.1:4222) and an embedded
// MongoDB-wire server (FerretDB on SQLite, 127.0.0.1:27017), both storing under ./data,
// so `go run ./cmd/chat` is a complete local chat on http://127.0.0.1:8080.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/chatrt/chat/harness/embedded"
	"github.com/chatrt/chat/pkg/buildinfo"
	"github.com/chatrt/chat/pkg/diag"
	"github.com/chatrt/chat/pkg/history"
	"github.com/chatrt/chat/pkg/natsconn"
	apiapp "github.com/chatrt/chat/services/api/app"
	persisterapp "github.com/chatrt/chat/services/persister/app"
	pusherapp "github.com/chatrt/chat/services/pusher/app"
	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
)

// Config is the all-in-one's own configuration (CHAT_ prefix); each service also reads
// its own settings from the same environment.
type Config struct {
	// NATSURL and MongoURI point at external servers; each one left empty is embedded.
	NATSURL  string `envconfig:"NATS_URL"`
	MongoURI string `envconfig:"MONGO_URI"`
	// HTTPAddr serves UI, API and /ws.
	HTTPAddr string `envconfig:"HTTP_ADDR" default:"127.0.0.1:8080"`
	// DataDir holds the embedded servers' data (nats/, mongo/).
	DataDir string `envconfig:"DATA_DIR" default:"data"`
	// EmbeddedNATSAddr and EmbeddedMongoAddr are where the embedded servers listen, so
	// other processes can publish and tools such as mongosh can read.
	EmbeddedNATSAddr  string        `envconfig:"EMBEDDED_NATS_ADDR" default:"127.0.0.1:4222"`
	EmbeddedMongoAddr string        `envconfig:"EMBEDDED_MONGO_ADDR" default:"127.0.0.1:27017"`
	ShutdownTimeout   time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"15s"`

	// Diag is CHAT_LOG_LEVEL and CHAT_DEBUG_ADDR: one level and one pprof endpoint for
	// the whole process.
	Diag      diag.Config         `ignored:"true"`
	API       apiapp.Config       `ignored:"true"`
	Persister persisterapp.Config `ignored:"true"`
	Pusher    pusherapp.Config    `ignored:"true"`
}

func main() {
	version := flag.Bool("version", false, "print the build (version, commit, commit time) and exit")
	flag.Parse()
	if *version {
		fmt.Println(buildinfo.Read().String("chat"))
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// No service key here: each app's records carry its own (service=api, ...); the
	// process's own records say service=chat.
	code := 0
	cfg, err := loadConfig()
	log := diag.NewLogger(os.Stderr, cfg.Diag)
	if err != nil {
		log.Error("config", "service", "chat", "error", err)
		code = 2
	} else if err := run(ctx, cfg, log); err != nil {
		log.Error("run", "service", "chat", "error", err)
		code = 1
	}
	stop()
	os.Exit(code)
}

func loadConfig() (Config, error) {
	var cfg Config
	var errs []error
	for _, c := range []any{&cfg, &cfg.Diag, &cfg.API, &cfg.Persister, &cfg.Pusher} {
		errs = append(errs, envconfig.Process("chat", c))
	}
	return cfg, errors.Join(errs...)
}

func run(ctx context.Context, cfg Config, log *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	return serve(ctx, cfg, log, ln)
}

// serve runs the system on ln until ctx ends, then shuts down in order: stop intake
// (readiness false, websocket clients closed with 1012, in-flight posts finished), drain
// the consumers, close the connections, stop the embedded servers.
func serve(ctx context.Context, cfg Config, log *slog.Logger, ln net.Listener) (err error) {
	defer ln.Close()
	appLog := log
	log = log.With("service", "chat")
	dbg, err := diag.Listen(cfg.Diag, log) // first: a refused address stops the start at once
	if err != nil {
		return err
	}
	natsURL, mongoURI := cfg.NATSURL, cfg.MongoURI
	if natsURL == "" {
		host, port, err := splitAddr(cfg.EmbeddedNATSAddr)
		if err != nil {
			return fmt.Errorf("CHAT_EMBEDDED_NATS_ADDR: %w", err)
		}
		ns, err := embedded.StartNATS(embedded.NATSOptions{Host: host, Port: port, StoreDir: filepath.Join(cfg.DataDir, "nats")})
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		natsURL = ns.ClientURL()
		log.Info("embedded nats", "url", natsURL, "store", filepath.Join(cfg.DataDir, "nats"))
	}
	if mongoURI == "" {
		fd, err := embedded.StartFerret(embedded.FerretOptions{Addr: cfg.EmbeddedMongoAddr, Dir: filepath.Join(cfg.DataDir, "mongo")})
		if err != nil {
			return err
		}
		defer fd.Stop()
		mongoURI = fd.URI()
		log.Info("embedded mongodb (ferretdb/sqlite)", "uri", mongoURI, "dir", filepath.Join(cfg.DataDir, "mongo"))
	}

	// The CHAT_NATS_* security settings every service reads; the embedded server needs none.
	natsCfg := cfg.API.NATS
	if cfg.NATSURL == "" {
		natsCfg = natsconn.NATS{}
	}
	natsCfg.URL = natsURL
	// The api's posts share the connection: no buffering while reconnecting, so a 503
	// never publishes later (as in services/api). Like the pusher, the first connect is
	// retried like a reconnect.
	nc, err := natsconn.Connect(natsCfg, "chat-all-in-one", log, nats.ReconnectBufSize(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		return err
	}
	defer nc.Close() // early returns; the drain is below
	mc, err := history.Connect(ctx, mongoURI)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, history.Disconnect(mc, 5*time.Second)) }()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		// chat_build_info{service="chat",version,commit} = 1: which build serves (the three
		// services in this process are that one build).
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: buildinfo.MetricName, Help: buildinfo.MetricHelp,
			ConstLabels: buildinfo.Read().Labels("chat")}, func() float64 { return 1 }))
	api, err := apiapp.New(ctx, cfg.API, apiapp.Deps{NATS: nc.Conn, Mongo: mc, Metrics: reg, Log: appLog.With("service", "api")})
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	persister, err := persisterapp.New(ctx, cfg.Persister, persisterapp.Deps{NATS: nc.Conn, Mongo: mc, Metrics: reg, Log: appLog.With("service", "persister")})
	if err != nil {
		return fmt.Errorf("persister: %w", err)
	}
	pusher, err := pusherapp.New(ctx, cfg.Pusher, pusherapp.Deps{NATS: nc.Conn, Mongo: mc, Metrics: reg, Log: appLog.With("service", "pusher")})
	if err != nil {
		return fmt.Errorf("pusher: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", pusher.Handler())
	mux.Handle("GET /readyz", readyz([]service{{"api", api}, {"persister", persister}, {"pusher", pusher}}))
	mux.Handle("/", api.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return dbg.Run(gctx) })
	// The persister drains only after the api finished its in-flight posts, so the last
	// posts the api acknowledged are stored before the process exits when they reached the
	// persister by then (as they usually have); one still on its way from the stream to
	// the persister stays in the stream and is stored at the next start.
	apiDone := make(chan struct{})
	persisterCtx, stopPersister := context.WithCancel(context.WithoutCancel(gctx))
	defer stopPersister()
	g.Go(func() error {
		defer close(apiDone)
		return api.Run(gctx)
	})
	g.Go(func() error {
		go func() {
			<-apiDone
			stopPersister()
		}()
		return persister.Run(persisterCtx)
	})
	g.Go(func() error { return pusher.Run(gctx) })
	g.Go(func() error {
		log.Info("listening", "url", "http://"+ln.Addr().String())
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	err = g.Wait()
	log.Info("stopped")
	return errors.Join(err, nc.Shutdown(cfg.ShutdownTimeout))
}

// service is one of the services this process runs, by name.
type service struct {
	name string
	app  interface{ Ready(context.Context) error }
}

// readyz is ready when every service in the process is. The body has one key per service:
// "ready" or why it is not.
func readyz(services []service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := http.StatusOK
		body := make(map[string]string, len(services))
		for _, s := range services {
			body[s.name] = "ready"
			if err := s.app.Ready(r.Context()); err != nil {
				status = http.StatusServiceUnavailable
				body[s.name] = err.Error()
			}
		}
		b, _ := json.Marshal(body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_, _ = w.Write(append(b, '\n'))
	})
}

func splitAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	if port == 0 {
		port = -1 // random
	}
	return host, port, nil
}
