package versionvec

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	for _, c := range []struct {
		a, b Vector
		want Ordering
	}{
		{nil, nil, Equal},
		{Vector{}, nil, Equal},
		{Vector{1: 0}, nil, Equal}, // a zero entry means absent
		{Vector{1: 1}, Vector{1: 1}, Equal},
		{nil, Vector{1: 1}, Before},
		{Vector{1: 1}, Vector{1: 2}, Before},
		{Vector{1: 1}, Vector{1: 1, 2: 1}, Before},
		{Vector{1: 3, 2: 1}, Vector{1: 2}, After},
		{Vector{1: 1}, Vector{2: 1}, Concurrent},
		{Vector{1: 2, 2: 1}, Vector{1: 1, 2: 2}, Concurrent},
	} {
		if got := Compare(c.a, c.b); got != c.want {
			t.Errorf("Compare(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
		inverse := map[Ordering]Ordering{Equal: Equal, Before: After, After: Before, Concurrent: Concurrent}
		if got := Compare(c.b, c.a); got != inverse[c.want] {
			t.Errorf("Compare(%v, %v) = %v, want %v", c.b, c.a, got, inverse[c.want])
		}
	}
}

func TestMergeIsLeastUpperBound(t *testing.T) {
	seed := uint64(1)
	rng := rand.New(rand.NewPCG(seed, 0))
	for range 2000 {
		a, b := randVector(rng), randVector(rng)
		ac, bc := a.Clone(), b.Clone()
		m := Merge(a, b)
		if Compare(a, ac) != Equal || Compare(b, bc) != Equal {
			t.Fatalf("seed %d: Merge modified its inputs", seed)
		}
		if !Descends(m, a) || !Descends(m, b) {
			t.Fatalf("seed %d: Merge(%v, %v) = %v, want a vector descending both", seed, a, b, m)
		}
		for n, k := range m {
			if k != max(a[n], b[n]) {
				t.Fatalf("seed %d: Merge(%v, %v)[%d] = %d, want %d", seed, a, b, n, k, max(a[n], b[n]))
			}
		}
		got := Compare(a, b)
		want := Concurrent
		switch {
		case Compare(m, a) == Equal && Compare(m, b) == Equal:
			want = Equal
		case Compare(m, b) == Equal:
			want = Before
		case Compare(m, a) == Equal:
			want = After
		}
		if got != want {
			t.Fatalf("seed %d: Compare(%v, %v) = %v, want %v (from their merge %v)", seed, a, b, got, want, m)
		}
	}
}

func TestVectorEncoding(t *testing.T) {
	for _, c := range []struct {
		v    Vector
		want []byte
	}{
		{nil, []byte{0}},
		{Vector{7: 0}, []byte{0}},
		{Vector{2: 5, 1: 3}, []byte{2, 1, 3, 2, 5}},
		{Vector{300: 1}, []byte{1, 0xac, 0x02, 1}},
	} {
		got := c.v.Encode()
		if !bytes.Equal(got, c.want) {
			t.Errorf("%v.Encode() = %x, want %x", c.v, got, c.want)
		}
		back, err := Decode(got)
		if err != nil || Compare(back, c.v) != Equal {
			t.Errorf("Decode(%x) = %v, %v; want %v, nil", got, back, err, c.v)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"truncated count", []byte{0x80}},
		{"truncated entry", []byte{1, 1}},
		{"count beyond input", []byte{5, 1, 1}},
		{"huge count", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
		{"zero counter", []byte{1, 1, 0}},
		{"descending nodes", []byte{2, 2, 1, 1, 1}},
		{"duplicate node", []byte{2, 1, 1, 1, 2}},
		{"overlong node", []byte{1, 0x81, 0x00, 1}},
		{"overlong count", []byte{0x80, 0x00}},
		{"overflowing counter", []byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
		{"trailing bytes", []byte{0, 0}},
	} {
		v, err := Decode(c.in)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode(%x) = %v, %v; want ErrMalformed", c.name, c.in, v, err)
		}
	}
}

func TestVectorRoundTrip(t *testing.T) {
	seed := uint64(1)
	rng := rand.New(rand.NewPCG(seed, 0))
	for range 2000 {
		v := randVector(rng)
		b := v.Encode()
		got, err := Decode(b)
		if err != nil || Compare(got, v) != Equal {
			t.Fatalf("seed %d: Decode(%v.Encode()) = %v, %v; want %v", seed, v, got, err, v)
		}
		if again := got.Encode(); !bytes.Equal(again, b) {
			t.Fatalf("seed %d: re-encoding %v gave %x, want %x", seed, v, again, b)
		}
	}
}

func randVector(rng *rand.Rand) Vector {
	v := Vector{}
	for range rng.IntN(5) {
		n := rng.Uint64N(6)
		if rng.IntN(8) == 0 {
			n = rng.Uint64()
		}
		v[n] = rng.Uint64N(4)
		if rng.IntN(8) == 0 {
			v[n] = rng.Uint64()
		}
	}
	return v
}

// The package is pure. Its imports (direct) must not reach I/O, the clock,
// goroutine machinery or randomness; transitively fmt and hlc pull in os and
// sync, so the transitive check is limited to the network and processes.
func TestPure(t *testing.T) {
	direct, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, imp := range strings.Fields(string(direct)) {
		switch imp {
		case "net", "os", "os/exec", "time", "sync", "math/rand", "math/rand/v2", "io", "io/fs", "syscall", "unsafe":
			t.Errorf("versionvec imports %s; it must stay pure", imp)
		}
	}
	deps, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, dep := range strings.Fields(string(deps)) {
		if dep == "net" || dep == "os/exec" || strings.HasPrefix(dep, "net/") {
			t.Errorf("versionvec depends on %s; it must stay pure", dep)
		}
	}
}
