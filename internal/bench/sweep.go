package bench

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Sweep runs cfg once per concurrency level (closed loop) or per rate
// (open loop) and returns all the results, giving the
// latency-vs-throughput curve. With neither, it is a single Run.
func Sweep(ctx context.Context, cfg Config, concurrency []int, rates []float64) ([]RunResult, error) {
	var out []RunResult
	switch {
	case len(rates) > 0:
		for _, r := range rates {
			c := cfg
			c.Rate = r
			res, err := Run(ctx, c)
			out = append(out, res...)
			if err != nil {
				return out, fmt.Errorf("rate %g: %w", r, err)
			}
			cfg.Preload = false // the keys are there now
		}
	case len(concurrency) > 0:
		for _, n := range concurrency {
			c := cfg
			c.Clients = n
			res, err := Run(ctx, c)
			out = append(out, res...)
			if err != nil {
				return out, fmt.Errorf("concurrency %d: %w", n, err)
			}
			cfg.Preload = false
		}
	default:
		return Run(ctx, cfg)
	}
	return out, nil
}

// SLO is a latency objective such as p99 <= 5ms.
type SLO struct {
	Quantile string // p50, p90, p99, p999, max
	Limit    time.Duration
}

// ParseSLO parses "p99=5ms".
func ParseSLO(s string) (SLO, error) {
	q, lim, ok := strings.Cut(s, "=")
	if !ok {
		return SLO{}, fmt.Errorf("slo %q: want QUANTILE=DURATION, e.g. p99=5ms", s)
	}
	d, err := time.ParseDuration(lim)
	if err != nil || d <= 0 {
		return SLO{}, fmt.Errorf("slo %q: bad duration %q", s, lim)
	}
	if _, ok := (OpStats{}).Quantile(q); !ok {
		return SLO{}, fmt.Errorf("slo %q: unknown quantile %q (want p50, p90, p99, p999 or max)", s, q)
	}
	return SLO{Quantile: q, Limit: d}, nil
}

func (s SLO) String() string { return s.Quantile + "<=" + s.Limit.String() }

// Met reports whether a run meets the objective: the latency bound, no
// errors, and an achieved rate close to the offered one.
func (s SLO) Met(r RunResult) bool {
	t := r.Total()
	lat, _ := t.Quantile(s.Quantile)
	if lat > s.Limit || t.Errors > 0 || t.Count == 0 {
		return false
	}
	return r.OfferedRate <= 0 || t.OpsPerSec >= 0.9*r.OfferedRate
}

// SLOResult is the outcome of an SLO search for one target.
type SLOResult struct {
	Target  string      `json:"target"`
	SLO     string      `json:"slo"`
	MaxRate float64     `json:"max_rate"` // highest offered rate meeting the SLO (0 = none)
	Probes  []RunResult `json:"probes"`
}

// SearchSLO finds, per target, the highest open-loop rate meeting slo by
// bisection between 0 and hi (found first by doubling from start) with
// steps probes of cfg.Duration each.
func SearchSLO(ctx context.Context, cfg Config, slo SLO, start float64, steps int) ([]SLOResult, error) {
	var out []SLOResult
	for _, t := range cfg.Targets {
		c := cfg
		c.Targets = []Target{t}
		res := SLOResult{Target: t.Name(), SLO: slo.String()}
		probe := func(rate float64) (bool, error) {
			c.Rate = rate
			r, err := Run(ctx, c)
			if err != nil {
				return false, err
			}
			c.Preload, c.Warmup = false, 0
			res.Probes = append(res.Probes, r[0])
			return slo.Met(r[0]), nil
		}
		lo, hi := 0.0, start
		// Grow until the SLO fails (at most 2^10 times start).
		for i := 0; i < 10; i++ {
			ok, err := probe(hi)
			if err != nil {
				return out, err
			}
			if !ok {
				break
			}
			lo, hi = hi, hi*2
		}
		for range steps {
			mid := (lo + hi) / 2
			ok, err := probe(mid)
			if err != nil {
				return out, err
			}
			if ok {
				lo = mid
			} else {
				hi = mid
			}
		}
		res.MaxRate = lo
		out = append(out, res)
	}
	return out, nil
}
