package chatclient

import (
	"errors"
	"fmt"
	"time"

	"github.com/gorilla/websocket"
)

// read delivers conn's frames until it ends; it returns the URL it was connected to, the
// close code (1006 without a close frame) and the error.
func (s *Subscription) read(conn *websocket.Conn) (u string, code int, err error) {
	defer func() {
		s.mu.Lock()
		s.conn = nil
		s.mu.Unlock()
		conn.Close()
	}()
	u = s.c.urls[s.next]
	idle := s.c.o.idleTimeout
	extend := func() { _ = conn.SetReadDeadline(time.Now().Add(idle)) }
	conn.SetPingHandler(func(data string) error {
		extend()
		// A failed pong is not this reader's error: a broken connection fails the read.
		_ = conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		return nil
	})
	for {
		extend()
		_, data, err := conn.ReadMessage()
		if err != nil {
			code := websocket.CloseAbnormalClosure
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
				err = &CloseError{Code: ce.Code, Text: ce.Text}
				if code == websocket.ClosePolicyViolation || code == websocket.CloseMessageTooBig {
					err = fmt.Errorf("%w: %w", ErrRejected, err)
				}
			}
			return u, code, err
		}
		if s.isStopped() {
			return u, 0, nil
		}
		s.dispatch(data)
	}
}

// dispatch hands one frame to the handlers.
func (s *Subscription) dispatch(data []byte) {
	f, ok := decodeFrame(data)
	switch {
	case !ok:
		s.skipped(Frame{Data: data})
	case f.Type == "message":
		if f.Room != s.room || f.Seq <= s.cursor.Load() {
			s.skipped(f.frame(data))
			return
		}
		s.cursor.Store(f.Seq)
		s.deliver(f.msg(data))
	case f.ordered():
		if f.Room != s.room || f.Seq <= s.cursor.Load() {
			s.skipped(f.frame(data))
			return
		}
		s.cursor.Store(f.Seq)
		if s.o.onFrame != nil {
			s.o.onFrame(f.frame(data))
		}
	default:
		if f.Type == "subscribed" && f.Room == s.room {
			epoch := f.Epoch
			s.epoch.Store(&epoch)
		}
		if s.o.onFrame != nil {
			s.o.onFrame(f.frame(data))
		}
	}
}

func (s *Subscription) skipped(f Frame) {
	if s.o.onSkipped != nil {
		s.o.onSkipped(f)
	}
}

func (s *Subscription) deliver(m Msg) {
	if s.handler != nil {
		s.handler(m)
		return
	}
	select {
	case s.ch <- m:
	case <-s.stopped:
	}
}
