//go:build !linux

package failbench

import "syscall"

// childAttr: without a parent-death signal here, children outlive a
// benchmark killed with SIGKILL (Close still kills them).
func childAttr() *syscall.SysProcAttr { return nil }

// loopbackIP: only 127.0.0.1 is sure to exist here, so nothing can be cut
// off by address (isolation needs Linux's nftables anyway).
func loopbackIP(base, i int) string { return "127.0.0.1" }
