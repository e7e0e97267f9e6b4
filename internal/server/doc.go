// Package server is a Fulcrum node: it builds storage, metrics and the RESP
// and HTTP front ends from a config.Config, owns their goroutines, and shuts
// them down in order.
//
// The same New is used by the fulcrum binary and by in-process tests, so a
// test node is the real node.
//
// Threads: Run owns one goroutine per listener (RESP accept loop, HTTP
// server); the RESP server owns one goroutine per connection; storage owns
// its applier, syncer and sweeper. Run returns only after all of them have
// stopped. See docs/threads.md.
//
// Shutdown order: readiness turns false, both listeners stop accepting,
// in-flight requests get ShutdownTimeout to finish (then connections are
// closed), and storage is closed last so every acknowledged write has been
// committed.
package server
