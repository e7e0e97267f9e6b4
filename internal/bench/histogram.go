package bench

import (
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range: latencies are recorded in microseconds from 1 µs to one
// minute with 3 significant figures; longer ones are clamped to the top so
// they are still counted.
const (
	histMin     = 1
	histMax     = int64(time.Minute / time.Microsecond)
	histSigFigs = 3
)

// Histogram is a latency histogram (an HDR histogram in microseconds).
// It is not safe for concurrent use.
type Histogram struct{ h *hdr.Histogram }

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{h: hdr.New(histMin, histMax, histSigFigs)}
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	us := int64(d / time.Microsecond)
	if us < histMin {
		us = histMin
	}
	if us > histMax {
		us = histMax
	}
	_ = h.h.RecordValue(us) // cannot fail: the value is clamped into range
}

// Merge adds every value of o to h.
func (h *Histogram) Merge(o *Histogram) { h.h.Merge(o.h) }

// Reset empties h.
func (h *Histogram) Reset() { h.h.Reset() }

// Count is the number of recorded values.
func (h *Histogram) Count() int64 { return h.h.TotalCount() }

// Quantile returns the latency at quantile q (0..1), e.g. 0.99 for p99.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.Count() == 0 {
		return 0
	}
	if q <= 0 {
		return time.Duration(h.h.Min()) * time.Microsecond
	}
	return time.Duration(h.h.ValueAtQuantile(q*100)) * time.Microsecond
}

// Max returns the largest recorded latency (at histogram precision).
func (h *Histogram) Max() time.Duration {
	if h.Count() == 0 {
		return 0
	}
	return time.Duration(h.h.Max()) * time.Microsecond
}

// CDF returns the latency at each of the given quantiles (0..1).
func (h *Histogram) CDF(qs []float64) []CDFPoint {
	out := make([]CDFPoint, 0, len(qs))
	for _, q := range qs {
		out = append(out, CDFPoint{Quantile: q, Ms: ms(h.Quantile(q))})
	}
	return out
}

// cdfQuantiles are the points of the latency CDF kept in results.
var cdfQuantiles = []float64{0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
