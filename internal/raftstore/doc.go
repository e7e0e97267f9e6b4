// Package raftstore is Fulcrum's strong engine: every shard replica on a
// node is a member of that shard's Raft group (multi-raft, on etcd's raft
// library through RawNode), and one loop per node drives all of them.
//
// Guarantees:
//   - A write is acknowledged only after a majority of the shard's replicas
//     have it in their durable Raft log and the local replica has applied
//     it; every replica applies the same entries in the same order and
//     mints the same versions (the entry's log index), so a value's
//     version is the same wherever it is read.
//   - Reads through Read are linearizable: they go through ReadIndex (the
//     leader confirms with a quorum that it still leads) and wait for the
//     local replica to apply up to that index. There is no lease read.
//   - CP: a replica that cannot reach a quorum never answers a read or a
//     write from its own possibly stale state. Requests fail when their
//     context ends: UNAVAILABLE when the write provably never entered the
//     log (no leader), TIMEOUT (outcome unknown) when it may have.
//
// The loop batches: every iteration persists the log entries and hard
// states of all groups in one synced raftlog batch (group commit), sends
// the messages of all groups to each peer node as one transport message,
// and applies the committed entries of all groups to the state machine
// (internal/storage) in one call. The state machine is not synced per
// entry: the Raft log is the durable record, and the log is compacted only
// after the state machine has been synced.
//
// Time, network and storage come in from outside (Config), so the engine
// runs over transport/simnet with in-memory filesystems in tests.
package raftstore
