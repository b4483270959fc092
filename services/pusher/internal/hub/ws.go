package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/gorilla/websocket"
)

// MaxFrame is the largest client frame accepted; larger ones close the socket with 1009.
const MaxFrame = 4096

// ServeHTTP upgrades GET /ws[?room=<room>[&since=<seq>]] to a websocket. An invalid room
// or since answers 400 before the upgrade. It applies no gate (authentication, caps,
// command rate); the service serves /ws through a Gate.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.serve(w, r, nil) }

// serve is the upgrade, behind g's checks when g is not nil.
func (h *Hub) serve(w http.ResponseWriter, r *http.Request, g *Gate) {
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
	if !websocket.IsWebSocketUpgrade(r) {
		httpError(w, http.StatusBadRequest, "websocket upgrade required")
		return
	}
	if !h.checkOrigin(r) {
		httpError(w, http.StatusForbidden, "origin not allowed")
		return
	}
	h.mu.Lock()
	closing := h.closing
	h.mu.Unlock()
	if closing {
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	var sess *session
	release := func() {}
	if g != nil {
		s, rel, ok := g.admit(w, r, room, hasRoom)
		if !ok {
			return
		}
		sess, release = s, rel
	}
	hj := &hijacker{ResponseWriter: w}
	up := websocket.Upgrader{
		ReadBufferSize:   0, // use the hijacker's reader (readBufferSize)
		WriteBufferPool:  writeBufPool,
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      func(*http.Request) bool { return true }, // checked above
	}
	conn, err := up.Upgrade(hj, r, nil)
	if err != nil {
		release()
		return // the upgrader answered the client
	}
	c := newClient(h, conn, hj.conn)
	if !h.register(c) {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(CloseServiceRestart, "server shutting down"), time.Now().Add(time.Second))
		conn.Close()
		release()
		return
	}
	// The subscription from the URL is made here, on the handler's goroutine, whose grown
	// stack ends with it. The connection outlives this handler: returning lets net/http end
	// the request's goroutine and drop its read/write buffers; the reader goroutine starts
	// with a small stack and stays small while the connection idles.
	switch {
	case sess != nil && sess.needAuth:
		// Subscribe once the first frame authenticated the connection.
		sess.pending = func() { h.subscribeChecked(c, sess, room, since) }
		if !hasRoom {
			sess.pending = func() {}
		}
	case hasRoom:
		h.subscribeChecked(c, sess, room, since)
	}
	sess.start(c)
	go h.runClient(c, sess, release)
}

// runClient is the connection's reader goroutine: it reads client commands until the
// connection ends, then has the writer close it.
func (h *Hub) runClient(c *Client, sess *session, release func()) {
	defer release()
	defer sess.stop()
	h.readLoop(c, sess)
	c.readerEnded()
	h.unregister(c)
	<-c.done
}

// writeBufPool shares write buffers between connections: an idle one holds none.
var writeBufPool = &sync.Pool{}

func (h *Hub) checkOrigin(r *http.Request) bool {
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

// command is a client frame; fields are decoded one by one so that a well-formed frame
// with a wrong field type gets an error frame rather than a closed socket.
type command struct {
	Type  json.RawMessage `json:"type"`
	Room  json.RawMessage `json:"room"`
	Since json.RawMessage `json:"since"`
	Token json.RawMessage `json:"token"` // {"type":"auth"} only
}

func jsonString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// subscribeChecked subscribes c to room if its token allows it, else sends the error
// frame {"type":"error","error":"forbidden","room":...}.
func (h *Hub) subscribeChecked(c *Client, sess *session, room string, since *uint64) {
	if !sess.allows(room) {
		c.enqueue(errorFrame("forbidden", room))
		return
	}
	if err := h.subscribe(c, room, since); err != nil {
		c.enqueue(errorFrame(err.Error(), room))
	}
}

// readLoop reads client commands until the connection ends. With a session it applies the
// command rate limit and, while unauthenticated, expects {"type":"auth","token":...} as
// the first frame within the gate's AuthTimeout (else close 4401).
func (h *Hub) readLoop(c *Client, sess *session) {
	conn := c.conn
	conn.SetReadLimit(MaxFrame)
	deadline := func() time.Time {
		if sess != nil && sess.needAuth {
			return time.Now().Add(min(sess.gate.cfg.AuthTimeout, h.cfg.PongTimeout))
		}
		return time.Now().Add(h.cfg.PongTimeout)
	}
	_ = conn.SetReadDeadline(deadline())
	pong := func(string) error {
		if sess != nil && sess.needAuth {
			return nil // pongs do not extend the time to authenticate
		}
		return conn.SetReadDeadline(time.Now().Add(h.cfg.PongTimeout))
	}
	conn.SetPongHandler(pong)
	onPong := func() { _ = pong("") }
	for {
		c.bc.awaitMessage(onPong)
		typ, data, err := conn.ReadMessage()
		if err != nil {
			if sess != nil && sess.needAuth {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					c.Close(CloseUnauthorized, "authentication required")
					<-c.done // the read side is dead; the writer sends the close
				}
			}
			return
		}
		cmd, code, reason := decodeFrame(typ, data)
		if code != 0 {
			closeAndDrain(c, code, reason)
			return
		}
		if ok, closeNow := sess.allow(); !ok {
			if closeNow {
				closeAndDrain(c, ClosePolicy, "rate limit exceeded")
				return
			}
			c.enqueue(errorFrame("rate limited", ""))
			continue
		}
		if sess != nil && sess.needAuth {
			if code, reason := h.authFrame(sess, cmd); code != 0 {
				closeAndDrain(c, code, reason)
				return
			}
			sess.start(c)
			sess.pending()
			_ = conn.SetReadDeadline(deadline())
			continue
		}
		_ = conn.SetReadDeadline(deadline())
		h.handle(c, sess, cmd)
	}
}

