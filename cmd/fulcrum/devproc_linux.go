package main

import "syscall"

// childProcAttr puts a node in its own process group, so a Ctrl-C in the
// terminal reaches only "fulcrum dev", which stops the nodes itself; and
// asks the kernel to send the node SIGTERM should "fulcrum dev" die
// without stopping it (kill -9), so no node outlives it.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
