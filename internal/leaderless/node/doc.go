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
// keep the state collapsed to its winner. Deletes write tombstones: a
// replica that missed a delete cannot resurrect the value, because its
// older state loses to the tombstone in every merge.
//
// # Tombstones and the resurrection problem
//
// A tombstone is kept for Config.TombstoneGrace (default a day) after the
// delete; then a periodic sweep (Engine.CollectTombstonesOnce) removes the
// keys whose states hold only tombstones, the newest that old, under the
// key's lock and from the shard's Merkle tree as well. Removing it is what
// lets the value come back: a replica that missed the delete, or a hint
// carrying the old value to one, then meets no tombstone, and read repair
// and anti-entropy copy the value back to every replica. So the grace must
// exceed the longest an old copy can still be travelling through the
// engine's own machinery: a hint's HintWindow, two AntiEntropyIntervals
// for anti-entropy to reach a replica that missed the delete (a round may
// have just passed, or fail once) and a write's RequestTimeout of
// background sends; Config.Validate refuses less. Beyond that floor it is
// how long a replica may be away and still rejoin safely. A replica away
// longer than the grace (down, partitioned, restored from an old backup)
// can resurrect keys deleted meanwhile: wipe its leaderless rows (or
// remove it from the cluster and add it back empty) before it rejoins.
//
// Replicas collect at different times. A replica that has collected does
// not store a past-grace tombstone that a slower one sends back (through
// anti-entropy, a repair or a hint; counted in Stats.TombstonesRefused),
// so the two converge on "no state" once the slower one sweeps; a replica
// that still holds the value takes the tombstone over it, as before.
//
// Forgetting a key's state must not let its next write repeat an old dot
// (node, counter): replicas, hints and clients that still hold the old
// state would take the new write for one they had already seen superseded
// and drop it. versionvec makes a write's counter at least its hlc wall
// time in microseconds, and the sweep removes a state only once this
// node's clock is past every counter of its own in it
// (versionvec.Siblings.Forgettable), so the counters of a key keep growing
// across a collection. That assumes the node's clock does not go back by
// about the grace period across a restart.
//
// Weak namespaces have no repair: a replica that missed a delete keeps
// the value for ever whatever the grace, and a tombstone only guards
// against a write's own late sends. They are swept like eventual ones
// when Config.Namespaces lists them.
//
// # Writes
//
// The coordinator must be one of the key's N home replicas (else
// ErrNotReplica: the caller forwards to one). It reads its own state,
// mints the write with versionvec Update (or Delete) at an hlc timestamp
// under its node id, persists it (durably as the Store's Put is: with
// storage's sync=always, fsynced, in a commit group shared with the
// node's concurrent writes), and sends the new state to the plan's
// replicas; each merges it with versionvec.Sync under a per-key lock, so
// concurrent puts of one key never lose each other's siblings. The
// persisted mint is the coordinator's own acknowledgement, counted in the
// caller's goroutine before the driver starts: a W=1 write is answered as
// soon as it is stored here, and a W=1 ack means at least this replica
// has it. A fallback
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
// The store has no shard index, so finding the keys of a range means
// reading the whole namespace. The differing ranges of all the shards of
// a namespace shared with one peer are therefore exchanged together, in
// pages of one pass over the namespace on each side (opRanges). Under a
// steady write load some range always differs (writes in flight), so
// every round pays that pass; the loop halves it by leaving a pair alone
// when the peer has exchanged it with this node since this node's
// previous round (an exchange goes both ways), so each pair is exchanged
// about once per round of one side, and by either side alone if the
// other's rounds stop reaching it.
//
// # Goroutines
//
// Engine.Close stops and waits for everything the engine started: one
// driver goroutine per request in flight (it owns that request's
// coordinator and ends at the request's deadline at the latest), one
// goroutine per outstanding replica call, the handoff loop, the
// anti-entropy loop and the tombstone sweep loop. Serve calls run on the
// transport's goroutines.
package node
