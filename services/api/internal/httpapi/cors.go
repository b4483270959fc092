package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// CORS for browsers on other origins (a page elsewhere using /chat.js with baseURL).
// The allowed origins are CHAT_ALLOWED_ORIGINS, the setting the pushers check websocket
// Origins against: scheme://host[:port] each, "*" for any. An allowed Origin gets the
// CORS headers on every answer and preflights are answered here; any other Origin gets
// no CORS headers (its browser then refuses to hand the answer to the page). No
// credentials: the api authenticates with bearer tokens, never cookies, so
// Access-Control-Allow-Credentials is never sent.
//
// Written here rather than taken from a library: it is a fixed answer for a fixed
// list, and it must match the pushers' Origin semantics exactly.
const (
	corsAllowMethods = "GET, HEAD, POST, PATCH, DELETE"
	// What chat.js sends (Accept is safelisted; X-Request-Id lets a client trace a
	// request; Edit-Key authorizes edits and deletes without authentication).
	corsAllowHeaders = "Content-Type, Authorization, Idempotency-Key, Edit-Key, X-Request-Id"
	// What chat.js reads besides the body: Retry-After on 429/503.
	corsExposeHeaders = "Retry-After, X-Request-Id"
	// Browsers cache a preflight this long (Chromium caps it at 2 h).
	corsMaxAge = "600"
)

// origins is a parsed CHAT_ALLOWED_ORIGINS.
type origins struct {
	any  bool
	list map[string]bool // lower-case scheme://host[:port]
}

// parseOrigins validates the allowed origins: "*" or absolute http(s) origins without
// path, query or credentials ("null" and other opaque origins are refused: they are
// shared by every sandboxed page and local file).
func parseOrigins(in []string) (origins, error) {
	o := origins{list: map[string]bool{}}
	for _, s := range in {
		s = strings.TrimSpace(s)
		switch s {
		case "":
			continue
		case "*":
			o.any = true
			continue
		}
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			strings.TrimSuffix(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
			return origins{}, fmt.Errorf("allowed origin %q: want scheme://host[:port] or *", s)
		}
		o.list[strings.ToLower(u.Scheme+"://"+u.Host)] = true
	}
	return o, nil
}

func (o origins) empty() bool { return !o.any && len(o.list) == 0 }

// allows reports whether a request's Origin header is allowed (compared case-insensitively,
// as the pushers do).
func (o origins) allows(origin string) bool {
	if origin == "" || origin == "null" {
		return false
	}
	return o.any || o.list[strings.ToLower(origin)]
}

// cors answers preflights from allowed origins and adds the CORS headers to their
// requests; everything else passes through untouched.
func (s *Server) cors(next http.Handler) http.Handler {
	if s.origins.empty() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// The answer depends on Origin (headers or not): caches must key on it.
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if !s.origins.allows(origin) {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		next.ServeHTTP(w, r)
	})
}
