// Package kv is Fulcrum's shared vocabulary: keys, values and their metadata,
// the write operations every engine applies, scan requests, size limits and
// the coded errors that front ends map to protocol answers.
//
// It does no I/O. Operations are deterministic given the batch's Now, so the
// same batch applied on several replicas produces the same state.
package kv
