// Package raftlog is the durable Raft log of many Raft groups kept in one
// Pebble database: each group's entries, hard state, conf state and
// compaction point, behind the raft.Storage interface of go.etcd.io/raft/v3.
//
// It is built for a multi-raft node loop that handles Ready for all its
// groups and persists them together: a Batch collects the appends, hard
// states, conf states and snapshot applications of any number of groups and
// Commit writes them as one Pebble batch, so one fsync covers every group
// (group commit).
//
// Guarantees:
//   - Atomic commits: a Batch is applied all or nothing, across all the
//     groups it touches. A Batch that does not fit a group's log (a gap, an
//     out-of-date snapshot) is refused whole before anything is written.
//   - Durability: once Commit(true) returns, the batch survives a crash. A
//     crash may lose a suffix of Commit(false) batches (and of Compact
//     calls), never a prefix or part of one: after recovery every group is
//     in the state it had after some prefix of the commits, its log
//     contiguous from FirstIndex to LastIndex.
//   - Visibility: the in-memory view (LastIndex, Term, Entries, ...) changes
//     only after the write that backs it succeeded. After a failed write the
//     disk may hold more than the view, so the Store refuses further writes
//     (ErrFailed) until it is reopened.
//   - Recovery: Open rebuilds every group's state from Pebble, reading each
//     stored entry's header once (cost proportional to the uncompacted log)
//     and checking that each log is contiguous; a hole or an undecodable
//     entry is reported as ErrCorrupt rather than served.
//
// Reads: FirstIndex, LastIndex, Term, InitialState and Snapshot answer from
// memory (Term from a run-length index of terms), so any goroutine may call
// them at any time. Entries serves recent entries from a small per-group
// cache and the rest from Pebble.
//
// Concurrency and lock order: writers (Batch.Commit, Compact, DeleteGroup,
// Close) are serialized by Store.write, held across the Pebble write; a
// group's in-memory state is guarded by its own mutex, held only for memory
// work. Order: Store.write, then Store.groups, then a group's mu. Readers
// that go to Pebble hold Store.write shared, so they never see disk ahead of
// memory.
//
// The package starts no goroutines of its own; Pebble's stop in Close.
//
// Errors that raft branches on are raft's own sentinels, returned unwrapped
// because raft compares them with ==: raft.ErrCompacted,
// raft.ErrUnavailable, raft.ErrSnapshotTemporarilyUnavailable.
package raftlog
