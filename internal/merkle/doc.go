// Package merkle provides the Merkle trees that replicas of an eventually
// consistent shard compare to find the keys they disagree on (anti-entropy),
// and the round-by-round diff protocol they run over the network.
//
// A Tree has fixed depth d over the 64-bit key-hash space: leaf i is the
// bucket of key hashes whose top d bits are i (RangeOf, LeafOf). A leaf's
// hash is the sum modulo 2^64 of the item hashes of the (key, version)
// pairs in it, and an inner node's hash is the sum of its children's, so
// every node sums the items below it and the root sums them all.
//
// Why sums: adding, removing or replacing an item touches one leaf and its
// d ancestors (O(depth)) by adding or subtracting a delta, in any order, so
// the tree follows writes incrementally and equals one rebuilt from scratch
// from the same items. Sums rather than XOR because XOR cancels an item
// added twice, which would hide a bookkeeping bug as apparent agreement;
// with sums it shows up as a difference that anti-entropy repairs. Item
// hashes are 64-bit xxhash values, so two different item sets collide in a
// node with probability about 2^-64.
//
// Hashes must agree across processes, so KeyHash and ItemHash use xxhash
// with no seed; their values are part of the wire protocol and never change.
//
// The diff protocol: the initiator builds a Differ over its own tree and
// repeatedly sends Next's Query to the peer, which answers from its tree
// with Tree.Answer; the initiator feeds the Answer to Receive. The first
// query asks for the root; each later one asks only for the descendants,
// stride levels down, of the nodes that differed in the previous round, so
// bandwidth follows the size of the disagreement, not of the tree. When the
// leaves are reached, Leaves and Ranges name the key-hash ranges to
// exchange. Two identical trees finish after one round.
//
// A Tree is not safe for concurrent use; the shard's owner goroutine
// applies writes and runs Differs. Writes landing while a diff is under way
// may make that diff report a range that has since converged or miss one
// that has just diverged; the next anti-entropy round settles it.
//
// The package is pure: no I/O, clock or goroutines.
package merkle
