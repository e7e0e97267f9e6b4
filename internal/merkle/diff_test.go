package merkle

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// replicaState is one replica's items: key -> version.
type replicaState map[string]byte

func (s replicaState) tree(t *testing.T, rng *rand.Rand, depth int) *Tree {
	tr := mustNew(t, depth)
	for _, key := range slices.Sorted(maps.Keys(s)) {
		kh := KeyHash([]byte(key))
		// Arrive at the final version through a random history, so the
		// tree is maintained incrementally rather than built once.
		cur := uint64(0)
		for range rng.IntN(3) {
			h := ItemHash([]byte(key), []byte{byte(rng.IntN(200)), 1})
			tr.Update(kh, cur, h)
			cur = h
		}
		tr.Update(kh, cur, ItemHash([]byte(key), []byte{s[key]}))
	}
	return tr
}

// differingLeaves is the oracle: bucket both replicas' (key, version) pairs
// by leaf and compare the sets.
func differingLeaves(tr *Tree, a, b replicaState) []int {
	byLeaf := func(s replicaState) map[int]map[string]byte {
		m := map[int]map[string]byte{}
		for k, v := range s {
			leaf := tr.LeafOf(KeyHash([]byte(k)))
			if m[leaf] == nil {
				m[leaf] = map[string]byte{}
			}
			m[leaf][k] = v
		}
		return m
	}
	la, lb := byLeaf(a), byLeaf(b)
	var out []int
	for leaf := range tr.Leaves() {
		if !maps.Equal(la[leaf], lb[leaf]) {
			out = append(out, leaf)
		}
	}
	return out
}

// runDiff drives a Differ of local against remote to the end, checking that
// every query after the first asks only for descendants of nodes that
// differed in the previous round, and all of them.
func runDiff(t *testing.T, seed uint64, local, remote *Tree, stride int) *Differ {
	t.Helper()
	d := NewDiffer(local, stride)
	var prevLevel int
	var prevDiffer []int
	for round := 0; ; round++ {
		q, ok := d.Next()
		if !ok {
			break
		}
		if round == 0 {
			if q.Level != 0 || !slices.Equal(q.Nodes, []int{0}) {
				t.Fatalf("seed %d: first query got %+v, want the root", seed, q)
			}
		} else {
			fan := q.Level - prevLevel
			var want []int
			for _, p := range prevDiffer {
				for c := p << fan; c < (p+1)<<fan; c++ {
					want = append(want, c)
				}
			}
			if !slices.Equal(q.Nodes, want) {
				t.Fatalf("seed %d round %d: query got nodes %v of level %d, want %v (children of %v at level %d)",
					seed, round, q.Nodes, q.Level, want, prevDiffer, prevLevel)
			}
		}
		a, err := remote.Answer(q)
		if err != nil {
			t.Fatalf("seed %d round %d: Answer: %v", seed, round, err)
		}
		prevLevel, prevDiffer = q.Level, nil
		for _, i := range q.Nodes {
			if local.Node(q.Level, i) != remote.Node(q.Level, i) {
				prevDiffer = append(prevDiffer, i)
			}
		}
		if err := d.Receive(a); err != nil {
			t.Fatalf("seed %d round %d: Receive: %v", seed, round, err)
		}
		if round > local.Depth()+1 {
			t.Fatalf("seed %d: diff still running after %d rounds", seed, round)
		}
	}
	if !d.Done() {
		t.Fatalf("seed %d: Next reports no query but Done is false", seed)
	}
	return d
}

// Two replicas with random overlap and different versions of shared keys:
// the diff reports exactly the leaves whose item sets differ, in the
// expected number of rounds, whichever side starts it.
func TestDiffFindsExactlyDifferingLeaves(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		depth := rng.IntN(13)
		stride := 1 + rng.IntN(4)
		divergence := []float64{0, 0.002, 0.02, 0.2, 0.8}[rng.IntN(5)]
		a, b := replicaState{}, replicaState{}
		for i := range rng.IntN(600) {
			key := fmt.Sprintf("key-%d-%d", seed, i)
			v := byte(rng.IntN(3))
			if rng.Float64() >= divergence {
				a[key], b[key] = v, v
				continue
			}
			switch rng.IntN(3) {
			case 0:
				a[key] = v
			case 1:
				b[key] = v
			default:
				a[key], b[key] = v, v+1
			}
		}
		ta, tb := a.tree(t, rng, depth), b.tree(t, rng, depth)
		want := differingLeaves(ta, a, b)

		d := runDiff(t, seed, ta, tb, stride)
		if got := d.Leaves(); !slices.Equal(got, want) {
			t.Fatalf("seed %d (depth %d, stride %d): leaves got %v, want %v", seed, depth, stride, got, want)
		}
		if back := runDiff(t, seed, tb, ta, stride); !slices.Equal(back.Leaves(), want) {
			t.Fatalf("seed %d: reverse diff leaves got %v, want %v", seed, back.Leaves(), want)
		}
		wantRounds := 1
		if len(want) > 0 {
			wantRounds = 1 + (depth+stride-1)/stride
		}
		if got := d.Rounds(); got != wantRounds {
			t.Fatalf("seed %d (depth %d, stride %d): rounds got %d, want %d", seed, depth, stride, got, wantRounds)
		}
		checkRanges(t, seed, ta, d.Ranges(), want, a, b)
	}
}

