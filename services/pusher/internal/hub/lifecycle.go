package hub

// A client's lifecycle is two small state machines, both guarded by Client.mu and changed
// only by the functions in this file.
//
// The connection's phase:
//
//	open ──Close──▶ closing ──ReaderEnded──▶ readerGone ──writer ends──▶ ended
//	  │                                          ▲                          ▲
//	  └────────────────ReaderEnded───────────────┘                          │
//	open, closing ──a failed write (the writer ends)────────────────────────┘
//
// open: frames are written inline or queued. closing: a close was asked for (closeCode);
// nothing more is queued, and the writer sends the close frame, waits (a second at most)
// for the reader's end so that the peer can answer, and closes the socket. readerGone:
// the reader ended (the peer left, broke the protocol, or answered our close); the writer
// closes the socket, after the close frame if one was asked for (also after this point).
// ended: the socket is closed and done (if made) is closed; nothing changes any more.
//
// The writer goroutine's state, orthogonal to the phase:
//
//	stopped ──wakeLocked──▶ running ◀──▶ busy
//	   ▲                       │
//	   └─nothing to write──────┘ (or the writer ends the connection)
//
// stopped: no writer goroutine (an idle connection). running: the writer exists, between
// writes (lingering one flush interval before it stops): the fan-out may still write
// inline. busy: the writer is writing or waiting out the flush interval: everything goes
// through the queue. wakeLocked is the one place a writer starts.
type phase uint8

const (
	open phase = iota
	closing
	readerGone
	ended
)

type writerState uint8

const (
	writerStopped writerState = iota
	writerRunning
	writerBusy
)

// wakeLocked starts the writer goroutine unless one runs or the connection ended. Every
// event that gives the writer work calls it: a queued frame, a close, a due ping, the tail
// of a partial inline write, the end of the reader. Caller holds mu.
func (c *Client) wakeLocked() {
	if c.writer != writerStopped || c.phase == ended {
		return
	}
	c.writer = writerRunning
	go c.writeLoop()
}

// Close asks the writer to send a close frame with code and end the connection. The first
// code asked for wins; queued frames are dropped.
func (c *Client) Close(code int, text string) {
	c.mu.Lock()
	c.closeLocked(code, text)
	c.mu.Unlock()
}

func (c *Client) closeLocked(code int, text string) {
	if c.closeCode != 0 || c.phase == ended {
		return
	}
	c.closeCode, c.closeText = code, text
	c.queue = nil
	if c.phase == open {
		c.phase = closing
	}
	c.wakeLocked()
}

// readerEnded records the end of the reader goroutine; the writer then closes the
// connection.
func (c *Client) readerEnded() {
	c.mu.Lock()
	if c.phase < readerGone {
		c.phase = readerGone
	}
	if c.readDone != nil {
		close(c.readDone)
	}
	c.wakeLocked()
	c.mu.Unlock()
}

// readerDone returns a channel closed once the reader goroutine has ended. The writer
// asks for it before it ends the connection (made on demand: most connections never
// need it).
func (c *Client) readerDone() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readDone == nil {
		c.readDone = make(chan struct{})
		if c.phase == readerGone {
			close(c.readDone)
		}
	}
	return c.readDone
}

// startWrite marks the writer busy: no inline writes until finishWrite. Caller holds mu.
func (c *Client) startWriteLocked() { c.writer = writerBusy }

// finishWriteLocked marks the writer back between writes. Caller holds mu.
func (c *Client) finishWriteLocked() {
	if c.writer == writerBusy {
		c.writer = writerRunning
	}
}

// stopWriterLocked records that the writer goroutine returns with nothing to do. Caller
// holds mu.
func (c *Client) stopWriterLocked() { c.writer = writerStopped }

// end closes the connection (with a close frame when code is not 0, waiting for wait as
// Transport.Close does); the writer calls it once, as its last act.
func (c *Client) end(code int, text string, wait <-chan struct{}) {
	c.hub.pings.unschedule(c)
	c.t.Close(code, text, wait)
	c.mu.Lock()
	c.phase, c.writer, c.queue = ended, writerStopped, nil
	if c.done != nil {
		close(c.done)
	}
	c.mu.Unlock()
}

// Done is closed once the connection is closed. The channel is made on demand: an idle
// connection's never is until it ends (a channel is ~0.1 KiB of heap per connection).
func (c *Client) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.phase == ended {
			close(c.done)
		}
	}
	return c.done
}
