package versionvec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
)

// Sibling is one write of a key that no known write has superseded.
type Sibling struct {
	// Dot names the write.
	Dot Dot
	// Value is the written value; nil for a tombstone. Shared, never modified.
	Value []byte
	// Timestamp is the coordinator's hlc reading for the write; it decides
	// last-writer-wins, never causality.
	Timestamp hlc.Timestamp
	// Tombstone marks a delete.
	Tombstone bool
}

// Newer reports whether s beats o under last-writer-wins: the later hlc
// timestamp, then the higher node id, then the higher counter. Distinct
// writes are never tied, so every replica picks the same winner.
func (s Sibling) Newer(o Sibling) bool {
	if c := s.Timestamp.Compare(o.Timestamp); c != 0 {
		return c > 0
	}
	return s.Dot.compare(o.Dot) > 0
}

// equal reports whether s and o are the same write with the same contents.
func (s Sibling) equal(o Sibling) bool {
	return s.Dot == o.Dot && s.Timestamp == o.Timestamp && s.Tombstone == o.Tombstone && bytes.Equal(s.Value, o.Value)
}

// pick chooses between two records of the same dot. They are equal unless a
// dot was issued twice (a coordinator that lost its state); the choice is
// then still a total order, so Sync stays commutative and associative.
func pick(a, b Sibling) Sibling {
	switch {
	case a.Newer(b):
		return a
	case b.Newer(a):
		return b
	case a.Tombstone != b.Tombstone:
		if a.Tombstone {
			return a
		}
		return b
	case bytes.Compare(a.Value, b.Value) >= 0:
		return a
	}
	return b
}

// String renders s as "node:counter@timestamp:value" for logs and tests.
func (s Sibling) String() string {
	if s.Tombstone {
		return fmt.Sprintf("%v@%v:tombstone", s.Dot, s.Timestamp)
	}
	return fmt.Sprintf("%v@%v:%q", s.Dot, s.Timestamp, s.Value)
}

// Siblings is one replica's state for one key (a DVV set): the causal
// context and the writes it has not seen superseded. The zero value is the
// state of a key never written. Every sibling's dot is covered by the
// context, and siblings are kept sorted by dot, so equal states have equal
// encodings.
type Siblings struct {
	ctx  Vector
	sibs []Sibling
}

// Context returns the causal context to hand a reader (a copy): the join of
// every dot the state has seen. A write made with it supersedes every
// sibling returned by the same read.
func (s Siblings) Context() Vector { return s.ctx.Clone() }

// Values returns the siblings ordered by dot, tombstones included. The
// slice is a copy; the values in it must not be modified.
func (s Siblings) Values() []Sibling { return slices.Clone(s.sibs) }

// Len returns the number of siblings, tombstones included.
func (s Siblings) Len() int { return len(s.sibs) }

// Live returns the siblings that are not tombstones, ordered by dot.
func (s Siblings) Live() []Sibling {
	var live []Sibling
	for _, x := range s.sibs {
		if !x.Tombstone {
			live = append(live, x)
		}
	}
	return live
}

// Absent reports whether a read should treat the key as missing: no
// siblings, or only tombstones.
func (s Siblings) Absent() bool {
	for _, x := range s.sibs {
		if !x.Tombstone {
			return false
		}
	}
	return true
}

// Winner returns the sibling last-writer-wins keeps (see Sibling.Newer),
// and false if there are none. The winner may be a tombstone: the key then
// reads as absent.
func (s Siblings) Winner() (Sibling, bool) {
	if len(s.sibs) == 0 {
		return Sibling{}, false
	}
	w := s.sibs[0]
	for _, x := range s.sibs[1:] {
		if x.Newer(w) {
			w = x
		}
	}
	return w, true
}

// Collapse returns s reduced to its Winner, context unchanged, for
// namespaces in last-writer-wins mode. Because the context still covers the
// dropped siblings, Sync with a replica that holds them drops them there
// too, and every replica collapses to the same winner.
func (s Siblings) Collapse() Siblings {
	if len(s.sibs) <= 1 {
		return s
	}
	w, _ := s.Winner()
	return Siblings{ctx: s.ctx, sibs: []Sibling{w}}
}

// Equal reports whether s and o are the same state.
func (s Siblings) Equal(o Siblings) bool {
	return Compare(s.ctx, o.ctx) == Equal && slices.EqualFunc(s.sibs, o.sibs, Sibling.equal)
}

// String renders the state for logs and test failures.
func (s Siblings) String() string {
	parts := make([]string, len(s.sibs))
	for i, x := range s.sibs {
		parts[i] = x.String()
	}
	return s.ctx.String() + "[" + strings.Join(parts, " ") + "]"
}

