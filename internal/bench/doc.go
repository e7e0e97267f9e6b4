// Package bench is a load generator for key-value servers: it drives one or
// more targets (Fulcrum or any Redis-protocol server over RESP, Fulcrum over
// HTTP, an etcd v3 cluster through its official client, with linearizable
// reads) with a YCSB-style workload (reads, writes, deletes and, on the
// http and etcd targets, compare-and-sets) in closed loop (N clients) or
// open loop (a fixed arrival rate), records latency in HDR histograms per
// operation and per interval, and reports tables, JSON and CSV results. A
// CAS whose precondition failed is counted as a conflict, not an error.
// On Fulcrum's resp and http targets, every request can ask an eventual
// namespace for its own write and read quorums (Config.Quorum).
//
// Several targets in one run are measured in interleaved rounds (A, B, A,
// B, ...) so that they share the machine's noise. In open loop, latency is
// measured from each request's intended start time, so a server (or
// generator) that falls behind cannot hide queueing (coordinated omission).
//
// Every run is bounded by a duration or an operation count and connects
// only to the addresses it is given.
package bench
