package presence

import (
	"os"
	"strings"
	"testing"
)

// A node id is one NATS subject token whatever the host name.
func TestNodeIDIsOneSubjectToken(t *testing.T) {
	host, _ := os.Hostname()
	id := NewNodeID()
	if strings.ContainsAny(id, ".*> \t") {
		t.Errorf("node id %q (host %q) is not one subject token", id, host)
	}
	if other := NewNodeID(); other == id {
		t.Errorf("two node ids are both %q", id)
	}
}
