package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/chatrt/chat/pkg/buildinfo"
)

// healthz answers that the process is alive, and which build it is:
// {"status":"ok","version":...,"commit":...} (buildinfo; commit "" when not recorded).
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeBody(w, http.StatusOK, healthBody)
}

var healthBody = func() []byte {
	bi := buildinfo.Read()
	b, _ := json.Marshal(map[string]string{"status": "ok", "version": bi.Version, "commit": bi.Commit()})
	return append(b, '\n')
}()

type readiness struct {
	Ready    bool   `json:"ready"`
	NATS     string `json:"nats"`
	Mongo    string `json:"mongo"`
	Draining bool   `json:"draining"`
	natsOK   bool
}

// check reports readiness: NATS connected, MongoDB answering a ping (within 2s) and not
// draining.
func (s *Server) check(ctx context.Context) readiness {
	rd := readiness{NATS: s.o.Stream.Status(), Mongo: "ok", Draining: s.draining.Load()}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.o.History.Ping(ctx); err != nil {
		rd.Mongo = "unreachable"
		s.log.Warn("readiness: mongodb ping", "error", err)
	}
	rd.natsOK = s.o.Stream.Connected()
	rd.Ready = rd.natsOK && rd.Mongo == "ok" && !rd.Draining
	return rd
}

// Ready returns nil when the api can take posts and serve history, else an error saying
// what is not ready. It is what /readyz answers, for a caller in the same process.
func (s *Server) Ready(ctx context.Context) error {
	rd := s.check(ctx)
	var why []string
	if rd.Draining {
		why = append(why, "draining")
	}
	if !rd.natsOK {
		why = append(why, "nats "+rd.NATS)
	}
	if rd.Mongo != "ok" {
		why = append(why, "mongodb "+rd.Mongo)
	}
	if len(why) == 0 {
		return nil
	}
	return errors.New("not ready: " + strings.Join(why, ", "))
}

// Draining reports whether Drain was called (the api is shutting down).
func (s *Server) Draining() bool { return s.draining.Load() }

// readyz answers 200 when NATS is connected, MongoDB answers a ping and the server is
// not draining; 503 otherwise. The body says which.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rd := s.check(r.Context())
	status := http.StatusOK
	if !rd.Ready {
		status = http.StatusServiceUnavailable
	}
	b, _ := json.Marshal(rd)
	writeBody(w, status, append(b, '\n'))
}
