package topology

import (
	"fmt"
	"os"
	"syscall"
)

// sysProcAttr: Windows has no process groups to signal; a member runs as a plain child.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// kill can only terminate on Windows: SIGKILL kills the process (not its children);
// SIGTERM, the graceful drain the fault scenarios depend on, has no equivalent here.
func kill(proc *os.Process, sig syscall.Signal) error {
	if sig == syscall.SIGKILL {
		return proc.Kill()
	}
	return fmt.Errorf("%v: not supported on windows (the topology runner needs POSIX signals)", sig)
}
