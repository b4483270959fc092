package chatclient

import (
	"errors"
	"fmt"
)

// Errors a Subscribe or a subscription ends with; match them with errors.Is (the
// returned errors wrap one of these and say more).
var (
	// ErrClosed: the client was closed (Subscribe after Close).
	ErrClosed = errors.New("chatclient: client closed")
	// ErrInvalidRoom: the room is not 1-64 characters of [A-Za-z0-9_-].
	ErrInvalidRoom = errors.New("chatclient: invalid room")
	// ErrUnauthorized: the server refused the token (HTTP 401, close 4401: missing,
	// malformed or expired) and the token function gave no other one (or there is none).
	ErrUnauthorized = errors.New("chatclient: unauthorized")
	// ErrForbidden: the token does not allow the room (HTTP 403, close 4403, a
	// "forbidden" error frame) and the token function gave no other one, or the new one
	// was refused too.
	ErrForbidden = errors.New("chatclient: forbidden")
	// ErrRejected: the server rejected the request itself (HTTP 400, close 1008 or 1009):
	// trying again would be rejected again.
	ErrRejected = errors.New("chatclient: rejected by the server")
	// ErrConnectionLost: the connection ended and MaxReconnects allowed no reconnection.
	ErrConnectionLost = errors.New("chatclient: connection lost")
	// ErrNotConnected: Subscription.Typing between connections or after the end.
	ErrNotConnected = errors.New("chatclient: not connected")
)

// CloseError is a websocket close the server sent (or 1006 when the connection ended
// without one).
type CloseError struct {
	Code int
	Text string
}

func (e *CloseError) Error() string {
	if e.Text == "" {
		return fmt.Sprintf("websocket closed %d", e.Code)
	}
	return fmt.Sprintf("websocket closed %d: %s", e.Code, e.Text)
}

// HTTPError is a refused websocket upgrade.
type HTTPError struct {
	Status int
	Reason string // the body's "error", if any
}

func (e *HTTPError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("upgrade refused: HTTP %d", e.Status)
	}
	return fmt.Sprintf("upgrade refused: HTTP %d: %s", e.Status, e.Reason)
}
