package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one measurement: every target driven with the same workload
// and load model.
type Config struct {
	Targets  []Target
	Workload Workload

	Clients  int           // concurrent clients (connections) per target
	Pipeline int           // closed loop: requests in flight per client (1 = none)
	Rate     float64       // > 0: open loop at this many requests/s per target
	Spin     time.Duration // open loop: busy-wait this close to each send time (see WallClock)

	Duration time.Duration // measured time per target (0 = until Ops)
	Ops      int64         // measured operations per target (0 = until Duration)
	Rounds   int           // interleaved rounds; each is a slice of Duration/Ops
	Warmup   time.Duration // run before the first round of each target, not recorded
	Interval time.Duration // reporting interval (default 1s)
	Preload  bool          // write every key once before measuring

	// Quorum is the W and R every request asks of a Fulcrum eventual
	// namespace (zero: the namespace's own), on the targets that take one
	// (TakesQuorum).
	Quorum Quorum

	Seed uint64
	// Progress, if set, is called from the run's goroutine at each interval.
	Progress func(Progress)
}

// Progress is a periodic report during a run.
type Progress struct {
	Target  string
	Phase   string // "preload", "warmup", "run"
	Round   int
	Rounds  int
	Elapsed time.Duration // in this phase
	Done    int64         // preload: keys written
	Total   int64         // preload: keys to write
	OpsPS   float64       // last interval
	P50     time.Duration
	P99     time.Duration
	Errors  int64 // last interval
}

func (c *Config) setDefaults() error {
	if len(c.Targets) == 0 {
		return errors.New("no targets")
	}
	if c.Clients <= 0 {
		c.Clients = 1
	}
	if c.Pipeline <= 0 {
		c.Pipeline = 1
	}
	if c.Duration <= 0 && c.Ops <= 0 {
		return errors.New("need a duration or an operation count")
	}
	if c.Rate > 0 && c.Duration <= 0 {
		return errors.New("open loop (a rate) needs a duration")
	}
	if c.Rounds <= 0 {
		c.Rounds = 1
	}
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	if err := c.Quorum.Validate(); err != nil {
		return err
	}
	return c.Workload.Validate()
}

// Mode returns "open" or "closed".
func (c *Config) Mode() string {
	if c.Rate > 0 {
		return "open"
	}
	return "closed"
}

// targetRun is a target's state across rounds.
type targetRun struct {
	t       Target
	conns   []Conn
	total   *opHists
	elapsed time.Duration
	ivals   []Interval
	lag     Lag
	version string
}

// Run measures every target of cfg, in interleaved rounds, and returns one
// result per target.
func Run(ctx context.Context, cfg Config) ([]RunResult, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	keys, err := newKeyGen(cfg.Workload)
	if err != nil {
		return nil, err
	}
	for _, t := range cfg.Targets {
		if cfg.Pipeline > 1 && t.Kind() != "resp" {
			return nil, fmt.Errorf("target %s: %s cannot pipeline (pipeline %d)", t.Name(), t.Kind(), cfg.Pipeline)
		}
		if err := CheckTarget(t, cfg.Workload); err != nil {
			return nil, err
		}
	}
	runs := make([]*targetRun, len(cfg.Targets))
	defer func() {
		for _, r := range runs {
			if r == nil {
				continue
			}
			for _, c := range r.conns {
				_ = c.Close()
			}
		}
	}()
	for i, t := range cfg.Targets {
		r := &targetRun{t: t, total: newOpHists()}
		runs[i] = r
		if v, ok := t.(Versioner); ok {
			// Best effort: a server without a version is still measured.
			r.version, _ = v.ServerVersion(ctx)
		}
		for i := range cfg.Clients {
			c, err := t.Connect(ctx, ConnOptions{Namespace: cfg.Workload.Namespace, Quorum: cfg.Quorum}, i)
			if err != nil {
				return nil, err
			}
			r.conns = append(r.conns, c)
		}
	}
	for _, r := range runs {
		if cfg.Preload {
			if err := preload(ctx, &cfg, r); err != nil {
				return nil, err
			}
		}
		if cfg.Warmup > 0 {
			if _, err := runRound(ctx, &cfg, r, keys, "warmup", 0, cfg.Warmup, 0, nil); err != nil {
				return nil, err
			}
		}
	}
	for round := range cfg.Rounds {
		for _, r := range runs {
			dur := cfg.Duration / time.Duration(cfg.Rounds)
			var ops int64
			if cfg.Ops > 0 {
				ops = cfg.Ops / int64(cfg.Rounds)
				if round == cfg.Rounds-1 {
					ops = cfg.Ops - ops*int64(cfg.Rounds-1)
				}
			}
			if _, err := runRound(ctx, &cfg, r, keys, "run", round, dur, ops, r); err != nil {
				// Interrupted: what was measured so far is still reported.
				return results(&cfg, runs), err
			}
		}
	}
	return results(&cfg, runs), nil
}

