package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/bench"
	"github.com/fulcrumdb/fulcrum/internal/bench/plot"
	"github.com/fulcrumdb/fulcrum/internal/kv"
)

const benchUsage = `Usage:
  fulcrum bench --target NAME=KIND://HOST:PORT [--target ...] [flags]
  fulcrum bench compare A.json B.json

Drive one or more servers with a YCSB-style workload and report throughput
and latency percentiles per operation. KIND is resp (Fulcrum or any Redis
protocol server), http (Fulcrum's HTTP API) or etcd (an etcd v3 cluster:
linearizable Range reads, Put writes). Several targets are measured in
interleaved rounds so they share the machine's noise.

The mix is reads, writes, deletes (--delete-ratio) and compare-and-sets
(--cas-ratio): a CAS writes only if the key is still at the version the
client last saw (reading it first, within the CAS, if it saw none): PUT
with If-Match over http, a Txn on the ModRevision for etcd; resp has no
versions, so CASes need an http or etcd target. A CAS whose key moved is
counted as a cas_conflict, not an error.

HOST:PORT may be a comma-separated list: resp and http connect client i to
address i mod n (spreading clients over a cluster's nodes); etcd gives
every client all the endpoints and lets its balancer spread the requests.
Each client has its own connection; "etcd://...?conns=N" instead shares N
etcd clients among all the clients (HTTP/2 multiplexing, as etcd's own
benchmark tool does).

Load is closed loop (--concurrency clients, optionally pipelined) or open
loop (--rate requests/s, latency measured from each request's intended
start, so queueing is never hidden; the table says when the generator fell
behind). Go timers may wake ~1ms late on an idle machine and in open loop
that counts as latency: --spin 1ms trades a CPU for precise send times.
A list of concurrencies or rates sweeps the latency-vs-throughput curve.
--slo p99=5ms searches for the highest open-loop rate meeting the objective
(doubling from the first --rate, then bisecting; each probe runs --duration).

--w N and --r N set, on every request, how many replicas of an eventual
namespace must acknowledge a write and answer a read (0: the namespace's
own). resp sends FULCRUM.CONSISTENCY on each connection after NAMESPACE (a
server that refuses it, such as Redis, fails the run at connect); http
adds ?w=N to writes and deletes and ?r=N to reads; etcd has no such
setting and ignores them. A strong namespace ignores them, except that its
HTTP reads refuse ?r= (INVALID). They are recorded in the result (and as
the labels w and r unless --label gives those).

Every run is bounded (--duration or --ops per target and load point, plus
--warmup) and connects only to the --target addresses. Latencies are of
successful requests; failures are counted by error code.

"compare" prints the throughput and latency ratios of two --out results.

Examples:
  fulcrum bench --target fulcrum=resp://127.0.0.1:7379 \
      --target redis=resp://127.0.0.1:6379 --workload B --duration 20s \
      --plot out/ --out out/
  fulcrum bench --target fulcrum=resp://127.0.0.1:7379,127.0.0.1:7389 \
      --target etcd=etcd://127.0.0.1:2379,127.0.0.1:22379 \
      --read-ratio 0 --concurrency 1,16,64 --value-size 256
  fulcrum bench --target fulcrum=resp://127.0.0.1:7379 --namespace cache \
      --read-ratio 0 --w 2 --out out/
`

