package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeBody(w, http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
}

type readiness struct {
	Ready    bool   `json:"ready"`
	NATS     string `json:"nats"`
	Mongo    string `json:"mongo"`
	Draining bool   `json:"draining"`
}

// readyz answers 200 when NATS is connected, MongoDB answers a ping and the server is
// not draining; 503 otherwise. The body says which.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rd := readiness{NATS: s.o.Stream.Status(), Mongo: "ok", Draining: s.draining.Load()}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.o.History.Ping(ctx); err != nil {
		rd.Mongo = "unreachable"
		s.log.Warn("readiness: mongodb ping", "err", err)
	}
	rd.Ready = s.o.Stream.Connected() && rd.Mongo == "ok" && !rd.Draining
	status := http.StatusOK
	if !rd.Ready {
		status = http.StatusServiceUnavailable
	}
	b, _ := json.Marshal(rd)
	writeBody(w, status, append(b, '\n'))
}
