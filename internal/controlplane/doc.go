// Package controlplane keeps the cluster's metadata — its members, its
// namespaces with their policies, and where each shard's replicas live — in
// a Raft group of its own (MetaGroup), replicated on the strong engine like
// any shard, and hands every node a versioned View of it.
//
// Guarantees:
//   - Every decision that must never be made twice goes through the meta
//     group with a conditional write: a namespace name is taken once, group
//     ids are allocated from one counter, so two nodes racing to create the
//     same namespace cannot both win.
//   - Administrative reads (Namespace, Namespaces) are linearizable: they
//     pass the meta group's read barrier first.
//   - The View a node routes with is its local replica's copy, refreshed
//     every poll interval and at once after a local change; it may lag the
//     meta group by that much, and a router that meets an unknown
//     namespace refreshes before answering NOT_FOUND.
//   - Without a quorum of the meta group no namespace can be created or
//     dropped (UNAVAILABLE), while data shards that keep their own quorum
//     go on serving.
package controlplane
