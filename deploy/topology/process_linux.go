package topology

import "syscall"

// sysProcAttr puts a member in its own process group: a terminal's Ctrl-C reaches only
// the runner, which stops the members in order, and kill -9 takes nginx's workers with
// the master. The member is killed with the runner if that dies without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
