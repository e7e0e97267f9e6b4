package plot

import (
	"bytes"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/bench"
)

// sweep fakes a closed-loop sweep of two targets.
func sweep() []bench.RunResult {
	var runs []bench.RunResult
	for ti, name := range []string{"fulcrum", "redis"} {
		for i, c := range []int{1, 4, 16} {
			f := float64(ti+1) * float64(i+1)
			runs = append(runs, bench.RunResult{
				Target: name, Mode: "closed", Clients: c, Pipeline: 1,
				Ops: []bench.OpStats{{Op: "total", Count: 1000, OpsPerSec: 1000 * f, P50Ms: 0.1 * f, P90Ms: 0.2 * f, P99Ms: 0.5 * f, P999Ms: 2 * f, MaxMs: 5 * f}},
				CDF: []bench.CDFPoint{{Quantile: 0, Ms: 0}, {Quantile: 0.5, Ms: 0.1 * f}, {Quantile: 0.99, Ms: 0.5 * f}, {Quantile: 1, Ms: 5 * f}},
			})
		}
	}
	return runs
}

// svgTexts parses an SVG document and returns its text elements' content.
func svgTexts(t *testing.T, r io.Reader) []string {
	t.Helper()
	dec := xml.NewDecoder(r)
	var texts []string
	inText, root := false, ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Local
			}
			inText = el.Name.Local == "text"
		case xml.EndElement:
			inText = false
		case xml.CharData:
			if inText {
				texts = append(texts, strings.TrimSpace(string(el)))
			}
		}
	}
	if root != "svg" {
		t.Fatalf("root element: got %q, want svg", root)
	}
	return texts
}

func TestChartsAreSVGWithSeries(t *testing.T) {
	runs := sweep()
	for _, tc := range []struct {
		name string
		draw func(io.Writer, []bench.RunResult) error
		want []string
	}{
		{"latency-throughput", LatencyThroughput, []string{"Latency vs throughput", "fulcrum p50", "fulcrum p99", "fulcrum p999", "redis p50", "redis p99", "redis p999"}},
		{"throughput-concurrency", ThroughputConcurrency, []string{"Throughput vs concurrency (closed loop)", "fulcrum", "redis"}},
		{"latency-cdf", LatencyCDF, []string{"Latency CDF", "fulcrum c=1", "fulcrum c=16", "redis c=4"}},
	} {
		var buf bytes.Buffer
		if err := tc.draw(&buf, runs); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		texts := svgTexts(t, &buf)
		for _, w := range tc.want {
			found := false
			for _, s := range texts {
				found = found || s == w
			}
			if !found {
				t.Errorf("%s: no text %q in %q", tc.name, w, texts)
			}
		}
	}
}

func TestWriteAll(t *testing.T) {
	dir := t.TempDir()
	paths, err := WriteAll(dir, sweep())
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 {
		t.Fatalf("got %d files %v, want 3", len(paths), paths)
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		svgTexts(t, f)
		f.Close()
	}
	// Open-loop runs only: no throughput-vs-concurrency chart.
	runs := sweep()
	for i := range runs {
		runs[i].Mode, runs[i].OfferedRate = "open", float64(1000*(i+1))
	}
	paths, err = WriteAll(filepath.Join(dir, "open"), runs)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 {
		t.Errorf("open loop: got files %v, want 2", paths)
	}
}
