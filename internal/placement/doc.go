// Package placement decides where data lives: which shard a key belongs to,
// and which nodes hold each shard's replicas. It is pure: no I/O, no clock,
// no randomness beyond stable hashes, so every node computes the same answer
// from the same inputs and the control plane can record it once.
//
// Keys map to shards by a stable 64-bit hash of namespace and key modulo a
// fixed shard count. Replicas are placed by rendezvous (highest random
// weight) hashing with bounded load: each shard prefers the nodes that score
// highest for it, but no node takes more than its share, so node loads
// differ by at most one replica. Rebalance keeps every replica it can when
// nodes join or leave and moves only what balance requires; a replica set is
// ordered by score, so its first node is the shard's preferred leader.
package placement
