package hub

import (
	"testing"
	"unsafe"
)

// TestClientSizeClass: a Client is allocated per connection; at 193 bytes it would take
// the allocator's 208-byte class (16 bytes more per idle connection, twice that in RSS).
func TestClientSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(Client{}); n > 192 {
		t.Fatalf("Client is %d bytes, over the 192-byte size class: pack its fields", n)
	}
}
