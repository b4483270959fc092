package session

import (
	"errors"
	"net"
	"time"

	"github.com/chatrt/chat/services/pusher/internal/hub"
	"github.com/chatrt/chat/services/pusher/internal/transport"
	"github.com/gorilla/websocket"
)

// session is one connection's protocol, run by its reader goroutine: it reads commands
// (protocol.go), applies the gate's policy (authentication, command rate, allowed rooms)
// and asks the hub to subscribe and unsubscribe.
type session struct {
	hub     *hub.Hub
	cfg     *Config
	c       *hub.Client
	t       *transport.Conn
	policy  Policy
	pending func() // runs once the first frame authenticated (the upgrade's ?room=)
	release func() // gives the gate its connection slot back
}

// run is the connection's reader: it reads client commands until the connection ends,
// then has the hub close it. While the connection idles it parks (transport.ErrParked)
// and returns, and the transport runs it again, on a new goroutine, when there is
// something to read: an idle connection has no goroutine.
func (s *session) run() {
	if s.readLoop() {
		return // parked: run continues later
	}
	s.hub.Leave(s.c)
	s.policy.stop()
	s.release() // gives the gate its connection slot back
}

// subscribe subscribes to room if the policy allows it, else sends the error frame
// {"type":"error","error":"forbidden","room":...}. In presence the subscription is the
// token's name (authentication on), else the name given ("": anonymous).
func (s *session) subscribe(room string, since *uint64, watch bool, name string) {
	if !s.policy.allows(room) {
		s.c.Enqueue(errorFrame("forbidden", room))
		return
	}
	if n, ok := s.policy.name(); ok {
		name = n
	}
	if err := s.hub.SubscribeAs(s.c, room, since, hub.Member{Name: name, Watch: watch}); err != nil {
		s.c.Enqueue(errorFrame(err.Error(), room))
	}
}

// readDeadline is when the connection is dropped unless the client sends something
// (pongs count once authenticated).
func (s *session) readDeadline() time.Time {
	if s.policy.needAuth {
		return time.Now().Add(min(s.policy.authTimeout(), s.cfg.PongTimeout))
	}
	return time.Now().Add(s.cfg.PongTimeout)
}

// start prepares the connection for run: read limit, first deadline, pong handler, and
// parking while idle.
func (s *session) start() {
	t := s.t
	t.SetReadLimit(MaxFrame)
	_ = t.SetReadDeadline(s.readDeadline())
	t.SetPongHandler(func() error {
		if s.policy.needAuth {
			return nil // pongs do not extend the time to authenticate
		}
		return t.SetReadDeadline(time.Now().Add(s.cfg.PongTimeout))
	})
	t.SetWake(s.run)
}

// readLoop reads client commands until the connection ends, or it parks (true: the
// caller returns without touching the session, which the next run owns). It applies the
// command rate limit and, while unauthenticated, expects {"type":"auth","token":...} as
// the first frame within the gate's AuthTimeout (else close 4401).
func (s *session) readLoop() (parked bool) {
	t, c := s.t, s.c
	for {
		typ, data, err := t.ReadMessage()
		if err == transport.ErrParked {
			return true
		}
		if err != nil {
			if s.policy.needAuth {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					c.Close(CloseUnauthorized, "authentication required")
					<-c.Done() // the read side is dead; the writer sends the close
				}
			}
			return false
		}
		cmd, code, reason := decodeFrame(typ, data)
		if code != 0 {
			s.closeAndDrain(code, reason)
			return false
		}
		if ok, closeNow := s.policy.allow(); !ok {
			if closeNow {
				s.closeAndDrain(ClosePolicy, "rate limit exceeded")
				return false
			}
			c.Enqueue(errorFrame("rate limited", ""))
			continue
		}
		if s.policy.needAuth {
			if reason := s.policy.authFrame(cmd); reason != "" {
				s.closeAndDrain(CloseUnauthorized, reason)
				return false
			}
			s.policy.start(c)
			if s.pending != nil {
				s.pending()
			}
			_ = t.SetReadDeadline(s.readDeadline())
			continue
		}
		_ = t.SetReadDeadline(s.readDeadline())
		s.handle(cmd)
	}
}

// handle does one command of an authenticated (or unauthenticated, auth off) connection.
func (s *session) handle(cmd *command) {
	if isAuth(cmd) && s.policy.authenticated() {
		s.c.Enqueue(errorFrame("already authenticated", ""))
		return
	}
	req, reason := parseCommand(cmd)
	if reason != "" {
		s.c.Enqueue(errorFrame(reason, req.room))
		return
	}
	switch req.typ {
	case "unsubscribe":
		if err := s.hub.Unsubscribe(s.c, req.room); err != nil {
			s.c.Enqueue(errorFrame(err.Error(), req.room))
		}
		return
	case "typing":
		if err := s.hub.Typing(s.c, req.room, time.Now()); err != nil {
			s.c.Enqueue(errorFrame(err.Error(), req.room))
		}
		return
	}
	s.subscribe(req.room, req.since, req.presence, req.name)
}

// closeAndDrain asks the writer to close with code and keeps reading (discarding) until
// the peer answers the close or the writer gives up, so that the reader's end does not
// race the close frame out of the writer's hands.
func (s *session) closeAndDrain(code int, reason string) {
	s.c.Close(code, reason)
	s.t.SetWake(nil) // this reader waits for the answer: nothing runs the session after it
	_ = s.t.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		if _, _, err := s.t.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				<-s.c.Done()
			}
			return
		}
	}
}
