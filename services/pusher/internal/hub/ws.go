package hub

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
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
// or since answers 400 before the upgrade.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
	hj := &hijacker{ResponseWriter: w}
	up := websocket.Upgrader{
		ReadBufferSize:   512,
		WriteBufferPool:  writeBufPool,
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      func(*http.Request) bool { return true }, // checked above
	}
	conn, err := up.Upgrade(hj, r, nil)
	if err != nil {
		return // the upgrader answered the client
	}
	c := newClient(h, conn, hj.conn)
	if !h.register(c) {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(CloseServiceRestart, "server shutting down"), time.Now().Add(time.Second))
		conn.Close()
		return
	}
	go c.writeLoop()
	if hasRoom {
		_ = h.subscribe(c, room, since)
	}
	h.readLoop(c)
	close(c.readDone)
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
}

func jsonString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// readLoop reads client commands until the connection ends.
func (h *Hub) readLoop(c *Client) {
	conn := c.conn
	conn.SetReadLimit(MaxFrame)
	_ = conn.SetReadDeadline(time.Now().Add(h.cfg.PongTimeout))
	conn.SetPongHandler(func(string) error {
		return conn.SetReadDeadline(time.Now().Add(h.cfg.PongTimeout))
	})
	for {
		typ, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		_ = conn.SetReadDeadline(time.Now().Add(h.cfg.PongTimeout))
		if typ != websocket.TextMessage {
			c.Close(ClosePolicy, "binary frames are not supported")
			return
		}
		var cmd command
		data = bytes.TrimSpace(data)
		if len(data) == 0 || data[0] != '{' || json.Unmarshal(data, &cmd) != nil {
			c.Close(ClosePolicy, "frames must be JSON objects")
			return
		}
		h.handle(c, &cmd)
	}
}

func (h *Hub) handle(c *Client, cmd *command) {
	typ, _ := jsonString(cmd.Type)
	switch typ {
	case "subscribe", "unsubscribe":
	default:
		c.enqueue(errorFrame("unknown type: "+strconv.Quote(typ), ""))
		return
	}
	room, ok := jsonString(cmd.Room)
	if !ok {
		c.enqueue(errorFrame("room: must be a string", ""))
		return
	}
	if err := chat.ValidRoom(room); err != nil {
		c.enqueue(errorFrame(err.Error(), room))
		return
	}
	if typ == "unsubscribe" {
		c.mu.Lock()
		s, ok := c.subs[room]
		delete(c.subs, room)
		c.mu.Unlock()
		if !ok {
			c.enqueue(errorFrame("not subscribed", room))
			return
		}
		h.unsubscribe(s)
		return
	}
	var since *uint64
	if len(cmd.Since) > 0 && string(cmd.Since) != "null" {
		n, err := strconv.ParseUint(string(cmd.Since), 10, 64)
		if err != nil {
			c.enqueue(errorFrame("since: must be a non-negative integer", room))
			return
		}
		since = &n
	}
	if err := h.subscribe(c, room, since); err != nil {
		c.enqueue(errorFrame(err.Error(), room))
	}
}

func errorFrame(reason, room string) *websocket.PreparedMessage {
	v := map[string]string{"type": "error", "error": reason}
	if room != "" {
		v["room"] = room
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	pm, _ := websocket.NewPreparedMessage(websocket.TextMessage, bytes.TrimSpace(buf.Bytes()))
	return pm
}

func httpError(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"error": reason})
	_, _ = w.Write(append(b, '\n'))
}
