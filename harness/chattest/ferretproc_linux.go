package chattest

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill the child when the test process dies (a crash or a
// timeout's kill leaves no orphan FerretDB holding a port).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