// BenchMain is "fulcrum bench".
type BenchMain struct {
	Stdout, Stderr io.Writer
	Notify         func(chan<- os.Signal)
	StopNotify     func(chan<- os.Signal)
	Args           []string // the command line, for the result file

	compare []string // "compare A B"

	cfg         bench.Config
	concurrency []int
	rates       []float64
	slo         *bench.SLO
	sloSteps    int
	outDir      string
	plotDir     string
	labels      map[string]string
	seedGiven   bool
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// ParseFlags parses the bench flags.
func (m *BenchMain) ParseFlags(ctx context.Context, args []string) error {
	m.Args = append([]string(nil), args...)
	cl := newCmdline("bench", benchUsage, m.Stdout, m.Stderr)
	var (
		targets, labels            listFlag
		workload, dist, conc, rate string
		readRatio                  optionalFloat
		deleteRatio, casRatio      float64
		theta                      float64
		slo                        string
		seed                       uint64
		quorum                     bench.Quorum
	)
	fs := cl.fs
	fs.Var(&targets, "target", "`NAME=KIND://HOST:PORT[,HOST:PORT...]` to drive (repeatable); KIND is resp, http or etcd")
	fs.Var(&labels, "label", "`KEY=VALUE` recorded in the result (repeatable), e.g. nodes=3: a driver sweeping cluster sizes runs one bench per size and compares the labelled results")
	fs.StringVar(&workload, "workload", "", "YCSB preset: A (50% reads, 50% updates), B (95/5) or C (read only)")
	fs.Var(&readRatio, "read-ratio", "`FRACTION` of reads, 0 to 1 (default: the preset's, else 0.95)")
	fs.Float64Var(&deleteRatio, "delete-ratio", 0, "fraction of deletes")
	fs.Float64Var(&casRatio, "cas-ratio", 0, "fraction of compare-and-sets: a write if the key is still at the version this client last saw, reading it first if never seen (http: PUT If-Match; etcd: Txn on ModRevision; not resp)")
	fs.StringVar(&dist, "dist", "", "key distribution: uniform, zipfian, latest, sequential (default zipfian)")
	fs.Float64Var(&theta, "theta", bench.DefaultTheta, "zipfian skew")
	fs.IntVar(&m.cfg.Workload.Keys, "keys", 10000, "keyspace size")
	fs.IntVar(&m.cfg.Workload.ValueSize, "value-size", 100, "value size in bytes")
	fs.StringVar(&m.cfg.Workload.Namespace, "namespace", "", "Fulcrum namespace (resp: NAMESPACE on each connection; http: the path; etcd: a key prefix NS/; default: the server's)")
	fs.StringVar(&m.cfg.Workload.KeyPrefix, "key-prefix", "bench:", "prefix of every key")
	fs.IntVar(&quorum.W, "w", 0, "eventual namespaces: replicas that must acknowledge each write, `N` (0: the namespace's W; resp: FULCRUM.CONSISTENCY W, http: ?w=)")
	fs.IntVar(&quorum.R, "r", 0, "eventual namespaces: replicas that answer each read, `N` (0: the namespace's R; resp: FULCRUM.CONSISTENCY R, http: ?r=)")
	fs.BoolVar(&m.cfg.Preload, "preload", true, "write every key once before measuring")
	fs.StringVar(&conc, "concurrency", "16", "clients (connections) per target; a list (1,4,16,64) sweeps them")
	fs.IntVar(&m.cfg.Pipeline, "pipeline", 1, "closed loop: requests pipelined per client (resp only)")
	fs.StringVar(&rate, "rate", "", "open loop: requests/s per target; a list (1000,5000) sweeps them")
	fs.DurationVar(&m.cfg.Spin, "spin", 0, "open loop: busy-wait the last `DURATION` before each send instead of sleeping (precise timing for a CPU)")
	fs.DurationVar(&m.cfg.Duration, "duration", 10*time.Second, "measured time per target and load point")
	fs.Int64Var(&m.cfg.Ops, "ops", 0, "closed loop: stop after this many operations per target instead of --duration")
	fs.IntVar(&m.cfg.Rounds, "rounds", 0, "interleaved rounds per load point (default: 1 for one target, up to 5 otherwise)")
	fs.DurationVar(&m.cfg.Warmup, "warmup", time.Second, "unrecorded warm-up per target before measuring")
	fs.DurationVar(&m.cfg.Interval, "interval", time.Second, "progress and histogram interval")
	fs.Uint64Var(&seed, "seed", 0, "random seed (default: random, printed)")
	fs.StringVar(&slo, "slo", "", "search the highest open-loop rate meeting `QUANTILE=LIMIT`, e.g. p99=5ms")
	fs.IntVar(&m.sloSteps, "slo-steps", 6, "bisection steps of the --slo search")
	fs.StringVar(&m.outDir, "out", "", "write the result as JSON and CSV into `DIR`")
	fs.StringVar(&m.plotDir, "plot", "", "write SVG charts into `DIR`")
	pos, err := cl.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 && pos[0] == "compare" {
		if len(pos) != 3 {
			return cl.usageErr("compare takes two result files")
		}
		m.compare = pos[1:]
		return nil
	}
	if len(pos) > 0 {
		return cl.usageErr("unexpected argument %q", pos[0])
	}
	if len(targets) == 0 {
		return cl.usageErr("at least one --target is required")
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"w", quorum.W}, {"r", quorum.R}} {
		if f.v < 0 || f.v > kv.MaxReplicas {
			return cl.usageErr("--%s %d: want 0 (the namespace's) to %d", f.name, f.v, kv.MaxReplicas)
		}
	}
	m.cfg.Quorum = quorum
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return cl.usageErr("--label %q: want KEY=VALUE", l)
		}
		if m.labels == nil {
			m.labels = make(map[string]string)
		}
		m.labels[k] = v
	}
	// The quorum is a label too unless the caller named it otherwise, so
	// that "bench compare" of a W=1 and a W=2 result says which is which.
	for _, f := range []struct {
		name string
		v    int
	}{{"w", quorum.W}, {"r", quorum.R}} {
		if _, given := m.labels[f.name]; f.v != 0 && !given {
			if m.labels == nil {
				m.labels = make(map[string]string)
			}
			m.labels[f.name] = strconv.Itoa(f.v)
		}
	}
	for _, s := range targets {
		t, err := bench.ParseTarget(s)
		if err != nil {
			return cl.usageErr("%v", err)
		}
		m.cfg.Targets = append(m.cfg.Targets, t)
	}
	w := bench.Workload{ReadRatio: 0.95, Dist: "zipfian"}
	if workload != "" {
		p, ok := bench.Presets[strings.ToUpper(workload)]
		if !ok {
			return cl.usageErr("unknown --workload %q (want A, B or C)", workload)
		}
		w = p
	}
	if readRatio.set {
		w.ReadRatio = readRatio.v
	}
	if dist != "" {
		w.Dist = dist
	}
	w.DeleteRatio, w.CASRatio, w.Theta = deleteRatio, casRatio, theta
	w.Keys, w.ValueSize = m.cfg.Workload.Keys, m.cfg.Workload.ValueSize
	w.Namespace, w.KeyPrefix = m.cfg.Workload.Namespace, m.cfg.Workload.KeyPrefix
	if err := w.Validate(); err != nil {
		return cl.usageErr("%v", err)
	}
	m.cfg.Workload = w
	for _, t := range m.cfg.Targets {
		if err := bench.CheckTarget(t, w); err != nil {
			return cl.usageErr("--cas-ratio: %v", err)
		}
	}
	if m.concurrency, err = parseInts(conc); err != nil {
		return cl.usageErr("--concurrency: %v", err)
	}
	m.cfg.Clients = m.concurrency[0]
	if len(m.concurrency) == 1 {
		m.concurrency = nil
	}
	if rate != "" {
		if m.rates, err = parseFloats(rate); err != nil {
			return cl.usageErr("--rate: %v", err)
		}
	}
	if slo != "" {
		s, err := bench.ParseSLO(slo)
		if err != nil {
			return cl.usageErr("%v", err)
		}
		m.slo = &s
	}
	switch {
	case m.cfg.Duration <= 0 && m.cfg.Ops <= 0:
		return cl.usageErr("--duration or --ops must be positive")
	case m.cfg.Ops > 0 && (len(m.rates) > 0 || m.slo != nil):
		return cl.usageErr("--ops is for closed loop; open loop (--rate, --slo) runs for --duration")
	case m.cfg.Pipeline < 1:
		return cl.usageErr("--pipeline must be at least 1")
	}
	if m.cfg.Ops > 0 {
		m.cfg.Duration = 0
	}
	if m.cfg.Rounds <= 0 {
		m.cfg.Rounds = 1
		if len(m.cfg.Targets) > 1 {
			// Rounds of at least 2s, at most 5.
			m.cfg.Rounds = max(1, min(5, int(m.cfg.Duration/(2*time.Second))))
			if m.cfg.Ops > 0 {
				m.cfg.Rounds = 5
			}
		}
	}
	m.seedGiven = seed != 0
	if seed == 0 {
		seed = rand.Uint64()
	}
	m.cfg.Seed = seed
	return nil
}

