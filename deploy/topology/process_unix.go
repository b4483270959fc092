//go:build unix

package topology

import (
	"os"
	"syscall"
)

// kill sends sig to the process; SIGKILL goes to its whole process group (nginx's workers
// with the master).
func kill(proc *os.Process, sig syscall.Signal) error {
	pid := proc.Pid
	if sig == syscall.SIGKILL {
		pid = -pid
	}
	return syscall.Kill(pid, sig)
}