// checkRanges: the ranges are ascending, disjoint, not adjacent (adjacent
// ones are joined), cover exactly the differing leaves, and so every key
// whose versions differ.
func checkRanges(t *testing.T, seed uint64, tr *Tree, rs []Range, leaves []int, a, b replicaState) {
	t.Helper()
	var covered []int
	for i, r := range rs {
		if r.First > r.Last || (i > 0 && rs[i-1].Last >= r.First-1) {
			t.Fatalf("seed %d: ranges %v not ascending, disjoint and joined", seed, rs)
		}
		for leaf := tr.LeafOf(r.First); ; leaf++ {
			covered = append(covered, leaf)
			if _, last := tr.RangeOf(leaf); last == r.Last {
				break
			}
		}
	}
	if !slices.Equal(covered, leaves) {
		t.Fatalf("seed %d: ranges %v cover leaves %v, want %v", seed, rs, covered, leaves)
	}
	for _, s := range []replicaState{a, b} {
		for k := range s {
			av, aok := a[k]
			bv, bok := b[k]
			if aok == bok && av == bv {
				continue
			}
			kh := KeyHash([]byte(k))
			if !slices.ContainsFunc(rs, func(r Range) bool { return r.Contains(kh) }) {
				t.Fatalf("seed %d: key %q differs (%v/%v vs %v/%v) but hash %#x is in no range %v", seed, k, av, aok, bv, bok, kh, rs)
			}
		}
	}
}

// With one differing key the diff costs one hash per level per stride
// fan-out, not the tree.
func TestDiffBandwidthFollowsDisagreement(t *testing.T) {
	a, _ := New(DefaultDepth)
	b, _ := New(DefaultDepth)
	for i := range 5000 {
		k := []byte(fmt.Sprint("k", i))
		a.Add(KeyHash(k), ItemHash(k, []byte("v")))
		b.Add(KeyHash(k), ItemHash(k, []byte("v")))
	}
	k := []byte("odd")
	b.Add(KeyHash(k), ItemHash(k, nil))
	for _, c := range []struct{ stride, rounds, hashes int }{
		{1, 11, 1 + 10*2},
		{2, 6, 1 + 5*4},
		{5, 3, 1 + 2*32},
	} {
		d := runDiff(t, 0, a, b, c.stride)
		if d.Rounds() != c.rounds || d.HashesReceived() != c.hashes {
			t.Errorf("stride %d: got %d rounds and %d hashes, want %d and %d", c.stride, d.Rounds(), d.HashesReceived(), c.rounds, c.hashes)
		}
		if got, want := d.Leaves(), []int{a.LeafOf(KeyHash(k))}; !slices.Equal(got, want) {
			t.Errorf("stride %d: leaves got %v, want %v", c.stride, got, want)
		}
	}
}

func TestAnswerRejects(t *testing.T) {
	tr, _ := New(4)
	for _, c := range []struct {
		name string
		q    Query
		want error
	}{
		{"depth mismatch", Query{Depth: 5, Level: 0, Nodes: []int{0}}, ErrDepthMismatch},
		{"negative level", Query{Depth: 4, Level: -1}, ErrBadQuery},
		{"level below leaves", Query{Depth: 4, Level: 5, Nodes: []int{0}}, ErrBadQuery},
		{"node out of range", Query{Depth: 4, Level: 2, Nodes: []int{4}}, ErrBadQuery},
		{"negative node", Query{Depth: 4, Level: 2, Nodes: []int{-1}}, ErrBadQuery},
		{"too many nodes", Query{Depth: 4, Level: 1, Nodes: []int{0, 1, 0}}, ErrBadQuery},
	} {
		if a, err := tr.Answer(c.q); !errors.Is(err, c.want) {
			t.Errorf("%s: Answer(%+v) = %+v, %v; want %v", c.name, c.q, a, err, c.want)
		}
	}
}

func TestReceiveRejectsAndKeepsState(t *testing.T) {
	local, _ := New(3)
	remote, _ := New(3)
	remote.Add(0, 1)
	d := NewDiffer(local, 1)
	q0, _ := d.Next()
	for _, a := range []Answer{
		{Level: 1, Hashes: []uint64{1}},
		{Level: 0, Hashes: nil},
		{Level: 0, Hashes: []uint64{1, 2}},
	} {
		if err := d.Receive(a); !errors.Is(err, ErrBadAnswer) {
			t.Errorf("Receive(%+v) error %v, want ErrBadAnswer", a, err)
		}
		if q, ok := d.Next(); !ok || q.Level != q0.Level || !slices.Equal(q.Nodes, q0.Nodes) {
			t.Errorf("after a bad answer Next got %+v, %v; want %+v again", q, ok, q0)
		}
	}
	for {
		q, ok := d.Next()
		if !ok {
			break
		}
		a, _ := remote.Answer(q)
		if err := d.Receive(a); err != nil {
			t.Fatalf("Receive: %v", err)
		}
	}
	if err := d.Receive(Answer{Level: 3, Hashes: []uint64{0, 0}}); !errors.Is(err, ErrBadAnswer) {
		t.Errorf("Receive after the end error %v, want ErrBadAnswer", err)
	}
	if got := d.Leaves(); !slices.Equal(got, []int{0}) {
		t.Errorf("leaves got %v, want [0]", got)
	}
	if got, want := d.Ranges(), []Range{{0, 1<<61 - 1}}; !slices.Equal(got, want) {
		t.Errorf("ranges got %v, want %v", got, want)
	}
}
