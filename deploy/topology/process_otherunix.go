//go:build unix && !linux

package topology

import "syscall"

// sysProcAttr puts a member in its own process group (see process_linux.go). There is no
// parent-death signal outside Linux: members outlive a runner killed with kill -9.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
