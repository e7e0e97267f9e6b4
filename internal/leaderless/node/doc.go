// Package node runs Fulcrum's leaderless (eventual and weak) engine on one
// node: the replica RPCs, the runner that drives the pure quorum
// coordinators of package leaderless over a transport.Endpoint, read
// repair, hinted handoff and Merkle-tree anti-entropy. The protocol
// decisions stay in leaderless, versionvec and merkle (pure, tested on
// their own); this package owns the network calls, the store, the clock
// readings and the goroutines. It is a separate package so that leaderless
// stays pure (its own test forbids I/O imports).
//
// # Data
//
// A replica keeps, per key, one versionvec.Siblings state (a dotted version
// vector set), encoded as raw bytes in a Store under the key's namespace.
// Namespaces in last-writer-wins mode (the default, KeepSiblings false)
// keep the state collapsed to its winner. Deletes write tombstones, which
// are never dropped (tombstone collection needs every replica to agree and
// is not built), so a replica that missed a delete cannot resurrect the
// value: its older state loses to the tombstone in every merge.
//
// # Writes
//
// The coordinator must be one of the key's N home replicas (else
// ErrNotReplica: the caller forwards to one). It reads its own state,
// mints the write with versionvec Update (or Delete) at an hlc timestamp
// under its node id, persists it, and sends the new state to the plan's
// replicas; each merges it with versionvec.Sync under a per-key lock, so
// concurrent puts of one key never lose each other's siblings. A fallback
// standing in for an unreachable home replica keeps the state as a durable
// hint instead and hands it over once the owner answers a probe; hints
// older than HintWindow are dropped (convergence of those keys is then left
// to anti-entropy and read repair).
//
// A failed write is not rolled back. Its error has code UNAVAILABLE (or
// TIMEOUT when the deadline decided it) and, when the write may have been
// applied somewhere, matches ErrIndeterminate and says so in its message.
//
// # Reads
//
// A read asks R replicas for their states, answers with the merge of the
// newest ones (ordered by their causal contexts), and repairs the home
// replicas that answered with something older: asynchronously by default,
// before answering with leaderless.RepairBlocking.
//
// # Anti-entropy
//
// With Config.Shard and Config.Shards set, the node keeps one merkle.Tree
// per shard it holds, over (key, encoded state) items, updated on every
// local write of a state (built from the store the first time it is
// needed). Periodically it diffs each tree with every other home replica
// of the shard, round by round over RPC, and for each differing key-hash
// range merges the peer's states here and sends its own there. Replicas
// converge whatever was lost: hints past their window, repairs never
// sent, writes that reached only some replicas.
//
// # Goroutines
//
// Engine.Close stops and waits for everything the engine started: one
// driver goroutine per request in flight (it owns that request's
// coordinator and ends at the request's deadline at the latest), one
// goroutine per outstanding replica call, the handoff loop and the
// anti-entropy loop. Serve calls run on the transport's goroutines.
package node
