// Package failbench measures what killing a primary costs: the kill-trial
// benchmark of a primary/replica store, run the same way against Fulcrum's
// replication=primary namespaces and against Redis with Sentinel.
//
// # What a trial measures
//
// A writer issues SETs of unique keys (one per sequence number) at a fixed
// rate in open loop (Config.Rate ticks a second, each handed to one of
// Config.InFlight connections; a tick that finds every connection busy is
// skipped and counted). For every write it records when it was sent, when
// it returned and whether it was acknowledged (an OK reply; for Redis with
// WAIT, OK and at least the asked replicas). After a warm-up and a random
// extra delay, the trial kills the primary's process with SIGKILL; the
// writer carries on, each connection doing what a real client does when a
// request fails (Fulcrum: try the next node, any of which forwards a write
// to the shard's primary; Redis: ask a Sentinel for the master's address
// again). Once a write sent after the kill is acknowledged, it keeps
// writing for Config.Settle and stops. Then:
//
//   - write unavailability is the time from the kill to the first
//     acknowledgement of a write sent after the kill (Trial.Unavailable),
//     and the longest interval between two consecutive acknowledgements in
//     the trial (Trial.AckGap);
//   - lost acknowledged writes are the acknowledged keys that the new
//     primary does not return with the written value (every acknowledged
//     key of the trial is read back);
//   - the killed process is started again on its data (it returns as a
//     replica) and, for a system that counts the writes a failover cost it
//     (LostReporter), the count the returning node reports is read and
//     compared with the measured loss.
//
// The next trial kills whichever process is primary then. Before each
// trial the system is made whole again (System.Ready): every replica up
// and following the primary, so that trials start alike.
//
// Over loopback an asynchronous primary's replicas are rarely more than
// a write behind, so a plain kill seldom loses anything. With
// Config.Isolate the primary is first cut off from its replicas (an
// nftables table of the run's own drops their traffic both ways; clients
// and Sentinels still reach it; needs root) for a while and then killed,
// so that it acknowledges writes no replica receives; the cut is healed
// once writes resume. Each process therefore talks to its peers from a
// loopback address of its own (127.0.0.41.. for Fulcrum's peer traffic,
// 127.0.0.51.. for the Redis servers). Stopping the replicas (SIGSTOP)
// would not do: the kernel keeps what the primary sent in their sockets.
//
// # Shape
//
// Run drives a System (the store under test: start, kill, restart, read
// back) with the pure history analysis in history.go and the summaries in
// stats.go; StartFulcrum and StartRedis are the two systems, each owning
// the processes it started (Close kills and waits for them). Processes
// bind loopback addresses only and get SIGKILL from the kernel if the
// process that started them dies (Linux). Nothing here reads flags or the
// environment: the entry point is the FULCRUM_FAILBENCH test in
// cmd/fulcrum (failbench_test.go), which builds the fulcrum binary and
// passes everything in.
package failbench
