// Package router is the request path of a clustered node: it takes the
// requests the front ends (RESP, HTTP) decode, finds each key's namespace
// and shard, and serves it with the shard's engine on this node, or
// forwards it in one hop to a node that has a replica of the shard.
// Clients never need to know the topology: every node answers for every
// key.
//
// Guarantees:
//   - A request is served by the engine its namespace's policy names; for
//     strong namespaces, reads are linearizable (ReadIndex) and writes are
//     acknowledged after a majority commit.
//   - Every request runs under a deadline (the caller's, or the default),
//     which also bounds its forwarding hop; a forwarded request is retried
//     on another replica only when the first could not be reached at all,
//     so a write is never applied twice.
//   - Scans are linearizable (every shard's read barrier first) and are
//     served by a node with a replica of every shard of the namespace: this
//     one, or one the scan is handed to in one hop.
//   - A batch whose keys live in one shard is atomic. A batch spanning
//     shards (MSET, DEL of many keys) is atomic per shard, not across
//     shards; MSETNX across shards is refused because its all-or-nothing
//     promise cannot be kept.
package router
