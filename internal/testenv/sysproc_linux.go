package testenv

import "syscall"

// sysProcAttr puts the child in its own process group (so Close kills the group) and asks the
// kernel to kill it if the test binary dies without calling Close.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
