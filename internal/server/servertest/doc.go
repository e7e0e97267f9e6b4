// Package servertest runs a real Fulcrum node in-process for tests of other
// packages (the bench, the CLI): the same server.New as the binary, on
// loopback ports chosen by the kernel, with its data in the test's temporary
// directory, stopped and waited for when the test ends.
package servertest
