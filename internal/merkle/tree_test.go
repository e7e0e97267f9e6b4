package merkle

import (
	"errors"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
)

func mustNew(t *testing.T, depth int) *Tree {
	t.Helper()
	tr, err := New(depth)
	if err != nil {
		t.Fatalf("New(%d): %v", depth, err)
	}
	return tr
}

func TestNewDepth(t *testing.T) {
	for _, c := range []struct {
		depth int
		ok    bool
	}{{-1, false}, {0, true}, {DefaultDepth, true}, {MaxDepth, true}, {MaxDepth + 1, false}} {
		tr, err := New(c.depth)
		if c.ok && (err != nil || tr.Leaves() != 1<<c.depth || tr.Depth() != c.depth) {
			t.Errorf("New(%d) = %v, %v; want a tree of %d leaves", c.depth, tr, err, 1<<c.depth)
		}
		if !c.ok && !errors.Is(err, ErrDepth) {
			t.Errorf("New(%d) error %v, want ErrDepth", c.depth, err)
		}
	}
}

func TestLeafRanges(t *testing.T) {
	for _, c := range []struct {
		depth       int
		keyHash     uint64
		leaf        int
		first, last uint64
	}{
		{0, 12345, 0, 0, ^uint64(0)},
		{1, 0, 0, 0, 1<<63 - 1},
		{1, 1 << 63, 1, 1 << 63, ^uint64(0)},
		{10, 0, 0, 0, 1<<54 - 1},
		{10, ^uint64(0), 1023, 1023 << 54, ^uint64(0)},
		{10, 5<<54 + 99, 5, 5 << 54, 6<<54 - 1},
	} {
		tr := mustNew(t, c.depth)
		if got := tr.LeafOf(c.keyHash); got != c.leaf {
			t.Errorf("depth %d: LeafOf(%#x) = %d, want %d", c.depth, c.keyHash, got, c.leaf)
		}
		if first, last := tr.RangeOf(c.leaf); first != c.first || last != c.last {
			t.Errorf("depth %d: RangeOf(%d) = [%#x, %#x], want [%#x, %#x]", c.depth, c.leaf, first, last, c.first, c.last)
		}
	}
	// The leaves tile the key-hash space in order.
	for depth := range 13 {
		tr := mustNew(t, depth)
		var next uint64
		for leaf := range tr.Leaves() {
			first, last := tr.RangeOf(leaf)
			if first != next || last < first {
				t.Fatalf("depth %d: RangeOf(%d) = [%#x, %#x], want it to start at %#x", depth, leaf, first, last, next)
			}
			if tr.LeafOf(first) != leaf || tr.LeafOf(last) != leaf {
				t.Fatalf("depth %d: LeafOf the ends of leaf %d got %d, %d", depth, leaf, tr.LeafOf(first), tr.LeafOf(last))
			}
			next = last + 1
		}
		if next != 0 {
			t.Fatalf("depth %d: leaves end before 2^64-1 (next %#x)", depth, next)
		}
	}
}

// The hashes are part of the protocol between nodes: pinned.
func TestHashesArePinned(t *testing.T) {
	if got, want := KeyHash([]byte("user:42")), uint64(0xdc1fea7da8d2d1c2); got != want {
		t.Errorf("KeyHash(user:42) = %#x, want %#x (the mapping must never change)", got, want)
	}
	if got, want := ItemHash([]byte("user:42"), []byte("v1")), uint64(0xf49edeef45c4a616); got != want {
		t.Errorf("ItemHash(user:42, v1) = %#x, want %#x (the mapping must never change)", got, want)
	}
	if ItemHash([]byte("ab"), []byte("c")) == ItemHash([]byte("a"), []byte("bc")) {
		t.Errorf("ItemHash(ab, c) == ItemHash(a, bc), want different (key length is hashed)")
	}
}

// An incrementally maintained tree equals one computed from scratch from
// the final items: every node is the sum of the item hashes below it.
func TestIncrementalEqualsScratch(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		depth := rng.IntN(11)
		tr := mustNew(t, depth)
		items := map[string]uint64{} // key -> current item hash
		for range rng.IntN(400) {
			key := []byte{byte(rng.IntN(60)), byte(rng.IntN(4))}
			kh := KeyHash(key)
			old := items[string(key)]
			switch rng.IntN(4) {
			case 0: // delete
				if old != 0 {
					if rng.IntN(2) == 0 {
						tr.Remove(kh, old)
					} else {
						tr.Update(kh, old, 0)
					}
					delete(items, string(key))
				}
			case 1: // add or replace via Remove + Add
				nw := ItemHash(key, []byte{byte(rng.IntN(5))})
				if old != 0 {
					tr.Remove(kh, old)
				}
				tr.Add(kh, nw)
				items[string(key)] = nw
			default:
				nw := ItemHash(key, []byte{byte(rng.IntN(5))})
				tr.Update(kh, old, nw)
				items[string(key)] = nw
			}
		}
		want := scratch(t, depth, items)
		for l := 0; l <= depth; l++ {
			got, exp := tr.Level(l), want.Level(l)
			for i := range got {
				if got[i] != exp[i] {
					t.Fatalf("seed %d depth %d: node (%d, %d) got %#x, want %#x", seed, depth, l, i, got[i], exp[i])
				}
			}
		}
		if !tr.Equal(want) || tr.Root() != want.Root() {
			t.Fatalf("seed %d: incremental tree differs from scratch", seed)
		}
	}
}

// scratch builds the tree the dumb way: bucket items into leaves, sum, then
// sum children level by level, filling the nodes directly.
func scratch(t *testing.T, depth int, items map[string]uint64) *Tree {
	tr := mustNew(t, depth)
	for key, h := range items {
		tr.nodes[index(depth, tr.LeafOf(KeyHash([]byte(key))))] += h
	}
	for l := depth - 1; l >= 0; l-- {
		for i := range 1 << l {
			tr.nodes[index(l, i)] = tr.nodes[index(l+1, 2*i)] + tr.nodes[index(l+1, 2*i+1)]
		}
	}
	return tr
}

func TestSetLeafFixesAncestors(t *testing.T) {
	tr := mustNew(t, 3)
	tr.Add(0, 5)      // leaf 0
	tr.Add(7<<61, 11) // leaf 7
	tr.SetLeaf(0, 2)  // rescan found a different sum
	if got := tr.Root(); got != 13 {
		t.Fatalf("root got %d, want 13", got)
	}
	if got := tr.Node(1, 0); got != 2 {
		t.Fatalf("node (1, 0) got %d, want 2", got)
	}
	c := tr.Clone()
	c.SetLeaf(7, 0)
	if tr.Root() != 13 || c.Root() != 2 {
		t.Fatalf("after SetLeaf on a clone roots got %d and %d, want 13 and 2", tr.Root(), c.Root())
	}
}

// The package is pure. Its direct imports must not reach I/O, the clock,
// goroutine machinery or randomness; transitively fmt pulls in os, so the
// transitive check is limited to the network and processes.
func TestPure(t *testing.T) {
	direct, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, imp := range strings.Fields(string(direct)) {
		switch imp {
		case "net", "os", "os/exec", "time", "sync", "math/rand", "math/rand/v2", "io", "io/fs", "syscall", "unsafe", "hash/maphash":
			t.Errorf("merkle imports %s; it must stay pure", imp)
		}
	}
	deps, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, dep := range strings.Fields(string(deps)) {
		if dep == "net" || dep == "os/exec" || strings.HasPrefix(dep, "net/") {
			t.Errorf("merkle depends on %s; it must stay pure", dep)
		}
	}
}
