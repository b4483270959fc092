// Package session is one websocket connection's protocol, on top of the hub: the /ws
// upgrade (handler.go), the gate that admits a connection and hands it its policy
// (gate.go, policy.go: authentication, connection caps, command rate, allowed rooms), the
// client commands and error frames (protocol.go) and the reader goroutine that runs them
// (session.go). It writes nothing to a socket itself: frames go through the hub's client
// (its queue and writer) to the transport.
//
// Layers, each calling only the ones below it: session → hub → transport (the socket).
package session

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/services/pusher/internal/hub"
	"github.com/chatrt/chat/services/pusher/internal/transport"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// Config tunes the connections.
type Config struct {
	PongTimeout   time.Duration // a client silent for this long is dropped
	WriteTimeout  time.Duration // one write to a socket may take this long
	AllowedOrigin []string      // extra Origins allowed besides same-origin ("*": any)
	Gate          GateConfig
}

// Handler is the /ws endpoint: it admits connections through its gate and runs each one's
// session against the hub.
type Handler struct {
	hub  *hub.Hub
	cfg  Config
	gate *Gate
}

// NewHandler serves h's websockets; the gate's metrics go to reg (nil: none).
func NewHandler(h *hub.Hub, cfg Config, reg prometheus.Registerer) *Handler {
	return &Handler{hub: h, cfg: cfg, gate: newGate(cfg.Gate, h.QueueDepths, reg)}
}

// ServeHTTP upgrades GET /ws[?room=<room>[&since=<seq>][&presence=1][&name=<name>]] to a
// websocket. An invalid room, since, presence or name answers 400 before the upgrade,
// then the gate's checks (401, 403, 429, 503).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	room, hasRoom := q.Get("room"), q.Has("room")
	var since *uint64
	if q.Has("since") {
		if !hasRoom {
			httpError(w, http.StatusBadRequest, "since: needs a room")
			return
		}
		n, err := strconv.ParseUint(q.Get("since"), 10, 64)
		if err != nil {
			httpError(w, http.StatusBadRequest, "since: must be a non-negative integer")
			return
		}
		since = &n
	}
	if hasRoom {
		if err := chat.ValidRoom(room); err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	watch, ok := parsePresence(q.Get("presence"))
	if !ok {
		httpError(w, http.StatusBadRequest, "presence: must be 1 or 0")
		return
	}
	name, reason := normalizeName(q.Get("name"))
	if reason == "" && q.Has("name") && name == "" {
		reason = "name: must not be empty"
	}
	if reason != "" {
		httpError(w, http.StatusBadRequest, reason)
		return
	}
	if (watch || name != "") && !hasRoom {
		httpError(w, http.StatusBadRequest, "presence and name: need a room")
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		httpError(w, http.StatusBadRequest, "websocket upgrade required")
		return
	}
	if !h.checkOrigin(r) {
		httpError(w, http.StatusForbidden, "origin not allowed")
		return
	}
	if h.hub.Closing() {
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	policy, release, ok := h.gate.admit(w, r, room, hasRoom)
	if !ok {
		return
	}
	t, err := transport.Upgrade(w, r, h.cfg.WriteTimeout)
	if err != nil {
		release()
		return // the upgrader answered the client
	}
	c, ok := h.hub.Join(t)
	if !ok {
		t.Close(hub.CloseServiceRestart, "server shutting down", nil)
		release()
		return
	}
	s := &session{hub: h.hub, cfg: &h.cfg, c: c, t: t, policy: policy, release: release}
	// The subscription from the URL is made here, on the handler's goroutine, whose grown
	// stack ends with it. The connection outlives this handler: returning lets net/http end
	// the request's goroutine and drop its read/write buffers; the reader goroutine starts
	// with a small stack and stays small while the connection idles.
	switch {
	case s.policy.needAuth:
		if hasRoom { // subscribe once the first frame authenticated the connection
			s.pending = func() { s.subscribe(room, since, watch, name) }
		}
	case hasRoom:
		s.subscribe(room, since, watch, name)
	}
	s.policy.start(c)
	s.start()
	go s.run()
}

func (h *Handler) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, o := range h.cfg.AllowedOrigin {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

func httpError(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"error": reason})
	_, _ = w.Write(append(b, '\n'))
}
