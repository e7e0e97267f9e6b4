// Package hlc provides a hybrid logical clock: timestamps that follow physical
// time closely but are strictly monotonic on one node and respect causality
// across nodes (a timestamp received in a message moves the local clock
// forward).
//
// The package is pure: physical time comes in through a function supplied by
// the caller, so tests drive it step by step. A Clock is safe for concurrent
// use.
package hlc
