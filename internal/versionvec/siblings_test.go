package versionvec

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
)

func ts(wall int64) hlc.Timestamp { return hlc.Timestamp{WallNanos: wall} }

func dots(s Siblings) []Dot {
	var ds []Dot
	for _, x := range s.Values() {
		ds = append(ds, x.Dot)
	}
	return ds
}

// The walk-through of the DVV paper: two clients write to the same key
// through one coordinator, each passing back the context of its last
// reply. Writes that saw each other replace; writes that raced are kept.
func TestUpdateKeepsConcurrentReplacesSeen(t *testing.T) {
	const a = 1
	var s Siblings
	s, d1 := s.Update(nil, a, []byte("v1"), ts(1)) // client X, blind
	if d1 != (Dot{a, 1}) {
		t.Fatalf("first dot got %v, want 1:1", d1)
	}
	ctxX := s.Context()
	s, d2 := s.Update(nil, a, []byte("v2"), ts(2)) // client Y, blind: concurrent with v1
	if got, want := dots(s), []Dot{d1, d2}; !slices.Equal(got, want) {
		t.Fatalf("after concurrent blind write got %v, want %v", got, want)
	}
	s, d3 := s.Update(ctxX, a, []byte("v3"), ts(3)) // X saw only v1
	if got, want := dots(s), []Dot{d2, d3}; !slices.Equal(got, want) {
		t.Fatalf("after X's write got %v, want %v (v1 replaced, v2 kept)", got, want)
	}
	s, d4 := s.Update(s.Context(), a, []byte("v4"), ts(4)) // a client that read both
	if got, want := dots(s), []Dot{d4}; !slices.Equal(got, want) {
		t.Fatalf("after a write that saw everything got %v, want %v", got, want)
	}
	if got, want := s.Context(), (Vector{a: 4}); Compare(got, want) != Equal {
		t.Fatalf("context got %v, want %v", got, want)
	}
}

// Two clients that each pass back the context of their own last reply,
// interleaved, never make more than two siblings: each write replaces the
// writer's own previous one. Per-key vectors with client ids would grow a
// sibling per write here; with server ids they would drop writes.
func TestNoSiblingExplosion(t *testing.T) {
	var s Siblings
	ctx := map[string]Vector{}
	for i := range 50 {
		for _, c := range []string{"x", "y"} {
			s, _ = s.Update(ctx[c], 9, []byte(c), ts(int64(i)))
			ctx[c] = s.Context()
			if s.Len() > 2 {
				t.Fatalf("round %d: got %d siblings %v, want at most 2", i, s.Len(), s)
			}
		}
	}
	if got := len(s.Live()); got != 2 {
		t.Fatalf("got %d live siblings, want 2 (one per client)", got)
	}
}

func TestUpdateDoesNotModifyInputs(t *testing.T) {
	s, _ := Siblings{}.Update(nil, 1, []byte("a"), ts(1))
	s, _ = s.Update(nil, 2, []byte("b"), ts(2))
	before := s.Encode()
	ctx := Vector{1: 1}
	val := []byte("c")
	next, _ := s.Update(ctx, 2, val, ts(3))
	val[0] = 'z'
	if !bytes.Equal(s.Encode(), before) {
		t.Fatalf("Update modified its receiver: got %v", s)
	}
	if Compare(ctx, Vector{1: 1}) != Equal {
		t.Fatalf("Update modified the context: got %v, want {1:1}", ctx)
	}
	if got := next.Values()[1].Value; string(got) != "c" {
		t.Fatalf("stored value got %q, want %q (Update must copy)", got, "c")
	}
	_ = Sync(s, next)
	if !bytes.Equal(s.Encode(), before) {
		t.Fatalf("Sync modified an input: got %v", s)
	}
}

func TestDeleteAndAbsent(t *testing.T) {
	var s Siblings
	if !s.Absent() {
		t.Fatalf("zero state: Absent got false, want true")
	}
	s, _ = s.Update(nil, 1, []byte("a"), ts(1))
	if s.Absent() {
		t.Fatalf("after write: Absent got true, want false")
	}
	del, _ := s.Delete(s.Context(), 1, ts(2))
	if !del.Absent() || del.Len() != 1 || len(del.Live()) != 0 {
		t.Fatalf("after delete got %v, want one tombstone", del)
	}
	// A write concurrent with the delete keeps the key present.
	conc, _ := s.Update(nil, 2, []byte("b"), ts(3))
	m := Sync(del, conc)
	if m.Absent() || len(m.Live()) != 2-1 || m.Len() != 2 {
		t.Fatalf("delete racing a write got %v, want one tombstone and one live sibling", m)
	}
}

