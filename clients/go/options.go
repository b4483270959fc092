package chatclient

import "strconv"

// SubscribeOption configures one subscription.
type SubscribeOption func(*subOptions)

type subOptions struct {
	since         *uint64
	maxReconnects int
	onFrame       func(Frame)
	onSkipped     func(Frame)
	onEvent       func(Event)
	presence      bool
	name          string
}

// Since starts after seq: every message (and change) of the room with a higher seq is
// delivered, however old (the pushers serve old ranges from history). Without it the
// subscription starts live: with the messages after its "subscribed" frame.
func Since(seq uint64) SubscribeOption { return func(o *subOptions) { o.since = &seq } }

// MaxReconnects ends the subscription at its n+1st disconnection instead of reconnecting
// (Err then wraps ErrConnectionLost and the close); 0: at the first. Default: unlimited.
func MaxReconnects(n int) SubscribeOption { return func(o *subOptions) { o.maxReconnects = max(n, 0) } }

// OnFrame handles the frames that are not messages (see Frame). It runs on the
// subscription's goroutine, in arrival order with the message handler's calls; frames
// with a seq come once each, in seq order, like messages.
func OnFrame(f func(Frame)) SubscribeOption { return func(o *subOptions) { o.onFrame = f } }

// OnSkipped sees what the subscription received and did not deliver: a message or change
// whose seq is not above the last one delivered (sent twice, or out of order), one of
// another room, and a frame that is not valid JSON (Type ""). The contract rules these out;
// the load tool counts them to check the servers.
func OnSkipped(f func(Frame)) SubscribeOption { return func(o *subOptions) { o.onSkipped = f } }

// OnEvent sees the subscription's connections come and go (see Event). It runs on the
// subscription's goroutine (for the first connection, on the goroutine calling
// Subscribe). Calling Stop from it ends the subscription instead of reconnecting.
func OnEvent(f func(Event)) SubscribeOption { return func(o *subOptions) { o.onEvent = f } }

// Presence opts the subscription in to the room's presence and typing frames (v1.3,
// docs/contract.md; they come to OnFrame) under name ("": anonymous; with authentication
// on the server uses the token's name instead).
func Presence(name string) SubscribeOption {
	return func(o *subOptions) { o.presence, o.name = true, name }
}

// EventKind says what happened to a subscription's connection.
type EventKind int

const (
	// Connected: the server confirmed the subscription on a new connection.
	Connected EventKind = iota + 1
	// Disconnected: the connection ended (Code: the close code, 1006 when it just
	// dropped); the subscription reconnects unless it is stopping or cannot go on.
	Disconnected
	// ConnectFailed: an attempt to connect failed (Err); the next URL is tried, or the
	// same after a backoff.
	ConnectFailed
)

func (k EventKind) String() string {
	switch k {
	case Connected:
		return "connected"
	case Disconnected:
		return "disconnected"
	case ConnectFailed:
		return "connect failed"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is a change of a subscription's connection.
type Event struct {
	Kind EventKind
	URL  string // the pusher
	// Connected: Resumed says a since was sent (Since, then the cursor), Subscribed what
	// the server answered.
	Resumed    bool
	Since      uint64
	Subscribed Subscribed
	// Disconnected: Code is the close code (1006: no close frame); Err says more.
	Code int
	Err  error
}
