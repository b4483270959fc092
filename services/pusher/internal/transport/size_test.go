package transport

import (
	"testing"
	"unsafe"
)

// TestConnSizeClass: a Conn is allocated per connection; over 240 bytes it would take the
// allocator's 256-byte class (16 bytes more per idle connection, twice that in RSS).
func TestConnSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 240 {
		t.Fatalf("Conn is %d bytes, over the 240-byte size class: pack its fields", n)
	}
}
