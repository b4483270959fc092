package httpapi

import (
	"net/http"

	"github.com/chatrt/chat/pkg/auth"
)

// authenticate checks the request's bearer token (Authorization header only: the api
// takes no token in the URL, where it would end up in proxy logs). It returns nil claims
// when authentication is off.
func (s *Server) authenticate(r *http.Request) (*auth.Claims, *httpError) {
	if s.o.Auth == nil {
		return nil, nil
	}
	tok := auth.FromRequest(r, false)
	if tok == "" {
		return nil, &httpError{status: http.StatusUnauthorized, reason: auth.ErrNoToken.Reason}
	}
	c, err := s.o.Auth.Verify(tok)
	if err != nil {
		return nil, &httpError{status: auth.Status(err), reason: err.Error()}
	}
	return c, nil
}

// authorize checks that the token allows room, a resolved room (any room when auth is
// off).
func authorize(c *auth.Claims, room string) *httpError {
	if c != nil && !c.Allows(room) {
		e := auth.Forbidden(room)
		return &httpError{status: e.Status, reason: e.Reason}
	}
	return nil
}

// writeHTTPError answers herr; a 401 also names the scheme (RFC 6750).
func writeHTTPError(w http.ResponseWriter, herr *httpError) {
	if herr.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="chat", error="invalid_token"`)
	}
	writeError(w, herr.status, herr.reason)
}