// Update records a write of value coordinated by node, whose client read
// context ctx (nil for a blind write), and returns the new state and the
// write's dot. Siblings ctx covers were seen by the client and are
// replaced; the others are concurrent with the write and stay. s must be
// node's own state for the key (see the package comment), and ts node's
// hlc reading for the write: the dot's counter is one past node's counter
// in s and ctx, and at least CounterFloor(ts). value is copied.
func (s Siblings) Update(ctx Vector, node uint64, value []byte, ts hlc.Timestamp) (Siblings, Dot) {
	v := []byte{}
	if value != nil {
		v = bytes.Clone(value)
	}
	return s.add(ctx, Sibling{Dot: Dot{Node: node}, Value: v, Timestamp: ts})
}

// Delete records a delete (a tombstone sibling) coordinated by node with
// the client's context ctx, like Update.
func (s Siblings) Delete(ctx Vector, node uint64, ts hlc.Timestamp) (Siblings, Dot) {
	return s.add(ctx, Sibling{Dot: Dot{Node: node}, Timestamp: ts, Tombstone: true})
}

func (s Siblings) add(ctx Vector, w Sibling) (Siblings, Dot) {
	node := w.Dot.Node
	// One past anything node has issued for this key that it still knows
	// of (ctx can only be ahead of node's own state if that state was
	// lost; taking the maximum keeps the new dot fresh for every context
	// seen so far), and no lower than the write's time, which covers what
	// node has forgotten (see Forgettable).
	last := max(s.ctx[node], ctx[node])
	if last == math.MaxUint64 {
		panic("versionvec: dot counter overflow")
	}
	w.Dot.Counter = max(last+1, CounterFloor(w.Timestamp))
	out := Siblings{ctx: Merge(s.ctx, ctx), sibs: make([]Sibling, 0, len(s.sibs)+1)}
	out.ctx[node] = w.Dot.Counter
	for _, x := range s.sibs {
		if !ctx.Covers(x.Dot) {
			out.sibs = append(out.sibs, x)
		}
	}
	i, _ := slices.BinarySearchFunc(out.sibs, w.Dot, func(x Sibling, d Dot) int { return x.Dot.compare(d) })
	out.sibs = slices.Insert(out.sibs, i, w)
	return out, w.Dot
}

// CounterUnit is the span of wall time one dot counter step stands for:
// a write stamped ts gets a counter of at least CounterFloor(ts), its wall
// time in microseconds. Microseconds keep the steady state exact (a node
// would have to mint more than a million writes of one key per second for
// the counters to run ahead of the clock) while a counter still fits an
// 8-byte uvarint until the year 4000; nanoseconds would need 9 bytes.
const CounterUnit = 1000 // nanoseconds

// CounterFloor returns the lowest counter Update and Delete give a write
// stamped ts: its wall time in whole CounterUnits since the Unix epoch (0
// for times before it). It does not decrease as ts grows, and a node's
// hlc readings only grow, so a node's dots for a key keep growing across
// a state it forgot.
func CounterFloor(ts hlc.Timestamp) uint64 {
	if ts.WallNanos <= 0 {
		return 0
	}
	return uint64(ts.WallNanos / CounterUnit)
}

// Forgettable reports whether node may delete its own state s of a key
// and start again from the zero state (tombstone collection): every
// sibling is a tombstone, so the key reads as absent either way, and
// node's counter in s, the highest it has issued for the key, is below
// CounterFloor(now), so every dot node mints at an hlc reading of now or
// later is above every dot of node's that a replica, a hint or a client
// context may still hold. Were it not, a new write
// could repeat an old dot and be taken for one already seen and
// superseded there: dropped. How long to keep a tombstone before
// forgetting it, so that every replica has it (the resurrection problem),
// is the engine's decision; Forgettable only guards the dots.
func (s Siblings) Forgettable(node uint64, now hlc.Timestamp) bool {
	return s.Absent() && s.ctx[node] < CounterFloor(now)
}

// Sync merges replica states (read repair, anti-entropy, a coordinator's
// state arriving at a replica). A sibling survives unless some state has
// seen it (its context covers the dot) and no longer holds it, that is, a
// write that saw it is known. Sync is commutative, associative and
// idempotent; the inputs are not modified.
func Sync(states ...Siblings) Siblings {
	var out Siblings
	for i, s := range states {
		if i == 0 {
			out = s
			continue
		}
		out = sync2(out, s)
	}
	return out
}

