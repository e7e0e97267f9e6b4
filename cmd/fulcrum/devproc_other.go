//go:build !unix

package main

import "syscall"

// childProcAttr is the default here: the nodes share the console, and
// "fulcrum dev" stops them by killing them (there is no SIGTERM).
func childProcAttr() *syscall.SysProcAttr { return nil }
