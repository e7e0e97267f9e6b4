package hlc

import (
	"math/rand"
	"testing"
)

func TestNowMonotonicWhenPhysicalStalls(t *testing.T) {
	pt := int64(100)
	c := New(func() int64 { return pt })
	a := c.Now()
	b := c.Now()
	if !a.Less(b) {
		t.Fatalf("got %v then %v, want strictly increasing", a, b)
	}
	pt = 50 // clock stepped backwards
	d := c.Now()
	if !b.Less(d) {
		t.Fatalf("after backwards step got %v after %v, want strictly increasing", d, b)
	}
	if d.WallNanos != 100 {
		t.Fatalf("got wall %d, want 100 (never follow physical time backwards)", d.WallNanos)
	}
	pt = 200
	if e := c.Now(); e != (Timestamp{WallNanos: 200}) {
		t.Fatalf("got %v, want 200.0 once physical time passes the last reading", e)
	}
}

func TestUpdateOrdersAfterRemote(t *testing.T) {
	pt := int64(10)
	c := New(func() int64 { return pt })
	remote := Timestamp{WallNanos: 1000, Logical: 7}
	got := c.Update(remote)
	if !remote.Less(got) {
		t.Fatalf("got %v, want after remote %v", got, remote)
	}
	if n := c.Now(); !got.Less(n) {
		t.Fatalf("Now %v not after Update result %v", n, got)
	}
}

// Property: over a random interleaving of Now, Update and physical-time
// moves, every reading is strictly greater than all earlier readings and
// all timestamps received.
func TestMonotonicProperty(t *testing.T) {
	seed := int64(42)
	rng := rand.New(rand.NewSource(seed))
	pt := int64(1_000)
	c := New(func() int64 { return pt })
	var hi Timestamp
	for i := 0; i < 100_000; i++ {
		pt += int64(rng.Intn(5)) - 2
		var got Timestamp
		if rng.Intn(3) == 0 {
			r := Timestamp{WallNanos: pt + int64(rng.Intn(20)) - 10, Logical: uint32(rng.Intn(4))}
			got = c.Update(r)
			if !r.Less(got) {
				t.Fatalf("seed %d step %d: Update(%v) = %v, want after remote", seed, i, r, got)
			}
		} else {
			got = c.Now()
		}
		if !hi.Less(got) {
			t.Fatalf("seed %d step %d: got %v, want after %v", seed, i, got, hi)
		}
		hi = got
	}
}

func TestCompare(t *testing.T) {
	a := Timestamp{1, 2}
	b := Timestamp{1, 3}
	c := Timestamp{2, 0}
	for _, tc := range []struct {
		x, y Timestamp
		want int
	}{{a, b, -1}, {b, a, 1}, {a, a, 0}, {b, c, -1}, {c, a, 1}} {
		if got := tc.x.Compare(tc.y); got != tc.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tc.x, tc.y, got, tc.want)
		}
	}
}
