package hub

import (
	"net/http"
	"sync"
	"time"

	"github.com/chatrt/chat/pkg/auth"
	"github.com/chatrt/chat/pkg/clientip"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Close codes for authentication over the websocket (4000-4999: application codes).
const (
	CloseUnauthorized = 4401 // no, malformed or expired token
	CloseForbidden    = 4403 // the token does not allow the room given at the upgrade
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

// Gate is the /ws handler: it authenticates, applies the connection caps and gives each
// connection its command rate limit, then hands the connection to the hub.
type Gate struct {
	hub *Hub
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

// NewGate wraps h; its metrics go to reg (nil: none).
func NewGate(h *Hub, cfg GateConfig, reg prometheus.Registerer) *Gate {
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = 10 * time.Second
	}
	if cfg.CommandBurst < 1 {
		cfg.CommandBurst = 1
	}
	g := &Gate{hub: h, cfg: cfg, perIP: make(map[string]int),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_pusher_rejected_connections_total",
			Help: "Websocket upgrades refused by reason (max_connections, max_connections_per_ip, unauthorized, forbidden)."}, []string{"reason"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_pusher_commands_rate_limited_total",
			Help: "Client commands refused by the per-connection rate limit."}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_pusher_auth_failures_total",
			Help: "Websocket authentication and authorization failures by stage (upgrade, frame, subscribe, expired)."}, []string{"stage"}),
	}
	// Queue depth is read at scrape time, not maintained per delivery.
	g.queuedFrames = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chat_pusher_queued_frames",
		Help: "Frames waiting in all client queues (sampled at scrape)."}, func() float64 { sum, _ := h.queueDepths(); return float64(sum) })
	g.queueDepthMax = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chat_pusher_queue_depth_max",
		Help: "Frames waiting in the fullest client queue (sampled at scrape); eviction at CHAT_QUEUE_SIZE."}, func() float64 { _, m := h.queueDepths(); return float64(m) })
	if reg != nil {
		reg.MustRegister(g.rejected, g.rateLimited, g.authFailures, g.queuedFrames, g.queueDepthMax)
	}
	return g
}

// queueDepths sums the client queues and finds the longest.
func (h *Hub) queueDepths() (sum, longest int) {
	h.mu.Lock()
	clients := make([]*Client, 0, len(h.clients))
	for c := range h.clients {
		clients = append(clients, c)
	}
	h.mu.Unlock()
	for _, c := range clients {
		n := c.queued()
		sum += n
		longest = max(longest, n)
	}
	return sum, longest
}

// ServeHTTP upgrades GET /ws like Hub.ServeHTTP, behind the gate's checks.
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.hub.serve(w, r, g) }

// admit runs after the request is known to be a valid upgrade: it checks the token given
// with the upgrade (401/403) and takes a connection slot (503 when the node is full, 429
// when the client address has too many). It answers the refusal itself; ok false then.
func (g *Gate) admit(w http.ResponseWriter, r *http.Request, room string, hasRoom bool) (s *session, release func(), ok bool) {
	s = &session{gate: g}
	if g.cfg.Auth != nil {
		tok := auth.FromRequest(r, true)
		if tok == "" {
			s.needAuth = true // the first frame must be {"type":"auth","token":...}
		} else {
			c, err := g.cfg.Auth.Verify(tok)
			if err != nil {
				g.authFailures.WithLabelValues("upgrade").Inc()
				g.rejected.WithLabelValues("unauthorized").Inc()
				w.Header().Set("WWW-Authenticate", `Bearer realm="chat", error="invalid_token"`)
				httpError(w, auth.Status(err), err.Error())
				return nil, nil, false
			}
			if hasRoom && !c.Allows(room) {
				g.authFailures.WithLabelValues("upgrade").Inc()
				g.rejected.WithLabelValues("forbidden").Inc()
				httpError(w, http.StatusForbidden, auth.Forbidden(room).Reason)
				return nil, nil, false
			}
			s.claims = c
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
		return nil, nil, false
	case g.cfg.MaxConnsPerIP > 0 && g.perIP[key] >= g.cfg.MaxConnsPerIP:
		g.mu.Unlock()
		g.rejected.WithLabelValues("max_connections_per_ip").Inc()
		w.Header().Set("Retry-After", "5")
		httpError(w, http.StatusTooManyRequests, "too many connections from this address")
		return nil, nil, false
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
	return s, release, true
}

// session is one connection's gate state, owned by its reader goroutine.
type session struct {
	gate     *Gate
	claims   *auth.Claims // nil while unauthenticated (or auth off)
	needAuth bool         // auth on and no token yet
	pending  func()       // runs once the first frame authenticated (the upgrade's ?room=)
	limiter  *rate.Limiter
	strikes  int         // commands refused in a row
	expiry   *time.Timer // closes the connection when the token expires
}

// start arms the token-expiry close once the connection is authenticated.
func (s *session) start(c *Client) {
	if s == nil || s.claims == nil || s.claims.Expires == nil {
		return
	}
	d := time.Until(s.claims.Expires.Time())
	s.expiry = time.AfterFunc(max(d, 0), func() {
		s.gate.authFailures.WithLabelValues("expired").Inc()
		c.Close(CloseUnauthorized, "token expired")
	})
}

func (s *session) stop() {
	if s != nil && s.expiry != nil {
		s.expiry.Stop()
	}
}

// allow applies the command rate limit: ok false refuses this command; closeNow asks to
// close the connection (1008) because the client keeps flooding.
func (s *session) allow() (ok, closeNow bool) {
	if s != nil && s.limiter == nil && s.gate.cfg.CommandRate > 0 {
		// Made at the first command (most connections send none): a new limiter is full,
		// as one made at connect time would still be.
		s.limiter = rate.NewLimiter(rate.Limit(s.gate.cfg.CommandRate), s.gate.cfg.CommandBurst)
	}
	if s == nil || s.limiter == nil || s.limiter.Allow() {
		if s != nil {
			s.strikes = 0
		}
		return true, false
	}
	s.gate.rateLimited.Inc()
	s.strikes++
	return false, s.strikes >= s.gate.cfg.CommandBurst
}

// authenticate handles a first frame {"type":"auth","token":...}.
func (s *session) authenticate(tok string) error {
	c, err := s.gate.cfg.Auth.Verify(tok)
	if err != nil {
		s.gate.authFailures.WithLabelValues("frame").Inc()
		return err
	}
	s.claims, s.needAuth = c, false
	return nil
}

// allows reports whether the connection may subscribe to room.
func (s *session) allows(room string) bool {
	if s == nil || s.claims == nil {
		return true
	}
	if s.claims.Allows(room) {
		return true
	}
	s.gate.authFailures.WithLabelValues("subscribe").Inc()
	return false
}
