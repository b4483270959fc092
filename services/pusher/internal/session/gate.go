package session

import (
	"net/http"
	"sync"
	"time"

	"github.com/chatrt/chat/pkg/auth"
	"github.com/chatrt/chat/pkg/clientip"
	"github.com/prometheus/client_golang/prometheus"
)

// GateConfig are the per-connection protections in front of the hub.
type GateConfig struct {
	Auth          *auth.Verifier    // nil: no authentication
	AuthTimeout   time.Duration     // wait for a first-frame {"type":"auth"} when no token came with the upgrade
	MaxConns      int               // connections on this node; 0: unlimited
	MaxConnsPerIP int               // connections per client address (IPv6: /64); 0: unlimited
	CommandRate   float64           // client commands per second; 0: unlimited
	CommandBurst  int               // commands allowed at once; refusing this many in a row closes 1008
	Clients       clientip.Resolver // finds the client address (trusted proxies)
}

// Gate admits connections: it authenticates the upgrade, applies the connection caps and
// hands each admitted connection its Policy.
type Gate struct {
	cfg GateConfig

	mu    sync.Mutex
	total int
	perIP map[string]int

	rejected      *prometheus.CounterVec
	rateLimited   prometheus.Counter
	authFailures  *prometheus.CounterVec
	queueDepthMax prometheus.GaugeFunc
	queuedFrames  prometheus.GaugeFunc
}

// newGate makes a gate; its metrics go to reg (nil: none), with queue depths sampled
// from depths at scrape time.
func newGate(cfg GateConfig, depths func() (sum, longest int), reg prometheus.Registerer) *Gate {
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = 10 * time.Second
	}
	if cfg.CommandBurst < 1 {
		cfg.CommandBurst = 1
	}
	g := &Gate{cfg: cfg, perIP: make(map[string]int),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_pusher_rejected_connections_total",
			Help: "Websocket upgrades refused by reason (max_connections, max_connections_per_ip, unauthorized, forbidden)."}, []string{"reason"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_pusher_commands_rate_limited_total",
			Help: "Client commands refused by the per-connection rate limit."}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_pusher_auth_failures_total",
			Help: "Websocket authentication and authorization failures by stage (upgrade, frame, subscribe, expired)."}, []string{"stage"}),
	}
	// Queue depth is read at scrape time, not maintained per delivery.
	g.queuedFrames = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chat_pusher_queued_frames",
		Help: "Frames waiting in all client queues (sampled at scrape)."}, func() float64 { sum, _ := depths(); return float64(sum) })
	g.queueDepthMax = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chat_pusher_queue_depth_max",
		Help: "Frames waiting in the fullest client queue (sampled at scrape); eviction at CHAT_QUEUE_SIZE."}, func() float64 { _, m := depths(); return float64(m) })
	if reg != nil {
		reg.MustRegister(g.rejected, g.rateLimited, g.authFailures, g.queuedFrames, g.queueDepthMax)
	}
	return g
}

// admit runs after the request is known to be a valid upgrade: it checks the token given
// with the upgrade (401/403) and takes a connection slot (503 when the node is full, 429
// when the client address has too many). It answers the refusal itself; ok false then.
// The policy it hands out is never missing: with no verifier and no command rate it is
// open (everything allowed).
func (g *Gate) admit(w http.ResponseWriter, r *http.Request, room string, hasRoom bool) (p Policy, release func(), ok bool) {
	p = Policy{gate: g}
	if g.cfg.Auth != nil {
		tok := auth.FromRequest(r, true)
		if tok == "" {
			p.needAuth = true // the first frame must be {"type":"auth","token":...}
		} else {
			c, err := g.cfg.Auth.Verify(tok)
			if err != nil {
				g.authFailures.WithLabelValues("upgrade").Inc()
				g.rejected.WithLabelValues("unauthorized").Inc()
				w.Header().Set("WWW-Authenticate", `Bearer realm="chat", error="invalid_token"`)
				httpError(w, auth.Status(err), err.Error())
				return Policy{}, nil, false
			}
			if hasRoom && !c.Allows(room) {
				g.authFailures.WithLabelValues("upgrade").Inc()
				g.rejected.WithLabelValues("forbidden").Inc()
				httpError(w, http.StatusForbidden, auth.Forbidden(room).Reason)
				return Policy{}, nil, false
			}
			p.claims = c
		}
	}
	key := g.cfg.Clients.Key(r)
	g.mu.Lock()
	switch {
	case g.cfg.MaxConns > 0 && g.total >= g.cfg.MaxConns:
		g.mu.Unlock()
		g.rejected.WithLabelValues("max_connections").Inc()
		w.Header().Set("Retry-After", "5")
		httpError(w, http.StatusServiceUnavailable, "too many connections on this server")
		return Policy{}, nil, false
	case g.cfg.MaxConnsPerIP > 0 && g.perIP[key] >= g.cfg.MaxConnsPerIP:
		g.mu.Unlock()
		g.rejected.WithLabelValues("max_connections_per_ip").Inc()
		w.Header().Set("Retry-After", "5")
		httpError(w, http.StatusTooManyRequests, "too many connections from this address")
		return Policy{}, nil, false
	}
	g.total++
	g.perIP[key]++
	g.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			g.mu.Lock()
			g.total--
			if g.perIP[key]--; g.perIP[key] <= 0 {
				delete(g.perIP, key)
			}
			g.mu.Unlock()
		})
	}
	return p, release, true
}
