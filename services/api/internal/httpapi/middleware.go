package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/chatrt/chat/pkg/chat"
)

// HeaderRequestID carries the request id: the client's, if it is a valid id
// (1-128 of [A-Za-z0-9_.:-]), else a new random one. It is echoed in every answer.
const HeaderRequestID = "X-Request-Id"

// middleware adds the request id, security headers, panic recovery and the access log.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(HeaderRequestID)
		if chat.ValidID(id) != nil {
			id = newRequestID()
		}
		h := w.Header()
		h.Set(HeaderRequestID, id)
		h.Set("X-Content-Type-Options", "nosniff")
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panic", "request_id", id, "panic", v)
				if sw.status == 0 {
					writeError(sw, http.StatusInternalServerError, "internal error")
				}
			}
			level := slog.LevelInfo
			switch {
			case r.URL.Path == "/healthz", r.URL.Path == "/readyz", r.URL.Path == "/metrics",
				r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/admin/api/"): // the admin page polls
				level = slog.LevelDebug
			}
			s.log.Log(r.Context(), level, "http request",
				"request_id", id,
				"method", r.Method,
				"path", r.URL.Path,
				"status", sw.code(),
				"bytes", sw.bytes,
				"duration_ms", float64(time.Since(start).Microseconds())/1000,
				"client", s.o.Clients.Key(r))
		}()
		next.ServeHTTP(sw, r)
	})
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusWriter records the status and size of an answer.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
