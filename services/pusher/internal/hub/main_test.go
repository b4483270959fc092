package hub

import (
	"testing"

	"go.uber.org/goleak"
)

// No writer, replay or timer goroutine outlives the tests and benchmarks.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
