package bench

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func TestZipfianRankFrequency(t *testing.T) {
	const seed, n, draws = 42, 1000, 400000
	t.Logf("seed %d", seed)
	for _, theta := range []float64{0.5, 0.99} {
		z, err := NewZipfian(n, theta)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(seed, 0))
		counts := make([]int, n)
		for range draws {
			r := z.Next(rng)
			if r >= n {
				t.Fatalf("rank %d out of [0,%d)", r, n)
			}
			counts[r]++
		}
		// Gray's method is exact for ranks 0 and 1 and approximates the
		// rest. Check the generator against its own analytic distribution
		// (chi-square over log-spaced rank bands), then against the true
		// Zipf law rank by rank for the head and within 15% per band.
		bands := []uint64{0, 1, 2, 8, 32, 128, 512, n}
		var chi float64
		for i := 0; i+1 < len(bands); i++ {
			lo, hi := bands[i], bands[i+1]
			got := 0
			var zipf float64
			for r := lo; r < hi; r++ {
				got += counts[r]
				zipf += z.Prob(r) * draws
			}
			exp := (gen(z, hi) - gen(z, lo)) * draws
			chi += math.Pow(float64(got)-exp, 2) / exp
			if math.Abs(float64(got)-zipf) > 0.15*zipf {
				t.Errorf("θ=%v ranks [%d,%d): got %d draws, want about %.0f (Zipf law)", theta, lo, hi, got, zipf)
			}
		}
		if chi > 22.46 { // 6 degrees of freedom, p = 0.001
			t.Errorf("θ=%v: chi² %.1f over %d bands against the generator's distribution, want <= 22.46", theta, chi, len(bands)-1)
		}
		// Popularity decreases with rank.
		if counts[0] <= counts[1] || counts[1] <= counts[10] || counts[10] <= counts[500] {
			t.Errorf("θ=%v: counts not decreasing: r0 %d r1 %d r10 %d r500 %d", theta, counts[0], counts[1], counts[10], counts[500])
		}
	}
}

// gen is the probability that z draws a rank below k (θ < 1): ranks 0
// and 1 come from the two head thresholds, the rest from inverting
// n·(η(u-1)+1)^α < k.
func gen(z *Zipfian, k uint64) float64 {
	switch {
	case k == 0:
		return 0
	case k == 1:
		return 1 / z.zetan
	case k >= z.n:
		return 1
	}
	u := 1 - (1-math.Pow(float64(k)/float64(z.n), 1-z.theta))/z.eta
	return max(z.half/z.zetan, u)
}

func TestKeyDistributions(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	w := Workload{Keys: 100, Dist: "sequential"}
	g, err := newKeyGen(w)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 250 {
		if got, want := g.next(rng), uint64(i%100); got != want {
			t.Fatalf("sequential draw %d: got %d, want %d", i, got, want)
		}
	}
	w.Dist = "latest"
	g, err = newKeyGen(w)
	if err != nil {
		t.Fatal(err)
	}
	high := 0
	for range 1000 {
		if g.next(rng) >= 90 {
			high++
		}
	}
	if high < 400 {
		t.Errorf("latest: got %d of 1000 draws in the newest 10%% of keys, want most", high)
	}
	for _, d := range []string{"uniform", "zipfian"} {
		w.Dist = d
		if _, err := newKeyGen(w); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	w.Dist = "bogus"
	if _, err := newKeyGen(w); err == nil {
		t.Error("bogus distribution: got nil error")
	}
	if got := string(w.key(nil, 42)); got != "0000000042" {
		t.Errorf("key: got %q, want 0000000042", got)
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		spec, kind, addr string
		ok               bool
	}{
		{"fulcrum=resp://127.0.0.1:7379", "resp", "127.0.0.1:7379", true},
		{"f=http://localhost:7380", "http", "localhost:7380", true},
		{"f=resp://127.0.0.1:7379,127.0.0.1:7389", "resp", "127.0.0.1:7379,127.0.0.1:7389", true},
		{"e=etcd://127.0.0.1:2379", "etcd", "127.0.0.1:2379", true},
		{"resp://127.0.0.1:7379", "", "", false},
		{"x=memcache://127.0.0.1:2379", "", "", false},
		{"x=resp://nohostport", "", "", false},
		{"x=resp://127.0.0.1:1,", "", "", false},
		{"x=resp://127.0.0.1:1?conns=2", "", "", false},
	} {
		tg, err := ParseTarget(tc.spec)
		if (err == nil) != tc.ok {
			t.Errorf("%q: got error %v, want ok=%v", tc.spec, err, tc.ok)
			continue
		}
		if tc.ok && (tg.Kind() != tc.kind || tg.Addr() != tc.addr) {
			t.Errorf("%q: got %s %s, want %s %s", tc.spec, tg.Kind(), tg.Addr(), tc.kind, tc.addr)
		}
	}
}

func TestErrorCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&codedError{code: "TOO_LARGE", msg: "x"}, "TOO_LARGE"},
		{context.DeadlineExceeded, "TIMEOUT"},
		{errors.New("connection reset"), "IO"},
	} {
		if got := ErrorCode(tc.err); got != tc.want {
			t.Errorf("ErrorCode(%v): got %q, want %q", tc.err, got, tc.want)
		}
	}
}
