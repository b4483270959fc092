package session

import (
	"time"

	"github.com/chatrt/chat/pkg/auth"
	"github.com/chatrt/chat/services/pusher/internal/hub"
	"golang.org/x/time/rate"
)

// Policy is what the gate decided for one connection, applied by its session: whether it
// must still authenticate, the rooms its token allows, its command rate limit and the
// close when its token expires. Owned by the connection's reader goroutine.
type Policy struct {
	gate     *Gate
	claims   *auth.Claims // nil while unauthenticated (or auth off)
	needAuth bool         // auth on and no token yet
	limiter  *rate.Limiter
	strikes  int         // commands refused in a row
	expiry   *time.Timer // closes the connection when the token expires
}

// authTimeout is how long an unauthenticated connection has to send its token.
func (p *Policy) authTimeout() time.Duration { return p.gate.cfg.AuthTimeout }

// authenticated reports whether a token authenticated the connection.
func (p *Policy) authenticated() bool { return p.claims != nil }

// start arms the token-expiry close once the connection is authenticated.
func (p *Policy) start(c *hub.Client) {
	if p.claims == nil || p.claims.Expires == nil {
		return
	}
	d := time.Until(p.claims.Expires.Time())
	p.expiry = time.AfterFunc(max(d, 0), func() {
		p.gate.authFailures.WithLabelValues("expired").Inc()
		c.Close(CloseUnauthorized, "token expired")
	})
}

func (p *Policy) stop() {
	if p.expiry != nil {
		p.expiry.Stop()
	}
}

// allow applies the command rate limit: ok false refuses this command; closeNow asks to
// close the connection (1008) because the client keeps flooding.
func (p *Policy) allow() (ok, closeNow bool) {
	if p.limiter == nil && p.gate.cfg.CommandRate > 0 {
		// Made at the first command (most connections send none): a new limiter is full,
		// as one made at connect time would still be.
		p.limiter = rate.NewLimiter(rate.Limit(p.gate.cfg.CommandRate), p.gate.cfg.CommandBurst)
	}
	if p.limiter == nil || p.limiter.Allow() {
		p.strikes = 0
		return true, false
	}
	p.gate.rateLimited.Inc()
	p.strikes++
	return false, p.strikes >= p.gate.cfg.CommandBurst
}

// authFrame handles the first frame of a connection that must authenticate: a non-empty
// reason closes the connection (4401).
func (p *Policy) authFrame(cmd *command) (reason string) {
	tok, reason := authToken(cmd)
	if reason != "" {
		p.gate.authFailures.WithLabelValues("frame").Inc()
		return reason
	}
	c, err := p.gate.cfg.Auth.Verify(tok)
	if err != nil {
		p.gate.authFailures.WithLabelValues("frame").Inc()
		return err.Error()
	}
	p.claims, p.needAuth = c, false
	return ""
}

// name is the token's name (its name claim, else sub; see auth.Claims.Author) when the
// connection is authenticated: ok false when it is not (a name given then stands). A
// token without a usable name is anonymous.
func (p *Policy) name() (string, bool) {
	if p.claims == nil {
		return "", false
	}
	n, err := p.claims.Author()
	if err != nil {
		return "", true
	}
	return n, true
}

// allows reports whether the connection may subscribe to room.
func (p *Policy) allows(room string) bool {
	if p.claims == nil || p.claims.Allows(room) {
		return true
	}
	p.gate.authFailures.WithLabelValues("subscribe").Inc()
	return false
}