// authFrame handles the first frame of a connection that must authenticate; a non-zero
// code (4401) closes the connection.
func (h *Hub) authFrame(sess *session, cmd *command) (code int, reason string) {
	if t, _ := jsonString(cmd.Type); t != "auth" {
		sess.gate.authFailures.WithLabelValues("frame").Inc()
		return CloseUnauthorized, "authentication required"
	}
	tok, _ := jsonString(cmd.Token)
	if tok == "" {
		sess.gate.authFailures.WithLabelValues("frame").Inc()
		return CloseUnauthorized, "token: must be a non-empty string"
	}
	if err := sess.authenticate(tok); err != nil {
		return CloseUnauthorized, err.Error()
	}
	return 0, ""
}

// closeAndDrain asks the writer to close with code and keeps reading (discarding) until
// the peer answers the close or the writer gives up, so that the reader's end does not
// race the close frame out of the writer's hands.
func closeAndDrain(c *Client, code int, reason string) {
	c.Close(code, reason)
	_ = c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				<-c.done
			}
			return
		}
	}
}

// decodeFrame checks a client frame: a text frame holding a JSON object. code is the close
// code (1008) for anything else.
func decodeFrame(typ int, data []byte) (cmd *command, code int, reason string) {
	if typ != websocket.TextMessage {
		return nil, ClosePolicy, "binary frames are not supported"
	}
	cmd = new(command)
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' || json.Unmarshal(data, cmd) != nil {
		return nil, ClosePolicy, "frames must be JSON objects"
	}
	return cmd, 0, ""
}

// request is a parsed subscribe or unsubscribe command.
type request struct {
	typ   string
	room  string
	since *uint64
}

// parseCommand validates a command's fields; reason (and room, when known) make the error
// frame of a command that cannot be done.
func parseCommand(cmd *command) (req request, reason string) {
	typ, _ := jsonString(cmd.Type)
	switch typ {
	case "subscribe", "unsubscribe":
	default:
		return request{}, "unknown type: " + strconv.Quote(typ)
	}
	room, ok := jsonString(cmd.Room)
	if !ok {
		return request{}, "room: must be a string"
	}
	if err := chat.ValidRoom(room); err != nil {
		return request{room: room}, err.Error()
	}
	req = request{typ: typ, room: room}
	if typ == "subscribe" && len(cmd.Since) > 0 && string(cmd.Since) != "null" {
		n, err := strconv.ParseUint(string(cmd.Since), 10, 64)
		if err != nil {
			return request{room: room}, "since: must be a non-negative integer"
		}
		req.since = &n
	}
	return req, ""
}

func (h *Hub) handle(c *Client, sess *session, cmd *command) {
	if t, _ := jsonString(cmd.Type); t == "auth" && sess != nil && sess.claims != nil {
		c.enqueue(errorFrame("already authenticated", ""))
		return
	}
	req, reason := parseCommand(cmd)
	if reason != "" {
		c.enqueue(errorFrame(reason, req.room))
		return
	}
	room := req.room
	if req.typ == "unsubscribe" {
		c.mu.Lock()
		var s *sub
		if i := c.subIndex(room); i >= 0 {
			s = c.subs[i]
			c.subs = slices.Delete(c.subs, i, i+1)
		}
		c.mu.Unlock()
		if s == nil {
			c.enqueue(errorFrame("not subscribed", room))
			return
		}
		h.unsubscribe(s)
		return
	}
	h.subscribeChecked(c, sess, room, req.since)
}

func errorFrame(reason, room string) []byte {
	v := map[string]string{"type": "error", "error": reason}
	if room != "" {
		v["room"] = room
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return textFrame(bytes.TrimSpace(buf.Bytes()))
}

func httpError(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"error": reason})
	_, _ = w.Write(append(b, '\n'))
}
