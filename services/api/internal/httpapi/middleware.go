package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"time"

	"github.com/chatrt/chat/pkg/chat"
)

// HeaderRequestID carries the request id: the client's, if it is a valid id
// (1-128 of [A-Za-z0-9_.:-]), else a new random one. It is echoed in every answer.
const HeaderRequestID = "X-Request-Id"

// middleware adds the request id, security headers, panic recovery and the access log
// (accessLog decides which requests get a line).
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(HeaderRequestID)
		if chat.ValidID(id) != nil {
			id = newRequestID()
		}
		h := w.Header()
		h[HeaderRequestID] = []string{id}
		h["X-Content-Type-Options"] = nosniff
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
			level, sampled, ok := s.access.decide(r.Context(), r, sw.code(), time.Now())
			if !ok {
				return
			}
			attrs := []slog.Attr{
				slog.String("request_id", id),
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", sw.code()),
				slog.Int64("bytes", sw.bytes),
				slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
				slog.String("client", s.o.Clients.Key(r)),
			}
			if sampled > 0 {
				attrs = append(attrs, slog.Int64("sampled", sampled))
			}
			s.log.LogAttrs(r.Context(), level, "http request", attrs...)
		}()
		next.ServeHTTP(sw, r)
	})
}

// Header values every answer carries, shared rather than allocated per request (net/http
// only reads them; Header.Set and Add replace or copy).
var (
	nosniff      = []string{"nosniff"}
	typeJSON     = []string{contentTypeJSON}
	cacheNoStore = []string{"no-store"}
)

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
