package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// RunResult is one target measured at one load point.
type RunResult struct {
	Target string `json:"target"`
	Kind   string `json:"kind"`
	Addr   string `json:"addr"`
	// ServerVersion is the server's own report ("fulcrum dev", "redis 7.2.4").
	ServerVersion string           `json:"server_version,omitempty"`
	Mode          string           `json:"mode"` // closed or open
	Clients       int              `json:"clients"`
	Pipeline      int              `json:"pipeline"`
	OfferedRate   float64          `json:"offered_rate,omitempty"`
	Workload      Workload         `json:"workload"`
	Quorum        *Quorum          `json:"quorum,omitempty"` // W and R sent with each request (nil: the namespace's)
	Seconds       float64          `json:"seconds"`          // measured time
	Ops           []OpStats        `json:"ops"`              // per operation, then "total"
	Errors        map[string]int64 `json:"errors"`           // by code
	Lag           *LagStats        `json:"lag,omitempty"`
	Intervals     []Interval       `json:"intervals"`
	CDF           []CDFPoint       `json:"cdf"`

	hist *Histogram // all operations; nil when read from a file
}

// Total returns the "total" row.
func (r *RunResult) Total() OpStats {
	for _, o := range r.Ops {
		if o.Op == "total" {
			return o
		}
	}
	return OpStats{Op: "total"}
}

// OpStats summarizes one operation type. Latencies are in milliseconds and
// cover completed requests; failed ones are counted in Errors. Conflicts
// counts the CASes among Count whose precondition did not hold.
type OpStats struct {
	Op        string  `json:"op"`
	Count     int64   `json:"count"`
	Errors    int64   `json:"errors"`
	Conflicts int64   `json:"conflicts,omitempty"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50Ms     float64 `json:"p50_ms"`
	P90Ms     float64 `json:"p90_ms"`
	P99Ms     float64 `json:"p99_ms"`
	P999Ms    float64 `json:"p999_ms"`
	MaxMs     float64 `json:"max_ms"`
}

// Quantile returns the latency at a named quantile ("p50", "p90", "p99",
// "p999", "max").
func (o OpStats) Quantile(name string) (time.Duration, bool) {
	var v float64
	switch name {
	case "p50":
		v = o.P50Ms
	case "p90":
		v = o.P90Ms
	case "p99":
		v = o.P99Ms
	case "p999":
		v = o.P999Ms
	case "max":
		v = o.MaxMs
	default:
		return 0, false
	}
	return time.Duration(v * float64(time.Millisecond)), true
}

// LagStats reports how far the open-loop generator fell behind.
type LagStats struct {
	Sent   int64   `json:"sent"`
	Late   int64   `json:"late"` // handed off more than 1ms after the intended time
	MaxMs  float64 `json:"max_ms"`
	MeanMs float64 `json:"mean_ms"`
}

// Interval is one reporting interval of a run.
type Interval struct {
	Round     int     `json:"round"`
	EndS      float64 `json:"end_s"` // measured seconds at the interval's end
	DurS      float64 `json:"dur_s"` // the interval's length (the last of a round is shorter)
	OpsPerSec float64 `json:"ops_per_sec"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	Errors    int64   `json:"errors"`
}

// CDFPoint is one point of a latency distribution.
type CDFPoint struct {
	Quantile float64 `json:"q"`
	Ms       float64 `json:"ms"`
}

