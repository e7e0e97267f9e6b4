package merkle

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// DefaultDepth gives 1024 leaves: 16 KiB of hashes per tree, and about one
// leaf per thousand keys for a shard of a million keys.
const DefaultDepth = 10

// MaxDepth bounds a tree to 2^20 leaves (32 MiB of hashes).
const MaxDepth = 20

// ErrDepth is returned by New for a depth outside [0, MaxDepth].
var ErrDepth = errors.New("merkle: depth out of range")

// KeyHash returns the 64-bit hash that places key in the tree. It is the
// same in every process and release.
func KeyHash(key []byte) uint64 { return xxhash.Sum64(key) }

// ItemHash returns the hash of one key at one version (for example the
// canonical encoding of its stored state), never 0, so 0 can stand for "no
// item" in Update. Replicas holding equal versions must pass equal bytes.
func ItemHash(key, version []byte) uint64 {
	var d xxhash.Digest
	d.Reset()
	var n [binary.MaxVarintLen64]byte
	// The key's length first, so that (key, version) pairs that concatenate
	// to the same bytes still hash apart.
	_, _ = d.Write(n[:binary.PutUvarint(n[:], uint64(len(key)))])
	_, _ = d.Write(key)
	_, _ = d.Write(version)
	if h := d.Sum64(); h != 0 {
		return h
	}
	return 1
}

// Tree is a fixed-depth Merkle tree of item-hash sums over the key-hash
// space. Level 0 is the root; level Depth holds the leaves.
type Tree struct {
	depth int
	// nodes holds level l, node i at index 2^l - 1 + i (a heap layout).
	nodes []uint64
}

// New returns an empty tree with 2^depth leaves.
func New(depth int) (*Tree, error) {
	if depth < 0 || depth > MaxDepth {
		return nil, fmt.Errorf("new tree of depth %d: %w (want 0..%d)", depth, ErrDepth, MaxDepth)
	}
	return &Tree{depth: depth, nodes: make([]uint64, 1<<(depth+1)-1)}, nil
}

// Depth returns the tree's depth.
func (t *Tree) Depth() int { return t.depth }

// Leaves returns the number of leaves, 2^Depth.
func (t *Tree) Leaves() int { return 1 << t.depth }

// LeafOf returns the leaf whose range holds keyHash: its top Depth bits.
func (t *Tree) LeafOf(keyHash uint64) int {
	if t.depth == 0 {
		return 0
	}
	return int(keyHash >> (64 - t.depth))
}

// RangeOf returns the key hashes of leaf as an inclusive range [first,
// last]; inclusive because the last leaf ends at 2^64 - 1 and its
// exclusive end would not fit in a uint64. It panics if leaf is out of
// range.
func (t *Tree) RangeOf(leaf int) (first, last uint64) {
	t.checkNode(t.depth, leaf)
	if t.depth == 0 {
		return 0, ^uint64(0)
	}
	shift := 64 - t.depth
	first = uint64(leaf) << shift
	return first, first | (1<<shift - 1)
}

// Add records an item (a key at a version) whose key hashes to keyHash.
func (t *Tree) Add(keyHash, itemHash uint64) { t.addToLeaf(t.LeafOf(keyHash), itemHash) }

// Remove forgets an item previously added with the same hashes.
func (t *Tree) Remove(keyHash, itemHash uint64) { t.addToLeaf(t.LeafOf(keyHash), -itemHash) }

// Update replaces the item oldItem of a key with newItem; 0 for oldItem
// means the key was absent, 0 for newItem that it is gone.
func (t *Tree) Update(keyHash, oldItem, newItem uint64) {
	t.addToLeaf(t.LeafOf(keyHash), newItem-oldItem)
}

// SetLeaf overwrites a leaf's hash (for example after rescanning its range
// from storage) and fixes its ancestors. It panics if leaf is out of range.
func (t *Tree) SetLeaf(leaf int, hash uint64) {
	t.checkNode(t.depth, leaf)
	t.addToLeaf(leaf, hash-t.nodes[index(t.depth, leaf)])
}

// addToLeaf adds delta (mod 2^64) to a leaf and every ancestor.
func (t *Tree) addToLeaf(leaf int, delta uint64) {
	for l := t.depth; l >= 0; l-- {
		t.nodes[index(l, leaf>>(t.depth-l))] += delta
	}
}

func index(level, i int) int { return 1<<level - 1 + i }

func (t *Tree) checkNode(level, i int) {
	if level < 0 || level > t.depth || i < 0 || i >= 1<<level {
		panic(fmt.Sprintf("merkle: node (%d, %d) outside a tree of depth %d", level, i, t.depth))
	}
}

// Root returns the root hash: the sum of all item hashes.
func (t *Tree) Root() uint64 { return t.nodes[0] }

// Node returns the hash of node i of level. It panics if the node is
// outside the tree.
func (t *Tree) Node(level, i int) uint64 {
	t.checkNode(level, i)
	return t.nodes[index(level, i)]
}

// Level returns a copy of the 2^level hashes of level. It panics if level
// is outside [0, Depth].
func (t *Tree) Level(level int) []uint64 {
	t.checkNode(level, 0)
	return slices.Clone(t.nodes[index(level, 0):index(level+1, 0)])
}

// Clone returns an independent copy of t.
func (t *Tree) Clone() *Tree { return &Tree{depth: t.depth, nodes: slices.Clone(t.nodes)} }

// Equal reports whether t and u have the same depth and hashes.
func (t *Tree) Equal(u *Tree) bool { return t.depth == u.depth && slices.Equal(t.nodes, u.nodes) }
