// Package primary is Fulcrum's primary/replica (master-slave) engine: per
// shard, one primary chosen by the control plane appends client writes to
// a replication log, applies them locally and ships the log to the
// replicas, which apply it in order and serve reads with their lag.
//
// Decisions come from internal/failover and are not made here: the lease
// arithmetic (Lease.HolderCheck), epoch fencing (Check), the in-sync set
// (ISR), when a write is acknowledged (AckPolicy), whom to promote
// (Decide, in the control plane behind Authority) and which writes a
// returning node must set aside (LostWrites). This package runs the loops
// around them: storage, network, clock and the control plane come in
// through Config, transport.Endpoint, *storage.Store and Authority.
//
// # Guarantees
//
//   - The log: entry LSN n of epoch e is applied with kv.Batch.Revision = n
//     (so a value has the same version on every replica) together with
//     storage marks holding the entry and the replica's position, in one
//     atomic batch. The retained tail (Config.TailEntries) is rebuilt from
//     those marks by AddShard after a restart, and the highest epoch seen
//     is persisted before the node acts on it.
//   - Writes: a primary takes a write only while its lease holds on its
//     own clock and the ack policy can be met (otherwise UNAVAILABLE), and
//     acknowledges it when the policy says: async once applied locally,
//     semi when K replicas applied it, sync when every replica the control
//     plane may promote applied it. An unacknowledged write whose context
//     ends reports TIMEOUT (outcome unknown), or UNAVAILABLE if it never
//     entered the log.
//   - Fencing: every message carries its epoch. A replica refuses entries
//     of an older epoch (answering with its epoch, which makes the old
//     primary step down) and adopts a newer one; a primary steps down on
//     any sign of a newer epoch and abandons its pending acknowledgements.
//     With the lease this means no write is accepted under an old epoch
//     after the control plane could have promoted someone else, provided
//     the clocks keep failover.Config.MaxDrift.
//   - No silent loss: when a node meets the primary of a newer epoch it
//     checks its log against that primary's epoch history once; the
//     entries the primary does not hold are moved into LostNamespace (or,
//     beyond the retained tail, counted only), removed from the log and
//     never merged back; the node then replaces the shard's rows with a
//     snapshot of the primary's. In sync mode such entries were never
//     acknowledged; in async mode their number is the acknowledged writes
//     the failover lost (Status.Lost).
//   - Replica reads report their lag (Lag: entries and time) and are
//     refused when the time lag exceeds the caller's bound.
//
// # Goroutines
//
// Per shard: the log loop (the only writer of the log and its marks), the
// control-plane ticker (Report, Renew, in-sync proposals) and, while
// primary, one sender per replica streaming entries and heartbeats with
// at most Config.MaxInflight unacknowledged. They run on the shard's
// context, a child of the engine's: Engine.RemoveShard stops one shard's
// (and deletes its log and position, keeping its lost writes), and
// Engine.Close stops them all; both wait for them.
//
// # Timing
//
// Each shard has its own failover bounds (ShardConfig.Failover, derived
// from its namespace's failover timeout by failover.ConfigFor), from
// which its lease checks, in-sync bounds, report, heartbeat and
// Authority-call intervals follow; the Authority must hold the shard to
// the same bounds.
//
// # Wire
//
// Messages use transport kind KindPrimary: appends (one-way, primary to
// replica, carrying the primary's epoch history and last LSN), acks and
// stale-epoch notices (one-way), and snapshot requests (Call, answered by
// the primary from one storage view).
package primary
