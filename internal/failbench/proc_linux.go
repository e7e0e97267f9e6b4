package failbench

import (
	"fmt"
	"syscall"
)

// childAttr asks the kernel to SIGKILL a child if the process that started
// it dies, so no server outlives a benchmark that was itself killed.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// loopbackIP returns the loopback address of a process that may have to
// be cut off from the others by address (Linux routes all of 127/8 to
// lo); base keeps the systems' ranges apart.
func loopbackIP(base, i int) string { return fmt.Sprintf("127.0.0.%d", base+i) }
