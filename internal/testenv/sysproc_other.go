//go:build !linux

package testenv

import "syscall"

// sysProcAttr puts the child in its own process group so Close kills the group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