func TestWinner(t *testing.T) {
	sib := func(node, ctr uint64, wall int64, logical uint32) Sibling {
		return Sibling{Dot: Dot{node, ctr}, Timestamp: hlc.Timestamp{WallNanos: wall, Logical: logical}}
	}
	for _, c := range []struct {
		name string
		sibs []Sibling
		want Dot
	}{
		{"one", []Sibling{sib(1, 1, 5, 0)}, Dot{1, 1}},
		{"later wall", []Sibling{sib(1, 1, 5, 9), sib(2, 1, 6, 0)}, Dot{2, 1}},
		{"later logical", []Sibling{sib(1, 1, 5, 2), sib(2, 1, 5, 1)}, Dot{1, 1}},
		{"tie: higher node", []Sibling{sib(3, 1, 5, 0), sib(2, 7, 5, 0)}, Dot{3, 1}},
		{"tie: higher counter", []Sibling{sib(2, 1, 5, 0), sib(2, 2, 5, 0)}, Dot{2, 2}},
	} {
		ctx := Vector{}
		for _, x := range c.sibs {
			ctx[x.Dot.Node] = max(ctx[x.Dot.Node], x.Dot.Counter)
		}
		s := Siblings{ctx: ctx, sibs: c.sibs}
		slices.SortFunc(s.sibs, func(a, b Sibling) int { return a.Dot.compare(b.Dot) })
		got, ok := s.Winner()
		if !ok || got.Dot != c.want {
			t.Errorf("%s: Winner got %v, %v; want %v", c.name, got.Dot, ok, c.want)
		}
		if col := s.Collapse(); col.Len() != 1 || col.Values()[0].Dot != c.want || Compare(col.Context(), ctx) != Equal {
			t.Errorf("%s: Collapse got %v, want only %v under context %v", c.name, col, c.want, ctx)
		}
	}
	if _, ok := (Siblings{}).Winner(); ok {
		t.Errorf("Winner of the zero state got ok, want false")
	}
}

// Replicas that collapse to their winners independently still converge on
// one value: the contexts make Sync drop the losers everywhere.
func TestCollapseConverges(t *testing.T) {
	var base Siblings
	a, _ := base.Update(nil, 1, []byte("a"), ts(10))
	b, _ := base.Update(nil, 2, []byte("b"), ts(20))
	c, _ := base.Update(nil, 3, []byte("c"), ts(15))
	ab := Sync(a, b).Collapse()
	bc := Sync(b, c).Collapse()
	ca := Sync(c, a).Collapse()
	m := Sync(ab, bc, ca).Collapse()
	for _, other := range []Siblings{Sync(ca, ab).Collapse(), Sync(bc, ca, ab).Collapse()} {
		if !m.Equal(other) {
			t.Fatalf("got %v and %v, want equal", m, other)
		}
	}
	if w, _ := m.Winner(); string(w.Value) != "b" || m.Len() != 1 {
		t.Fatalf("got %v, want only b", m)
	}
}

func TestSiblingsEncoding(t *testing.T) {
	s, _ := Siblings{}.Update(nil, 1, []byte("hi"), hlc.Timestamp{WallNanos: -1, Logical: 2})
	s, _ = s.Delete(nil, 2, ts(3))
	want := []byte{
		1,             // format
		2, 1, 1, 2, 1, // context {1:1 2:1}
		2,                          // two siblings
		1, 1, 1, 2, 0, 2, 'h', 'i', // 1:1 wall -1 logical 2, value "hi"
		2, 1, 6, 0, 1, 0, // 2:1 wall 3, tombstone
	}
	got := s.Encode()
	if !bytes.Equal(got, want) {
		t.Fatalf("Encode got %x, want %x", got, want)
	}
	back, err := DecodeSiblings(got)
	if err != nil || !back.Equal(s) {
		t.Fatalf("DecodeSiblings got %v, %v; want %v", back, err, s)
	}
	if z, err := DecodeSiblings((Siblings{}).Encode()); err != nil || !z.Equal(Siblings{}) || !z.Absent() {
		t.Fatalf("zero state round trip got %v, %v; want the zero state", z, err)
	}
}

func TestDecodeSiblingsRejects(t *testing.T) {
	good := []byte{1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 'x'}
	if _, err := DecodeSiblings(good); err != nil {
		t.Fatalf("valid input rejected: %v", err)
	}
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"unknown format", []byte{2, 0, 0}},
		{"bad context", []byte{1, 1, 1, 0, 0}},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(slices.Clone(good), 0)},
		{"count beyond input", []byte{1, 0, 9}},
		{"dot not covered", []byte{1, 1, 1, 1, 1, 1, 2, 0, 0, 0, 0}},
		{"zero counter", []byte{1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0}},
		{"unknown flag", []byte{1, 1, 1, 1, 1, 1, 1, 0, 0, 2, 0}},
		{"tombstone with value", []byte{1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 'x'}},
		{"logical overflow", []byte{1, 1, 1, 1, 1, 1, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0}},
		{"value length beyond input", []byte{1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10}},
		{"duplicate dot", []byte{1, 1, 1, 1, 2, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0}},
		{"overlong wall", []byte{1, 1, 1, 1, 1, 1, 1, 0x80, 0, 0, 0, 0}},
	} {
		s, err := DecodeSiblings(c.in)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: DecodeSiblings(%x) = %v, %v; want ErrMalformed", c.name, c.in, s, err)
		}
	}
}
