package transport

import "encoding/binary"

// MaxFrameHeader is the longest server frame header: FIN + opcode, then the unmasked
// payload length in 1, 3 or 9 bytes (RFC 6455 5.2). A payload appended after this many
// reserved bytes becomes a frame in place (Frame).
const MaxFrameHeader = 10

// TextFrame returns payload as a complete server text frame.
func TextFrame(payload []byte) []byte {
	return Frame(append(make([]byte, MaxFrameHeader, MaxFrameHeader+len(payload)), payload...))
}

// Frame turns b, a payload behind MaxFrameHeader reserved bytes, into a complete unmasked
// text frame (a suffix of b) by writing its header right before the payload. Such frames
// are written as they are: by TryWrite, or copied into a batch by WriteMany.
func Frame(b []byte) []byte {
	n := len(b) - MaxFrameHeader
	var h []byte
	switch {
	case n < 126:
		h = b[MaxFrameHeader-2 : MaxFrameHeader]
		h[1] = byte(n)
	case n < 1<<16:
		h = b[MaxFrameHeader-4 : MaxFrameHeader]
		h[1] = 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h = b[:MaxFrameHeader]
		h[1] = 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
	h[0] = 0x81 // FIN, text
	return b[MaxFrameHeader-len(h):]
}