func results(cfg *Config, runs []*targetRun) []RunResult {
	var out []RunResult
	for _, r := range runs {
		if r.elapsed > 0 {
			out = append(out, r.result(cfg))
		}
	}
	return out
}

// preload writes every key once, the clients sharing the keyspace.
func preload(ctx context.Context, cfg *Config, r *targetRun) error {
	n := int64(cfg.Workload.Keys)
	var next, done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range r.conns {
		wg.Go(func() {
			val := make([]byte, cfg.Workload.ValueSize)
			reqs := make([]Request, 0, cfg.Pipeline)
			errs := make([]error, cfg.Pipeline)
			keyBufs := make([][]byte, cfg.Pipeline)
			for ctx.Err() == nil {
				reqs = reqs[:0]
				for j := 0; j < cfg.Pipeline; j++ {
					k := next.Add(1) - 1
					if k >= n {
						break
					}
					keyBufs[j] = cfg.Workload.key(keyBufs[j], uint64(k))
					reqs = append(reqs, Request{Op: OpWrite, Key: keyBufs[j], Value: val})
				}
				if len(reqs) == 0 {
					return
				}
				c.Do(ctx, reqs, errs[:len(reqs)])
				for _, err := range errs[:len(reqs)] {
					if err != nil {
						errOnce.Do(func() { firstErr = err })
						return
					}
				}
				done.Add(int64(len(reqs)))
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-finished:
			if firstErr != nil {
				return fmt.Errorf("preload %s: %w", r.t.Name(), firstErr)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if cfg.Progress != nil {
				cfg.Progress(Progress{Target: r.t.Name(), Phase: "preload", Elapsed: time.Since(start), Done: done.Load(), Total: n})
			}
			return nil
		case <-tick.C:
			if cfg.Progress != nil {
				cfg.Progress(Progress{Target: r.t.Name(), Phase: "preload", Elapsed: time.Since(start), Done: done.Load(), Total: n})
			}
		}
	}
}

// runRound drives r's target for dur (or ops operations) and, if into is
// not nil, adds the recording to it.
func runRound(ctx context.Context, cfg *Config, r *targetRun, keys keyGen, phase string, round int, dur time.Duration, ops int64, into *targetRun) (time.Duration, error) {
	var stop atomic.Bool
	var budget atomic.Int64
	budget.Store(ops)
	recs := make([]*recorder, len(r.conns))
	for i := range recs {
		recs[i] = newRecorder()
	}
	var arrivals chan time.Time
	var lag Lag
	var wg sync.WaitGroup
	start := time.Now()
	if cfg.Rate > 0 {
		arrivals = make(chan time.Time, 4*len(r.conns))
		wg.Go(func() {
			// Arrivals end at the deadline or with ctx; the clients drain
			// what is queued, so every intended request is measured.
			lag, _ = Arrivals(ctx, WallClock{Spin: cfg.Spin}, start, start.Add(dur), cfg.Rate, arrivals)
			close(arrivals)
		})
	}
	for i, c := range r.conns {
		// Every target gets the same request sequence in a round, so
		// they are compared on the same keys and operations.
		seed := cfg.Seed + uint64(round)*7919 + uint64(i)*104729
		rng := rand.New(rand.NewPCG(seed, uint64(len(phase))))
		wg.Go(func() {
			client(ctx, cfg, c, recs[i], rng, keys, &stop, &budget, ops > 0, arrivals)
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	var deadline <-chan time.Time
	if dur > 0 && cfg.Rate <= 0 {
		tm := time.NewTimer(dur)
		defer tm.Stop()
		deadline = tm.C
	}
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	ival := newOpHists()
	last := start
	flush := func(now time.Time, final bool) {
		ival.reset()
		for _, rec := range recs {
			rec.drainInto(ival)
		}
		span := now.Sub(last)
		last = now
		all := ival.all()
		p := Progress{
			Target: r.t.Name(), Phase: phase, Round: round + 1, Rounds: cfg.Rounds,
			Elapsed: now.Sub(start), P50: all.Quantile(0.5), P99: all.Quantile(0.99), Errors: ival.errCount(),
		}
		if span > 0 {
			p.OpsPS = float64(all.Count()) / span.Seconds()
		}
		if into != nil {
			into.total.merge(ival)
			into.ivals = append(into.ivals, Interval{
				Round: round + 1, EndS: (into.elapsed + now.Sub(start)).Seconds(), DurS: span.Seconds(),
				OpsPerSec: p.OpsPS, P50Ms: ms(p.P50), P99Ms: ms(p.P99), Errors: p.Errors,
			})
		}
		// The last, partial interval of a round is too short for a
		// meaningful rate on the progress line; it is still recorded.
		if cfg.Progress != nil && span > 0 && (!final || span >= cfg.Interval/2) {
			cfg.Progress(p)
		}
	}
	for {
		select {
		case <-finished:
			now := time.Now()
			flush(now, true)
			if into != nil {
				into.elapsed += now.Sub(start)
				into.lag.Add(lag)
			}
			return now.Sub(start), ctx.Err()
		case <-deadline:
			stop.Store(true)
		case now := <-tick.C:
			flush(now, false)
		}
	}
}

// client is one client's loop: closed loop (send, wait, repeat) when
// arrivals is nil, otherwise one request per arrival, timed from its
// intended start.
func client(ctx context.Context, cfg *Config, c Conn, rec *recorder, rng *rand.Rand, keys keyGen, stop *atomic.Bool, budget *atomic.Int64, limited bool, arrivals <-chan time.Time) {
	w := cfg.Workload
	depth := cfg.Pipeline
	if arrivals != nil {
		depth = 1
	}
	val := make([]byte, w.ValueSize)
	for i := range val {
		val[i] = byte('a' + rng.IntN(26))
	}
	reqs := make([]Request, depth)
	errs := make([]error, depth)
	keyBufs := make([][]byte, depth)
	fill := func(n int) {
		for j := range n {
			op := w.pickOp(rng)
			keyBufs[j] = w.key(keyBufs[j], keys.next(rng))
			reqs[j] = Request{Op: op, Key: keyBufs[j]}
			if op == OpWrite || op == OpCAS {
				reqs[j].Value = val
			}
		}
	}
	take := func() int {
		if !limited {
			return depth
		}
		left := budget.Add(-int64(depth))
		if left >= 0 {
			return depth
		}
		return max(0, depth+int(left))
	}
	if arrivals != nil {
		for intended := range arrivals {
			if ctx.Err() != nil || (limited && take() == 0) {
				continue // drain so the scheduler can finish
			}
			fill(1)
			c.Do(ctx, reqs[:1], errs[:1])
			if ctx.Err() != nil {
				continue // interrupted by us, not failed by the server
			}
			rec.record(reqs[0].Op, time.Since(intended), errs[0])
		}
		return
	}
	for !stop.Load() && ctx.Err() == nil {
		n := take()
		if n == 0 {
			return
		}
		fill(n)
		t0 := time.Now()
		c.Do(ctx, reqs[:n], errs[:n])
		d := time.Since(t0)
		if ctx.Err() != nil {
			return // interrupted by us, not failed by the server
		}
		for j := range n {
			rec.record(reqs[j].Op, d, errs[j])
		}
	}
}

func (r *targetRun) result(cfg *Config) RunResult {
	res := RunResult{
		Target: r.t.Name(), Kind: r.t.Kind(), Addr: r.t.Addr(), ServerVersion: r.version,
		Mode: cfg.Mode(), Clients: cfg.Clients, Pipeline: cfg.Pipeline, OfferedRate: cfg.Rate,
		Workload: cfg.Workload, Seconds: r.elapsed.Seconds(), Errors: map[string]int64{},
		Intervals: r.ivals,
	}
	if !cfg.Quorum.IsZero() && TakesQuorum(r.t) {
		q := cfg.Quorum
		res.Quorum = &q
	}
	if cfg.Rate > 0 {
		res.Pipeline = 1
		res.Lag = &LagStats{Sent: r.lag.Sent, Late: r.lag.Late, MaxMs: ms(r.lag.Max)}
		if r.lag.Sent > 0 {
			res.Lag.MeanMs = ms(r.lag.Total / time.Duration(r.lag.Sent))
		}
	}
	var errTotal, conflictTotal int64
	for op := range numOps {
		var ne int64
		for code, n := range r.total.errs[op] {
			res.Errors[code] += n
			ne += n
		}
		errTotal += ne
		h := r.total.hist[op]
		if h.Count() == 0 && ne == 0 {
			continue
		}
		s := opStats(op.String(), h, ne, r.elapsed)
		s.Conflicts = r.total.conflicts[op]
		conflictTotal += s.Conflicts
		res.Ops = append(res.Ops, s)
	}
	all := r.total.all()
	tot := opStats("total", all, errTotal, r.elapsed)
	tot.Conflicts = conflictTotal
	res.Ops = append(res.Ops, tot)
	res.CDF = all.CDF(cdfQuantiles)
	res.hist = all
	return res
}

func opStats(name string, h *Histogram, errs int64, elapsed time.Duration) OpStats {
	s := OpStats{
		Op: name, Count: h.Count(), Errors: errs,
		P50Ms: ms(h.Quantile(0.5)), P90Ms: ms(h.Quantile(0.9)), P99Ms: ms(h.Quantile(0.99)),
		P999Ms: ms(h.Quantile(0.999)), MaxMs: ms(h.Max()),
	}
	if elapsed > 0 {
		s.OpsPerSec = float64(s.Count) / elapsed.Seconds()
	}
	return s
}

// sortedCodes returns the error codes of m, most frequent first.
func sortedCodes(m map[string]int64) []string {
	codes := make([]string, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	sort.Slice(codes, func(i, j int) bool {
		if m[codes[i]] != m[codes[j]] {
			return m[codes[i]] > m[codes[j]]
		}
		return codes[i] < codes[j]
	})
	return codes
}