// Machine describes where a result was measured.
type Machine struct {
	Hostname  string `json:"hostname"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
}

// ThisMachine returns the current machine's facts.
func ThisMachine() Machine {
	h, _ := os.Hostname()
	return Machine{Hostname: h, Cores: runtime.NumCPU(), GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH}
}

// Result is the file written for one invocation.
type Result struct {
	Command []string  `json:"command"`
	Version string    `json:"version"`
	Seed    uint64    `json:"seed"`
	Start   time.Time `json:"start"`
	Machine Machine   `json:"machine"`
	// Labels are what the caller said about the run (--label), e.g. the
	// cluster size of one step of a node-count sweep.
	Labels   map[string]string `json:"labels,omitempty"`
	Runs     []RunResult       `json:"runs"`
	SLO      []SLOResult       `json:"slo,omitempty"`
	Warnings []string          `json:"warnings,omitempty"`
}

// WriteJSON writes r as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadResult reads a file written by WriteJSON.
func ReadResult(path string) (*Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// WriteCSV writes one row per run and operation.
func (r *Result) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	// New columns go last (conflicts, then w and r) so that scripts
	// reading columns by number still work.
	_ = cw.Write([]string{"target", "kind", "mode", "clients", "pipeline", "offered_rate", "op", "count", "errors", "ops_per_sec", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "conflicts", "w", "r"})
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	for _, run := range r.Runs {
		var q Quorum // 0: the namespace's own
		if run.Quorum != nil {
			q = *run.Quorum
		}
		for _, o := range run.Ops {
			_ = cw.Write([]string{run.Target, run.Kind, run.Mode, strconv.Itoa(run.Clients), strconv.Itoa(run.Pipeline),
				f(run.OfferedRate), o.Op, strconv.FormatInt(o.Count, 10), strconv.FormatInt(o.Errors, 10),
				f(o.OpsPerSec), f(o.P50Ms), f(o.P90Ms), f(o.P99Ms), f(o.P999Ms), f(o.MaxMs), strconv.FormatInt(o.Conflicts, 10),
				strconv.Itoa(q.W), strconv.Itoa(q.R)})
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteTable prints the final table: per run and operation, throughput,
// latency percentiles and errors (and CAS conflicts when a run has CASes),
// then the error codes and generator lag.
func WriteTable(w io.Writer, runs []RunResult) error {
	withCAS := false
	for _, r := range runs {
		withCAS = withCAS || r.Workload.CASRatio > 0
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "target\tload\top\tops/s\tp50\tp90\tp99\tp999\tmax\terrors\t"
	if withCAS {
		head += "cas_conflict\t"
	}
	fmt.Fprintln(tw, head)
	for _, r := range runs {
		for _, o := range r.Ops {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t", r.Target, r.Load(), o.Op, o.OpsPerSec,
				fmtMs(o.P50Ms), fmtMs(o.P90Ms), fmtMs(o.P99Ms), fmtMs(o.P999Ms), fmtMs(o.MaxMs), o.Errors)
			if withCAS {
				fmt.Fprintf(tw, "%d\t", o.Conflicts)
			}
			fmt.Fprintln(tw)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range runs {
		if len(r.Errors) > 0 {
			var parts []string
			for _, c := range sortedCodes(r.Errors) {
				parts = append(parts, fmt.Sprintf("%s=%d", c, r.Errors[c]))
			}
			fmt.Fprintf(w, "%s %s errors: %s\n", r.Target, r.Load(), strings.Join(parts, " "))
		}
		if r.Lag != nil && r.Lag.Late > 0 {
			fmt.Fprintf(w, "%s %s: generator fell behind: %d of %d requests late (>1ms), max lag %s, mean %s\n",
				r.Target, r.Load(), r.Lag.Late, r.Lag.Sent, fmtMs(r.Lag.MaxMs), fmtMs(r.Lag.MeanMs))
		}
	}
	return nil
}

// Load describes the run's load model: "c=16" or "c=16x4" (pipelined) for
// closed loop, "rate=5000" for open loop.
func (r *RunResult) Load() string {
	if r.Mode == "open" {
		return fmt.Sprintf("rate=%g", r.OfferedRate)
	}
	if r.Pipeline > 1 {
		return fmt.Sprintf("c=%dx%d", r.Clients, r.Pipeline)
	}
	return fmt.Sprintf("c=%d", r.Clients)
}

func fmtMs(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 1:
		return fmt.Sprintf("%.0fµs", v*1000)
	case v < 100:
		return fmt.Sprintf("%.2fms", v)
	}
	return fmt.Sprintf("%.0fms", v)
}

// Compare prints, for each pair of runs and each operation both have, the
// throughput and latency ratios b/a. Runs are paired by target and load
// ("fulcrum c=16" with "fulcrum c=16"); if no pair matches, as when
// comparing two targets' files, they are paired in order.
func Compare(w io.Writer, a, b *Result) error {
	type pair struct{ a, b RunResult }
	var pairs []pair
	for _, ra := range a.Runs {
		for _, rb := range b.Runs {
			if ra.Target == rb.Target && ra.Load() == rb.Load() {
				pairs = append(pairs, pair{ra, rb})
				break
			}
		}
	}
	if len(pairs) == 0 {
		for i := range min(len(a.Runs), len(b.Runs)) {
			pairs = append(pairs, pair{a.Runs[i], b.Runs[i]})
		}
	}
	if len(pairs) == 0 {
		return fmt.Errorf("nothing to compare: %d and %d runs", len(a.Runs), len(b.Runs))
	}
	if len(a.Labels) > 0 || len(b.Labels) > 0 {
		fmt.Fprintf(w, "labels: A %s, B %s\n", formatLabels(a.Labels), formatLabels(b.Labels))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "a\tb\top\tops/s a\tops/s b\tb/a\tp50 b/a\tp99 b/a\tp999 b/a\t")
	ratio := func(x, y float64) string {
		if x == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", y/x)
	}
	for _, p := range pairs {
		for _, oa := range p.a.Ops {
			for _, ob := range p.b.Ops {
				if oa.Op != ob.Op {
					continue
				}
				fmt.Fprintf(tw, "%s %s\t%s %s\t%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t\n",
					p.a.Target, p.a.Load(), p.b.Target, p.b.Load(), oa.Op,
					oa.OpsPerSec, ob.OpsPerSec, ratio(oa.OpsPerSec, ob.OpsPerSec),
					ratio(oa.P50Ms, ob.P50Ms), ratio(oa.P99Ms, ob.P99Ms), ratio(oa.P999Ms, ob.P999Ms))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(pairs) < max(len(a.Runs), len(b.Runs)) {
		fmt.Fprintf(w, "(%d pairs compared: a has %d runs, b has %d)\n", len(pairs), len(a.Runs), len(b.Runs))
	}
	return nil
}

// formatLabels renders labels as k=v pairs in key order.
func formatLabels(l map[string]string) string {
	if len(l) == 0 {
		return "(none)"
	}
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, " ")
}
