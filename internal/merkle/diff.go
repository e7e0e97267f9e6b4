package merkle

import (
	"errors"
	"fmt"
	"slices"
)

// Errors of the diff protocol.
var (
	// ErrDepthMismatch: the peers' trees have different depths, so their
	// nodes cover different ranges and cannot be compared.
	ErrDepthMismatch = errors.New("merkle: trees of different depths")
	// ErrBadQuery: a Query names a level or node outside the tree.
	ErrBadQuery = errors.New("merkle: malformed query")
	// ErrBadAnswer: an Answer does not match the outstanding Query.
	ErrBadAnswer = errors.New("merkle: answer does not match query")
)

// Query asks a peer for the hashes of some nodes of one level of its tree.
type Query struct {
	// Depth is the asking tree's depth; the peer refuses a mismatch.
	Depth int
	// Level is the level the nodes are on.
	Level int
	// Nodes are indices within Level, ascending.
	Nodes []int
}

// Answer carries a peer's hashes for a Query.
type Answer struct {
	// Level echoes the Query's level.
	Level int
	// Hashes holds one hash per queried node, in the Query's order.
	Hashes []uint64
}

// Answer returns t's hashes for q: the peer's half of the diff protocol.
func (t *Tree) Answer(q Query) (Answer, error) {
	switch {
	case q.Depth != t.depth:
		return Answer{}, fmt.Errorf("answer query of depth %d with depth %d: %w", q.Depth, t.depth, ErrDepthMismatch)
	case q.Level < 0 || q.Level > t.depth:
		return Answer{}, fmt.Errorf("answer query for level %d of a depth-%d tree: %w", q.Level, t.depth, ErrBadQuery)
	case len(q.Nodes) > 1<<q.Level:
		return Answer{}, fmt.Errorf("answer query for %d nodes of level %d: %w", len(q.Nodes), q.Level, ErrBadQuery)
	}
	a := Answer{Level: q.Level, Hashes: make([]uint64, len(q.Nodes))}
	for k, i := range q.Nodes {
		if i < 0 || i >= 1<<q.Level {
			return Answer{}, fmt.Errorf("answer query for node %d of level %d: %w", i, q.Level, ErrBadQuery)
		}
		a.Hashes[k] = t.nodes[index(q.Level, i)]
	}
	return a, nil
}

// Range is an inclusive range of key hashes, [First, Last].
type Range struct {
	First, Last uint64
}

// Contains reports whether keyHash lies in r.
func (r Range) Contains(keyHash uint64) bool { return r.First <= keyHash && keyHash <= r.Last }

// Differ is the initiator's half of the diff protocol: a state machine that
// compares a local tree with a peer's one round at a time.
type Differ struct {
	local  *Tree
	stride int
	level  int   // level of the outstanding query
	nodes  []int // nodes of the outstanding query
	done   bool
	leaves []int
	rounds int
	hashes int
}

// NewDiffer starts a diff of local against a peer's tree of the same depth.
// Each round descends stride levels (clamped to [1, depth]): a larger
// stride takes fewer round trips but asks for 2^stride hashes per
// differing node instead of 2.
func NewDiffer(local *Tree, stride int) *Differ {
	return &Differ{local: local, stride: min(max(stride, 1), max(local.depth, 1)), nodes: []int{0}}
}

// Next returns the query to send, or false once the diff is done. Until
// the matching Receive it returns the same query, so it can be resent.
func (d *Differ) Next() (Query, bool) {
	if d.done {
		return Query{}, false
	}
	return Query{Depth: d.local.depth, Level: d.level, Nodes: slices.Clone(d.nodes)}, true
}

// Receive takes the peer's answer to the outstanding query and prepares the
// next round. An answer for another level or of the wrong length is refused
// with ErrBadAnswer and changes nothing.
func (d *Differ) Receive(a Answer) error {
	switch {
	case d.done:
		return fmt.Errorf("receive answer for level %d after the diff ended: %w", a.Level, ErrBadAnswer)
	case a.Level != d.level || len(a.Hashes) != len(d.nodes):
		return fmt.Errorf("receive %d hashes of level %d for a query of %d nodes of level %d: %w",
			len(a.Hashes), a.Level, len(d.nodes), d.level, ErrBadAnswer)
	}
	d.rounds++
	d.hashes += len(a.Hashes)
	var differ []int
	for k, i := range d.nodes {
		if d.local.nodes[index(d.level, i)] != a.Hashes[k] {
			differ = append(differ, i)
		}
	}
	if d.level == d.local.depth || len(differ) == 0 {
		// Either the leaves are reached, or nothing below differs.
		d.done, d.leaves, d.nodes = true, differ, nil
		return nil
	}
	next := min(d.level+d.stride, d.local.depth)
	fan := next - d.level
	d.nodes = make([]int, 0, len(differ)<<fan)
	for _, i := range differ {
		for c := i << fan; c < (i+1)<<fan; c++ {
			d.nodes = append(d.nodes, c)
		}
	}
	d.level = next
	return nil
}

// Done reports whether the diff has ended.
func (d *Differ) Done() bool { return d.done }

// Leaves returns the leaves whose hashes differ, ascending; empty if the
// trees agree. Meaningful once Done.
func (d *Differ) Leaves() []int { return slices.Clone(d.leaves) }

// Ranges returns the key-hash ranges of the differing leaves, adjacent
// leaves joined, ascending: the ranges the engine must exchange keys for.
// Meaningful once Done.
func (d *Differ) Ranges() []Range {
	var rs []Range
	for _, leaf := range d.leaves {
		first, last := d.local.RangeOf(leaf)
		if n := len(rs); n > 0 && rs[n-1].Last+1 == first {
			rs[n-1].Last = last
			continue
		}
		rs = append(rs, Range{first, last})
	}
	return rs
}

// Rounds returns the number of answers received so far.
func (d *Differ) Rounds() int { return d.rounds }

// HashesReceived returns the number of hashes received so far, a measure
// of the diff's bandwidth.
func (d *Differ) HashesReceived() int { return d.hashes }
