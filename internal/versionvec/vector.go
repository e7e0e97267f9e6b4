package versionvec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Vector is a version vector: for each node id, the number of events from
// that node it covers. A missing entry and a zero counter mean the same
// thing; the package never produces zero entries.
type Vector map[uint64]uint64

// Ordering is the causal relation between two vectors.
type Ordering int

// The four possible outcomes of Compare.
const (
	// Equal: both vectors cover the same events.
	Equal Ordering = iota
	// Before: the first vector's events are a strict subset of the second's.
	Before
	// After: the first vector's events are a strict superset of the second's.
	After
	// Concurrent: each covers an event the other does not.
	Concurrent
)

// String names the ordering.
func (o Ordering) String() string {
	switch o {
	case Equal:
		return "equal"
	case Before:
		return "before"
	case After:
		return "after"
	case Concurrent:
		return "concurrent"
	}
	return "Ordering(" + strconv.Itoa(int(o)) + ")"
}

// Dot names one write: the node that coordinated it and that node's counter
// for it. Counters start at 1, so the zero Dot names no write.
type Dot struct {
	Node    uint64
	Counter uint64
}

// String renders d as "node:counter".
func (d Dot) String() string {
	return strconv.FormatUint(d.Node, 10) + ":" + strconv.FormatUint(d.Counter, 10)
}

// compare orders dots by node, then counter: the order siblings are kept in.
func (d Dot) compare(e Dot) int {
	switch {
	case d.Node < e.Node:
		return -1
	case d.Node > e.Node:
		return 1
	case d.Counter < e.Counter:
		return -1
	case d.Counter > e.Counter:
		return 1
	}
	return 0
}

// Covers reports whether v includes the write named by d.
func (v Vector) Covers(d Dot) bool { return v[d.Node] >= d.Counter }

// Clone returns a copy of v without zero entries; it never returns nil, so
// the copy can be written to.
func (v Vector) Clone() Vector {
	c := make(Vector, len(v))
	for n, k := range v {
		if k != 0 {
			c[n] = k
		}
	}
	return c
}

// nodes returns v's node ids with non-zero counters, ascending.
func (v Vector) nodes() []uint64 {
	ns := make([]uint64, 0, len(v))
	for n, k := range v {
		if k != 0 {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	return ns
}

// String renders v deterministically as "{node:counter ...}" by node id.
func (v Vector) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range v.nodes() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(Dot{n, v[n]}.String())
	}
	b.WriteByte('}')
	return b.String()
}

// Descends reports whether a covers every event b covers (a ≥ b pointwise):
// a write made with context a may supersede everything b names.
func Descends(a, b Vector) bool {
	for n, k := range b {
		if a[n] < k {
			return false
		}
	}
	return true
}

// Compare returns the causal relation of a to b.
func Compare(a, b Vector) Ordering {
	ab, ba := Descends(a, b), Descends(b, a)
	switch {
	case ab && ba:
		return Equal
	case ab:
		return After
	case ba:
		return Before
	}
	return Concurrent
}

// Merge returns the pointwise maximum of a and b (the events either covers)
// as a new vector; a and b are not modified.
func Merge(a, b Vector) Vector {
	m := a.Clone()
	for n, k := range b {
		if k > m[n] {
			m[n] = k
		}
	}
	return m
}

// ErrMalformed is returned (wrapped, with the reason) by Decode and
// DecodeSiblings for input that is not a canonical encoding: truncated,
// overlong, out of order, or with trailing bytes.
var ErrMalformed = errors.New("versionvec: malformed encoding")

// Encode returns v's canonical encoding.
func (v Vector) Encode() []byte { return v.AppendEncode(nil) }

// AppendEncode appends v's canonical encoding to b and returns the result:
// uvarint count, then uvarint node id and uvarint counter per entry, by
// ascending node id, zero entries left out.
func (v Vector) AppendEncode(b []byte) []byte {
	ns := v.nodes()
	b = binary.AppendUvarint(b, uint64(len(ns)))
	for _, n := range ns {
		b = binary.AppendUvarint(b, n)
		b = binary.AppendUvarint(b, v[n])
	}
	return b
}

// Decode parses a canonical Vector encoding that fills all of b. It never
// panics; any other input yields an error wrapping ErrMalformed.
func Decode(b []byte) (Vector, error) {
	r := reader{b: b}
	v := r.vector()
	if r.err == nil && r.off != len(b) {
		r.fail("%d trailing bytes", len(b)-r.off)
	}
	if r.err != nil {
		return nil, fmt.Errorf("decode vector: %w", r.err)
	}
	return v, nil
}

// reader decodes canonical encodings, remembering the first error so that
// callers can read a whole record and check once.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: at byte %d: %s", ErrMalformed, r.off, fmt.Sprintf(format, args...))
	}
}

func (r *reader) remaining() int { return len(r.b) - r.off }

// uvarint reads a minimally encoded uvarint; an overlong form (a final zero
// byte) is refused so that every value has exactly one encoding.
func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Uvarint(r.b[r.off:])
	switch {
	case n == 0:
		r.fail("truncated %s", what)
		return 0
	case n < 0:
		r.fail("%s overflows 64 bits", what)
		return 0
	case n > 1 && r.b[r.off+n-1] == 0:
		r.fail("overlong %s", what)
		return 0
	}
	r.off += n
	return x
}

func (r *reader) byte(what string) byte {
	if r.err != nil {
		return 0
	}
	if r.remaining() < 1 {
		r.fail("truncated %s", what)
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

// bytes reads n bytes into a fresh slice, so a decoded state never aliases
// a buffer the caller may reuse (storage iterators do).
func (r *reader) bytes(n uint64, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(r.remaining()) {
		r.fail("%s of %d bytes, only %d left", what, n, r.remaining())
		return nil
	}
	out := make([]byte, n)
	copy(out, r.b[r.off:])
	r.off += int(n)
	return out
}

// count reads an element count and bounds it by the bytes left (each
// element takes at least minSize), so a corrupt count cannot make the
// decoder allocate more than the input justifies.
func (r *reader) count(minSize int, what string) int {
	c := r.uvarint(what)
	if r.err != nil {
		return 0
	}
	if c > uint64(r.remaining()/minSize) {
		r.fail("%s %d exceeds the %d bytes left", what, c, r.remaining())
		return 0
	}
	return int(c)
}

func (r *reader) vector() Vector {
	c := r.count(2, "vector length")
	v := make(Vector, c)
	var prev uint64
	for i := range c {
		n := r.uvarint("node id")
		k := r.uvarint("counter")
		if r.err != nil {
			return nil
		}
		if i > 0 && n <= prev {
			r.fail("node %d after node %d: entries must ascend", n, prev)
			return nil
		}
		if k == 0 {
			r.fail("zero counter for node %d", n)
			return nil
		}
		v[n], prev = k, n
	}
	if r.err != nil {
		return nil
	}
	return v
}
