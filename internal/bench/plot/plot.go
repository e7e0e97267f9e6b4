package plot

import (
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/fulcrumdb/fulcrum/internal/bench"
)

// Size of every chart.
const (
	width  = 8 * vg.Inch
	height = 5 * vg.Inch
)

// minMs stands in for zero latencies (an empty run), which a log scale
// cannot show: the histograms' resolution, 1µs.
const minMs = 0.001

// palette gives each series a distinct colour.
var palette = []color.Color{
	color.RGBA{R: 31, G: 119, B: 180, A: 255},
	color.RGBA{R: 255, G: 127, B: 14, A: 255},
	color.RGBA{R: 44, G: 160, B: 44, A: 255},
	color.RGBA{R: 214, G: 39, B: 40, A: 255},
	color.RGBA{R: 148, G: 103, B: 189, A: 255},
	color.RGBA{R: 140, G: 86, B: 75, A: 255},
}

// WriteAll writes latency-throughput.svg, throughput-concurrency.svg (when
// there are closed-loop runs) and latency-cdf.svg into dir and returns
// their paths.
func WriteAll(dir string, runs []bench.RunResult) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	charts := []struct {
		name string
		draw func(io.Writer, []bench.RunResult) error
	}{
		{"latency-throughput.svg", LatencyThroughput},
		{"throughput-concurrency.svg", ThroughputConcurrency},
		{"latency-cdf.svg", LatencyCDF},
	}
	var paths []string
	for _, c := range charts {
		if c.name == "throughput-concurrency.svg" && !hasClosed(runs) {
			continue
		}
		p := filepath.Join(dir, c.name)
		f, err := os.Create(p)
		if err != nil {
			return paths, err
		}
		err = c.draw(f, runs)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return paths, fmt.Errorf("%s: %w", p, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func hasClosed(runs []bench.RunResult) bool {
	for _, r := range runs {
		if r.Mode == "closed" {
			return true
		}
	}
	return false
}

// byTarget groups runs by target, keeping first-seen order.
func byTarget(runs []bench.RunResult) ([]string, map[string][]bench.RunResult) {
	var names []string
	m := map[string][]bench.RunResult{}
	for _, r := range runs {
		if _, ok := m[r.Target]; !ok {
			names = append(names, r.Target)
		}
		m[r.Target] = append(m[r.Target], r)
	}
	return names, m
}

// line adds a line with points to p under name.
func line(p *plot.Plot, name string, xys plotter.XYs, i int, dashes []vg.Length) error {
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	c := palette[i%len(palette)]
	l.Color, pts.Color = c, c
	l.Dashes = dashes
	p.Add(l, pts)
	p.Legend.Add(name, l, pts)
	return nil
}

// load orders the runs of a sweep: offered rate, else clients in flight.
func load(r bench.RunResult) float64 {
	if r.Mode == "open" {
		return r.OfferedRate
	}
	return float64(r.Clients * max(r.Pipeline, 1))
}

// plainTicks labels the default ticks with %g, not a fixed two decimals.
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'g', -1, 64)
		}
	}
	return ts
}

func save(p *plot.Plot, w io.Writer) error {
	c := vgsvg.New(width, height)
	p.Draw(draw.New(c))
	_, err := c.WriteTo(w)
	return err
}

// LatencyThroughput draws p50, p99 and p999 latency against achieved
// throughput, one line per target and percentile ("fulcrum p99").
func LatencyThroughput(w io.Writer, runs []bench.RunResult) error {
	p, err := latencyThroughputPlot(runs)
	if err != nil {
		return err
	}
	return save(p, w)
}

func latencyThroughputPlot(runs []bench.RunResult) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Latency vs throughput"
	p.X.Label.Text = "achieved throughput (ops/s)"
	p.X.Tick.Marker = plainTicks{}
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	names, m := byTarget(runs)
	dashes := map[string][]vg.Length{"p50": nil, "p99": {vg.Points(5), vg.Points(3)}, "p999": {vg.Points(1), vg.Points(3)}}
	for i, name := range names {
		rs := m[name]
		// Points follow the offered load, so a server whose throughput
		// falls under overload shows the curve bending back.
		sort.SliceStable(rs, func(a, b int) bool { return load(rs[a]) < load(rs[b]) })
		for _, q := range []string{"p50", "p99", "p999"} {
			xys := make(plotter.XYs, 0, len(rs))
			for _, r := range rs {
				t := r.Total()
				d, _ := t.Quantile(q)
				xys = append(xys, plotter.XY{X: t.OpsPerSec, Y: max(d.Seconds()*1000, minMs)})
			}
			if err := line(p, name+" "+q, xys, i, dashes[q]); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// ThroughputConcurrency draws achieved throughput against the number of
// clients of the closed-loop runs, one line per target.
func ThroughputConcurrency(w io.Writer, runs []bench.RunResult) error {
	p, err := throughputConcurrencyPlot(runs)
	if err != nil {
		return err
	}
	return save(p, w)
}

func throughputConcurrencyPlot(runs []bench.RunResult) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Throughput vs concurrency (closed loop)"
	p.X.Label.Text = "clients"
	p.Y.Label.Text = "throughput (ops/s)"
	p.Y.Tick.Marker = plainTicks{}
	p.Legend.Top = true
	p.Legend.Left = true
	names, m := byTarget(runs)
	for i, name := range names {
		var xys plotter.XYs
		for _, r := range m[name] {
			if r.Mode == "closed" {
				xys = append(xys, plotter.XY{X: float64(r.Clients * r.Pipeline), Y: r.Total().OpsPerSec})
			}
		}
		if len(xys) == 0 {
			continue
		}
		sort.Slice(xys, func(a, b int) bool { return xys[a].X < xys[b].X })
		if err := line(p, name, xys, i, nil); err != nil {
			return nil, err
		}
	}
	p.Y.Min = 0 // from zero, so differences are not exaggerated
	return p, nil
}

// LatencyCDF draws the latency distribution of each run: the fraction of
// requests at or under each latency. Runs of a sweep are labelled with
// their load ("fulcrum c=16").
func LatencyCDF(w io.Writer, runs []bench.RunResult) error {
	p, err := latencyCDFPlot(runs)
	if err != nil {
		return err
	}
	return save(p, w)
}

func latencyCDFPlot(runs []bench.RunResult) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Latency CDF"
	p.X.Label.Text = "latency (ms, log scale)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Label.Text = "fraction of requests"
	p.Legend.Top = false
	p.Legend.Left = false
	names, m := byTarget(runs)
	i := 0
	for _, name := range names {
		for _, r := range m[name] {
			label := name
			if len(m[name]) > 1 {
				label += " " + r.Load()
			}
			xys := make(plotter.XYs, 0, len(r.CDF))
			for _, c := range r.CDF {
				xys = append(xys, plotter.XY{X: max(c.Ms, minMs), Y: c.Quantile})
			}
			if len(xys) == 0 {
				continue
			}
			if err := line(p, label, xys, i, nil); err != nil {
				return nil, err
			}
			i++
		}
	}
	return p, nil
}
