//go:build unix && !linux

package main

import "syscall"

// childProcAttr puts a node in its own process group, so a Ctrl-C in the
// terminal reaches only "fulcrum dev", which stops the nodes itself. (There
// is no parent-death signal here: nodes outlive a "fulcrum dev" killed with
// kill -9.)
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