func sync2(a, b Siblings) Siblings {
	out := Siblings{ctx: Merge(a.ctx, b.ctx), sibs: make([]Sibling, 0, max(len(a.sibs), len(b.sibs)))}
	i, j := 0, 0
	for i < len(a.sibs) || j < len(b.sibs) {
		var c int
		switch {
		case i == len(a.sibs):
			c = 1
		case j == len(b.sibs):
			c = -1
		default:
			c = a.sibs[i].Dot.compare(b.sibs[j].Dot)
		}
		switch {
		case c == 0:
			out.sibs = append(out.sibs, pick(a.sibs[i], b.sibs[j]))
			i++
			j++
		case c < 0:
			if x := a.sibs[i]; !b.ctx.Covers(x.Dot) {
				out.sibs = append(out.sibs, x)
			}
			i++
		default:
			if y := b.sibs[j]; !a.ctx.Covers(y.Dot) {
				out.sibs = append(out.sibs, y)
			}
			j++
		}
	}
	return out
}

// siblingsFormat is the first byte of an encoded Siblings, so a stored
// state written by a later format is refused rather than misread.
const siblingsFormat = 1

const flagTombstone = 1

// Encode returns the canonical encoding of s, for storage and for shipping
// states between replicas. Equal states encode to equal bytes.
func (s Siblings) Encode() []byte { return s.AppendEncode(nil) }

// AppendEncode appends the canonical encoding of s to b: a format byte,
// the context (as Vector.AppendEncode), uvarint sibling count, then per
// sibling in dot order: uvarint node, uvarint counter, varint wall nanos,
// uvarint logical, a flags byte (1 = tombstone), uvarint length and value.
func (s Siblings) AppendEncode(b []byte) []byte {
	b = append(b, siblingsFormat)
	b = s.ctx.AppendEncode(b)
	b = binary.AppendUvarint(b, uint64(len(s.sibs)))
	for _, x := range s.sibs {
		b = binary.AppendUvarint(b, x.Dot.Node)
		b = binary.AppendUvarint(b, x.Dot.Counter)
		b = binary.AppendVarint(b, x.Timestamp.WallNanos)
		b = binary.AppendUvarint(b, uint64(x.Timestamp.Logical))
		var flags byte
		if x.Tombstone {
			flags |= flagTombstone
		}
		b = append(b, flags)
		b = binary.AppendUvarint(b, uint64(len(x.Value)))
		b = append(b, x.Value...)
	}
	return b
}

// DecodeSiblings parses a canonical Siblings encoding that fills all of b
// and checks the state's invariants (siblings ascending by dot, every dot
// covered by the context, tombstones without a value). It never panics;
// any other input yields an error wrapping ErrMalformed. Values are copied
// out of b.
func DecodeSiblings(b []byte) (Siblings, error) {
	s, err := decodeSiblings(b)
	if err != nil {
		return Siblings{}, fmt.Errorf("decode siblings: %w", err)
	}
	return s, nil
}

func decodeSiblings(b []byte) (Siblings, error) {
	r := reader{b: b}
	if f := r.byte("format"); r.err == nil && f != siblingsFormat {
		r.fail("unknown format %d", f)
	}
	ctx := r.vector()
	n := r.count(6, "sibling count")
	if r.err != nil {
		return Siblings{}, r.err
	}
	s := Siblings{ctx: ctx, sibs: make([]Sibling, 0, n)}
	for i := range n {
		var x Sibling
		x.Dot.Node = r.uvarint("sibling node")
		x.Dot.Counter = r.uvarint("sibling counter")
		x.Timestamp.WallNanos = r.varint("wall nanos")
		logical := r.uvarint("logical")
		flags := r.byte("flags")
		size := r.uvarint("value length")
		x.Value = r.bytes(size, "value")
		if r.err != nil {
			return Siblings{}, r.err
		}
		switch {
		case logical > math.MaxUint32:
			r.fail("logical %d overflows 32 bits", logical)
		case flags&^flagTombstone != 0:
			r.fail("unknown flags %#x", flags)
		case x.Dot.Counter == 0:
			r.fail("zero counter in dot of sibling %d", i)
		case !ctx.Covers(x.Dot):
			r.fail("dot %v not covered by context %v", x.Dot, ctx)
		case i > 0 && s.sibs[i-1].Dot.compare(x.Dot) >= 0:
			r.fail("dot %v after %v: siblings must ascend", x.Dot, s.sibs[i-1].Dot)
		case flags&flagTombstone != 0 && size != 0:
			r.fail("tombstone %v with a %d-byte value", x.Dot, size)
		}
		if r.err != nil {
			return Siblings{}, r.err
		}
		x.Timestamp.Logical = uint32(logical)
		if x.Tombstone = flags&flagTombstone != 0; x.Tombstone {
			x.Value = nil
		}
		s.sibs = append(s.sibs, x)
	}
	if r.off != len(b) {
		r.fail("%d trailing bytes", len(b)-r.off)
		return Siblings{}, r.err
	}
	return s, nil
}

// varint reads a minimally encoded zigzag varint.
func (r *reader) varint(what string) int64 {
	u := r.uvarint(what)
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}
