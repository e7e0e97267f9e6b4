// Package versionvec provides the version metadata of the eventual-consistency
// engine: version vectors, and dotted version vector sets ("DVV sets", after
// Preguiça et al., Dotted Version Vectors, and Riak's dvvset) that keep the
// concurrent versions of one key as siblings.
//
// A Vector maps node ids to event counters. Compare orders two vectors as
// Before, After, Equal or Concurrent; Merge is the pointwise maximum. Vectors
// have one canonical binary encoding (entries sorted by node id, uvarints),
// so equal vectors encode to equal bytes and Decode accepts nothing else.
//
// Siblings is the state one replica keeps for one key: a causal context (a
// Vector covering every write the replica has seen, directly or through a
// later write that saw it) and the writes not yet superseded, each tagged with
// the Dot (node, counter) that names it. One vector per key plus one dot per
// sibling is what keeps siblings honest: a plain per-key vector cannot tell a
// write that saw its predecessor from one that raced it, so it either loses
// writes (server ids) or piles up false siblings (client ids).
//
// The protocol a replica runs:
//
//   - read: return Values (or Live) and Context; the client passes the
//     context back with its next write to the key.
//   - write at coordinator n: s, dot := s.Update(ctx, n, value, ts) on n's own
//     state (Delete writes a tombstone), persist, then send s to the other
//     replicas, which store Sync(theirs, s). n must be a replica that holds
//     the key's state: the new dot's counter is one past the highest n has
//     issued for the key, and at least the write's hlc wall time in
//     microseconds (CounterFloor). The second bound is what lets n forget
//     a state: once n's clock is past every counter of n's in it
//     (Forgettable), a dot minted from the zero state is still above every
//     dot of n's that other replicas, hints or clients hold, so it is never
//     taken for a write they have already seen. A node that lost the state
//     in any other way (a wiped disk with its clock set back) could issue
//     the same dot twice.
//   - read repair and anti-entropy: merged := Sync(a, b, ...) and write merged
//     back to every replica whose state is not Equal to it.
//
// Guarantees, checked by property tests against a history-based model:
// Update discards exactly the siblings the client's context covers (the
// writes the client saw) and keeps every concurrent one; Sync is commutative,
// associative and idempotent, so replicas converge whatever order states
// travel in; a sibling is dropped only when a write that saw it is known, so
// no acknowledged write disappears silently; and the siblings of a state are
// exactly the writes no other known write saw, so there are never more
// siblings than truly concurrent writes.
//
// Namespaces in last-writer-wins mode use Winner (highest hlc timestamp, ties
// broken by node id, then counter) or Collapse. A delete is a tombstone
// sibling; a key whose siblings are all tombstones reads as absent. When
// to drop such a state (only after every replica has it, or a replica
// that missed the delete brings the value back) and pruning vector
// entries of departed nodes need knowledge of every replica, so they are
// left to the engine; Forgettable says whether the dots allow it.
//
// The package is pure: no I/O, clock or goroutines. Siblings and Vector
// values returned by this package are treated as immutable: operations
// return new states and never modify their inputs or the byte slices in
// them.
package versionvec