// optionalFloat is a float flag that knows whether it was given.
type optionalFloat struct {
	v   float64
	set bool
}

func (f *optionalFloat) String() string {
	if f == nil || !f.set {
		return ""
	}
	return strconv.FormatFloat(f.v, 'g', -1, 64)
}

func (f *optionalFloat) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return err
	}
	f.v, f.set = v, true
	return nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseFloats(s string) ([]float64, error) {
	var out []float64
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// Run runs the benchmark (or the comparison).
func (m *BenchMain) Run(ctx context.Context) error {
	if m.compare != nil {
		a, err := bench.ReadResult(m.compare[0])
		if err != nil {
			return err
		}
		b, err := bench.ReadResult(m.compare[1])
		if err != nil {
			return err
		}
		return bench.Compare(m.Stdout, a, b)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if m.Notify != nil {
		sig := make(chan os.Signal, 1)
		m.Notify(sig)
		defer m.StopNotify(sig)
		stopped := make(chan struct{})
		defer close(stopped)
		go func() {
			select {
			case <-sig:
				cancel()
			case <-stopped:
			}
		}()
	}
	mode := "closed"
	if len(m.rates) > 0 || m.slo != nil {
		mode = "open"
	}
	fmt.Fprintf(m.Stderr, "bench: seed %d, %s loop, %d target(s), %d round(s)%s\n", m.cfg.Seed, mode, len(m.cfg.Targets), m.cfg.Rounds, m.quorumHeader())
	p := newProgressPrinter(m.Stderr)
	m.cfg.Progress = p.print
	res := &bench.Result{
		Command: append([]string{"fulcrum", "bench"}, m.Args...),
		Version: version, Seed: m.cfg.Seed, Start: time.Now().UTC(), Machine: bench.ThisMachine(),
		Labels: m.labels,
	}
	var err error
	if m.slo != nil {
		start := 1000.0
		if len(m.rates) > 0 {
			start = m.rates[0]
		}
		res.SLO, err = bench.SearchSLO(ctx, m.cfg, *m.slo, start, m.sloSteps)
		for _, s := range res.SLO {
			res.Runs = append(res.Runs, s.Probes...)
		}
	} else {
		res.Runs, err = bench.Sweep(ctx, m.cfg, m.concurrency, m.rates)
	}
	p.done()
	if err != nil && len(res.Runs) == 0 {
		return err
	}
	if err != nil {
		res.Warnings = append(res.Warnings, "stopped early: "+err.Error())
	}
	if werr := bench.WriteTable(m.Stdout, res.Runs); werr != nil {
		return werr
	}
	for _, s := range res.SLO {
		fmt.Fprintf(m.Stdout, "%s: highest rate meeting %s: %.0f ops/s\n", s.Target, s.SLO, s.MaxRate)
	}
	if m.outDir != "" {
		if werr := m.writeOut(res); werr != nil {
			return werr
		}
	}
	if m.plotDir != "" {
		paths, perr := plot.WriteAll(m.plotDir, res.Runs)
		if perr != nil {
			return perr
		}
		fmt.Fprintf(m.Stderr, "bench: wrote %s\n", strings.Join(paths, ", "))
	}
	return err
}

// quorumHeader describes the quorum for the header line: "" when none is
// set, else ", w=2 r=default" and the targets that ignore it.
func (m *BenchMain) quorumHeader() string {
	if m.cfg.Quorum.IsZero() {
		return ""
	}
	var ignored []string
	for _, t := range m.cfg.Targets {
		if !bench.TakesQuorum(t) {
			ignored = append(ignored, t.Name())
		}
	}
	s := ", " + m.cfg.Quorum.String()
	if len(ignored) > 0 {
		s += " (ignored by " + strings.Join(ignored, ", ") + ")"
	}
	return s
}

func (m *BenchMain) writeOut(res *bench.Result) error {
	if err := os.MkdirAll(m.outDir, 0o755); err != nil {
		return err
	}
	base := filepath.Join(m.outDir, "bench-"+res.Start.Format("20060102T150405Z"))
	for _, f := range []struct {
		ext   string
		write func(io.Writer) error
	}{{".json", res.WriteJSON}, {".csv", res.WriteCSV}} {
		fh, err := os.Create(base + f.ext)
		if err != nil {
			return err
		}
		err = f.write(fh)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", base+f.ext, err)
		}
	}
	fmt.Fprintf(m.Stderr, "bench: wrote %s.json and %s.csv\n", base, base)
	return nil
}

// progressPrinter shows progress on stderr: one line rewritten in place on
// a terminal, plain lines otherwise (logs, CI).
type progressPrinter struct {
	w        io.Writer
	terminal bool
	dirty    bool
}

func newProgressPrinter(w io.Writer) *progressPrinter {
	p := &progressPrinter{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

func (p *progressPrinter) print(pr bench.Progress) {
	var line string
	if pr.Phase == "preload" {
		line = fmt.Sprintf("%s preload: %d/%d keys (%s)", pr.Target, pr.Done, pr.Total, pr.Elapsed.Round(time.Second))
	} else {
		line = fmt.Sprintf("%s %s %d/%d %5.1fs: %8.0f ops/s  p50 %-8s p99 %-8s errors %d", pr.Target, pr.Phase, pr.Round, pr.Rounds,
			pr.Elapsed.Seconds(), pr.OpsPS, pr.P50.Round(time.Microsecond), pr.P99.Round(time.Microsecond), pr.Errors)
	}
	if p.terminal {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.dirty = true
		return
	}
	fmt.Fprintln(p.w, line)
}

func (p *progressPrinter) done() {
	if p.dirty {
		fmt.Fprintln(p.w)
		p.dirty = false
	}
}
