// Package kv is Fulcrum's shared vocabulary: keys, values and their metadata,
// the write operations every engine applies, scan requests, size limits,
// namespace policies and layouts, and the coded errors that front ends map to
// protocol answers.
//
// It does no I/O. Operations are deterministic given the batch's Now (and,
// for replicated engines, its Revision), so the same batch applied on
// several replicas produces the same state.
//
// codec.go is the binary form of batches, results, values and errors that
// replicated engines put in their logs and snapshots and routers send
// between nodes: versioned, and refusing malformed input with INVALID
// rather than panicking or over-allocating.
package kv
