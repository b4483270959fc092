//go:build !linux

package chattest

import "os/exec"

// dieWithParent is a no-op off Linux: there t.Cleanup's Stop is the only guard, and a
// test process killed outright leaves the child running until it is killed by hand.
func dieWithParent(cmd *exec.Cmd) {}
