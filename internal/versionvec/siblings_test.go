package versionvec

import (
	"bytes"
	"errors"
	"math"
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

func TestCounterFloor(t *testing.T) {
	for _, c := range []struct {
		ts   hlc.Timestamp
		want uint64
	}{
		{hlc.Timestamp{}, 0},
		{hlc.Timestamp{WallNanos: -5 * CounterUnit}, 0},
		{hlc.Timestamp{WallNanos: CounterUnit - 1, Logical: 7}, 0},
		{hlc.Timestamp{WallNanos: CounterUnit}, 1},
		{hlc.Timestamp{WallNanos: 1_780_000_000_123_456_789}, 1_780_000_000_123_456},
		{hlc.Timestamp{WallNanos: math.MaxInt64, Logical: math.MaxUint32}, math.MaxInt64 / CounterUnit},
	} {
		if got := CounterFloor(c.ts); got != c.want {
			t.Errorf("CounterFloor(%v) = %d, want %d", c.ts, got, c.want)
		}
	}
}

// A write's counter is the larger of one past the node's counter and the
// floor of its timestamp: with a clock behind the state (set back, or a
// state from a node whose clock ran ahead) it still grows by one.
func TestCounterFollowsClockAndState(t *testing.T) {
	const sec = int64(1e9)
	s, d1 := Siblings{}.Update(nil, 1, []byte("a"), ts(5*sec))
	if want := uint64(5 * sec / CounterUnit); d1.Counter != want {
		t.Fatalf("first dot got %v, want counter %d (the timestamp's)", d1, want)
	}
	s, d2 := s.Update(nil, 1, []byte("b"), ts(5*sec)) // same microsecond
	if d2.Counter != d1.Counter+1 {
		t.Fatalf("second dot in the same microsecond got %v, want %d", d2, d1.Counter+1)
	}
	_, d3 := s.Update(nil, 1, []byte("c"), ts(2*sec)) // clock behind
	if d3.Counter != d2.Counter+1 {
		t.Fatalf("dot with the clock behind got %v, want %d", d3, d2.Counter+1)
	}
	_, d4 := s.Update(Vector{1: 9 * uint64(sec)}, 1, []byte("d"), ts(6*sec)) // context ahead
	if d4.Counter != 9*uint64(sec)+1 {
		t.Fatalf("dot with a context ahead got %v, want %d", d4, 9*uint64(sec)+1)
	}
}

func TestForgettable(t *testing.T) {
	const sec = int64(1e9)
	put, _ := Siblings{}.Update(nil, 1, []byte("v"), ts(1*sec))
	del, _ := put.Delete(put.Context(), 1, ts(2*sec))
	remoteDel, _ := put.Delete(put.Context(), 2, ts(2*sec)) // node 2 deleted node 1's write
	racing, _ := Siblings{}.Update(nil, 3, []byte("w"), ts(2*sec))
	for _, c := range []struct {
		name string
		s    Siblings
		node uint64
		now  int64
		want bool
	}{
		{"zero state", Siblings{}, 1, CounterUnit, true},
		{"live value", put, 1, 9 * sec, false},
		{"tombstone, clock at its counter", del, 1, 2 * sec, false},
		{"tombstone, clock within the same microsecond", del, 1, 2*sec + CounterUnit - 1, false},
		{"tombstone, clock one microsecond past", del, 1, 2*sec + CounterUnit, true},
		{"another node's tombstone, own counter older", remoteDel, 1, 1*sec + CounterUnit, true},
		{"another node's tombstone, clock behind own counter", remoteDel, 1, sec, false},
		{"tombstone racing a live write", Sync(del, racing), 1, 9 * sec, false},
		{"a node with no dot in it", del, 7, CounterUnit, true},
	} {
		if got := c.s.Forgettable(c.node, ts(c.now)); got != c.want {
			t.Errorf("%s: %v.Forgettable(%d, %d) = %v, want %v", c.name, c.s, c.node, c.now, got, c.want)
		}
	}
}

// The case tombstone collection depends on: node 1 forgets its state of a
// deleted key while another replica, a hint and a client still hold older
// states of it. Its next write starts again from the zero state, yet its
// dot is above every dot of node 1's those hold, so none of them takes it
// for a write already seen and superseded: the value survives every merge.
// A counter restarted at 1, as one past a forgotten state would be, is
// covered by all of them.
func TestWriteAfterForgettingIsNotDominated(t *testing.T) {
	const sec = int64(1e9)
	put, _ := Siblings{}.Update(nil, 1, []byte("old"), ts(10*sec))
	clientCtx := put.Context()    // a client read before the delete
	hint := Sync(Siblings{}, put) // a fallback's copy for a replica that was away
	del, _ := put.Delete(clientCtx, 1, ts(11*sec))
	replica2 := Sync(Siblings{}, del) // has the tombstone, has not collected it yet

	now := ts(11*sec + 2*CounterUnit) // node 1's clock, when collection runs
	if !del.Forgettable(1, now) {
		t.Fatalf("%v not forgettable at %v", del, now)
	}
	restarted := Dot{Node: 1, Counter: 1}
	for name, ctx := range map[string]Vector{"replica 2": replica2.Context(), "hint": hint.Context(), "client": clientCtx} {
		if !ctx.Covers(restarted) {
			t.Fatalf("%s's context %v does not cover %v: the test does not show the problem", name, ctx, restarted)
		}
	}

	var forgotten Siblings // node 1 after collection
	for _, c := range []struct {
		name string
		ctx  Vector
	}{{"blind", nil}, {"with the pre-delete context", clientCtx}} {
		w, d := forgotten.Update(c.ctx, 1, []byte("new"), ts(12*sec))
		for name, st := range map[string]Siblings{"replica 2": replica2, "hint": hint, "node 1 before collection": del} {
			if st.Context().Covers(d) {
				t.Errorf("%s write: dot %v covered by %s's %v", c.name, d, name, st)
			}
			for _, m := range []Siblings{Sync(st, w), Sync(w, st), Sync(st, w).Collapse()} {
				if live := m.Live(); len(live) != 1 || string(live[0].Value) != "new" {
					t.Errorf("%s write merged with %s's %v: got %v, want the one live value \"new\"", c.name, name, st, m)
				}
			}
		}
		if clientCtx.Covers(d) {
			t.Errorf("%s write: dot %v covered by the client's context %v", c.name, d, clientCtx)
		}
	}
}

// Counters derived from the clock are large (about 2^51 now); they encode
// as 8-byte uvarints and compare, merge and round-trip like small ones.
func TestLargeCounters(t *testing.T) {
	now := int64(1_780_000_000_000_000_000) // 2026, in ns
	var s Siblings
	for i, node := range []uint64{1, 2, 3} {
		var d Dot
		s, d = s.Update(s.Context(), node, []byte("v"), hlc.Timestamp{WallNanos: now + int64(i)*CounterUnit})
		if want := uint64(now/CounterUnit) + uint64(i); d.Counter != want {
			t.Fatalf("dot %v, want counter %d", d, want)
		}
	}
	ctx := s.Context()
	if got := len(ctx.Encode()); got != 1+3*(1+8) {
		t.Errorf("context %v encodes to %d bytes, want %d (8-byte counters)", ctx, got, 1+3*(1+8))
	}
	back, err := DecodeSiblings(s.Encode())
	if err != nil || !back.Equal(s) {
		t.Fatalf("round trip got %v, %v; want %v", back, err, s)
	}
	later, _ := s.Update(ctx, 2, []byte("w"), hlc.Timestamp{WallNanos: now + 5*CounterUnit})
	if got := Compare(s.Context(), later.Context()); got != Before {
		t.Errorf("Compare(before, after) = %v, want before", got)
	}
	if got := Sync(s, later); !got.Equal(later) {
		t.Errorf("Sync(s, later) = %v, want %v", got, later)
	}
	t.Logf("a three-replica last-writer-wins state of a 1-byte value: %d bytes", len(later.Collapse().Encode()))
}
