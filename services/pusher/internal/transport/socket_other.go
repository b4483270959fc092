//go:build !linux

package transport

import "syscall"

// sysConn has no fast paths outside Linux: every frame takes the queue and the writer
// (a batched write through net.Conn), and the reader waits inside the websocket library.
// Both are what Linux does for a connection that is not a plain socket (TLS).
type sysConn struct{}

func (s *sysConn) init(syscall.RawConn) {}

func (s *sysConn) ok() bool { return false }

func (s *sysConn) write([]byte) (int, error) { return 0, nil }

func (s *sysConn) waitReadable() bool { return false }

// parking: no idle poller outside Linux; an idle reader waits in the library.
type parking struct{}

func (c *socket) park(func()) bool { return false }

func (c *socket) forget() {}
