package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// oracleQuantile is the smallest recorded value with at least q of the
// values at or below it, the definition HDR histograms use.
func oracleQuantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func TestHistogramMergeMatchesSortedOracle(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	parts := []*Histogram{NewHistogram(), NewHistogram(), NewHistogram()}
	var all []time.Duration
	for i := 0; i < 50000; i++ {
		// Log-uniform from 1µs to ~10s, the range latencies span.
		d := time.Duration(math.Exp(rng.Float64()*math.Log(1e7))) * time.Microsecond
		all = append(all, d)
		parts[rng.IntN(len(parts))].Record(d)
	}
	merged := NewHistogram()
	for _, p := range parts {
		merged.Merge(p)
	}
	slices.Sort(all)
	if got, want := merged.Count(), int64(len(all)); got != want {
		t.Fatalf("count: got %d, want %d", got, want)
	}
	for _, q := range []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
		got, want := merged.Quantile(q), oracleQuantile(all, q).Truncate(time.Microsecond)
		// 3 significant figures: within 0.1% (one bucket), plus the 1µs unit.
		tol := time.Duration(float64(want)*0.002) + time.Microsecond
		if diff := got - want; diff < -tol || diff > tol {
			t.Errorf("p%g: got %v, want %v ± %v", q*100, got, want, tol)
		}
	}
	if got, want := merged.Max(), all[len(all)-1]; math.Abs(float64(got-want)) > float64(want)*0.002+float64(time.Microsecond) {
		t.Errorf("max: got %v, want %v", got, want)
	}
}

func TestHistogramClampsAndEmpty(t *testing.T) {
	h := NewHistogram()
	if h.Quantile(0.99) != 0 || h.Max() != 0 {
		t.Fatalf("empty histogram: got p99 %v max %v, want 0", h.Quantile(0.99), h.Max())
	}
	h.Record(0)
	h.Record(time.Hour)
	if got := h.Count(); got != 2 {
		t.Fatalf("count: got %d, want 2 (out-of-range values are clamped, not dropped)", got)
	}
	if got := h.Quantile(0); got != time.Microsecond {
		t.Errorf("min: got %v, want 1µs", got)
	}
	if got := h.Max(); got < time.Minute-time.Second {
		t.Errorf("max: got %v, want about 1m (clamped)", got)
	}
}
