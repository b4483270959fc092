package admin

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/chatrt/chat/pkg/auth"
)

// Who may use the admin page:
//   - authentication on: the JSON routes (/admin/api/...) need a bearer token whose
//     "roles" claim contains "admin": none or an invalid one is 401, a valid one
//     without the role 403. The page itself (HTML, script, style: no data) is served to
//     anyone, since a browser cannot send a bearer token when it opens a URL; the page
//     then sends the token it is given with every request.
//   - authentication off: every /admin path, page included, only to clients connected
//     from a loopback address (the TCP peer, RemoteAddr: X-Forwarded-For is never
//     believed here, a proxy on the same host is a loopback peer too); others get 403.
//
// Requests that change something (requeue, discard) that carry an Origin header must
// come from the page's own origin (403 otherwise), so a page on another site open in an
// operator's browser cannot make the browser post them.

type operatorKey struct{}

// operator is who made the request, for the log: the token's issuer and subject, or
// the loopback peer.
func operator(ctx context.Context) string {
	s, _ := ctx.Value(operatorKey{}).(string)
	return s
}

func (h *Handler) access(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who := ""
		if h.o.Auth == nil {
			if !loopbackPeer(r.RemoteAddr) {
				writeError(w, http.StatusForbidden, "the admin page answers loopback clients only when authentication is off")
				return
			}
			who = "loopback " + r.RemoteAddr
		} else if strings.HasPrefix(r.URL.Path, "/admin/api/") {
			tok := auth.FromRequest(r, false)
			if tok == "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="chat"`)
				writeError(w, http.StatusUnauthorized, auth.ErrNoToken.Reason)
				return
			}
			c, err := h.o.Auth.Verify(tok)
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="chat", error="invalid_token"`)
				writeError(w, auth.Status(err), err.Error())
				return
			}
			if !c.HasRole(auth.RoleAdmin) {
				writeError(w, http.StatusForbidden, `token has no "admin" role`)
				return
			}
			who = c.Issuer + " " + c.Subject
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !sameOrigin(r) {
			writeError(w, http.StatusForbidden, "cross-origin admin request refused")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), operatorKey{}, who)))
	})
}

// loopbackPeer reports whether the TCP peer address is a loopback address.
func loopbackPeer(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// sameOrigin: no Origin header (not a browser's cross-site request), or the Origin's host
// is the request's Host.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	_, host, ok := strings.Cut(o, "://")
	return ok && strings.EqualFold(host, r.Host)
}
