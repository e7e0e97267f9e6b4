package bench

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
)

func run(target string, clients int, opsPerSec, p99 float64) RunResult {
	return RunResult{Target: target, Mode: "closed", Clients: clients, Pipeline: 1,
		Ops: []OpStats{{Op: "read", Count: 10, OpsPerSec: opsPerSec, P50Ms: 1, P99Ms: p99, P999Ms: 2 * p99}}}
}

func TestCompare(t *testing.T) {
	a := &Result{Runs: []RunResult{run("fulcrum", 1, 100, 1), run("fulcrum", 4, 200, 2)}}
	b := &Result{Runs: []RunResult{run("fulcrum", 4, 300, 1)}}
	var out bytes.Buffer
	if err := Compare(&out, a, b); err != nil {
		t.Fatal(err)
	}
	// Paired by target and load: c=4 with c=4.
	if s := out.String(); !strings.Contains(s, "fulcrum c=4  fulcrum c=4") || !strings.Contains(s, "1.50x") || !strings.Contains(s, "0.50x") {
		t.Errorf("got:\n%s\nwant the c=4 runs paired with ops/s 1.50x and p99 0.50x", s)
	}
	// Different targets: paired in order.
	out.Reset()
	r := &Result{Runs: []RunResult{run("redis", 1, 50, 4)}}
	if err := Compare(&out, a, r); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "fulcrum c=1  redis c=1") || !strings.Contains(s, "0.50x") || !strings.Contains(s, "4.00x") {
		t.Errorf("got:\n%s\nwant fulcrum c=1 paired with redis c=1", s)
	}
	if err := Compare(&out, a, &Result{}); err == nil {
		t.Error("comparing with an empty result: got nil error")
	}
	// Labels (one step of a node-count sweep each) are shown.
	out.Reset()
	a.Labels, b.Labels = map[string]string{"nodes": "3", "zone": "x"}, map[string]string{"nodes": "5"}
	if err := Compare(&out, a, b); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "labels: A nodes=3 zone=x, B nodes=5") {
		t.Errorf("got:\n%s\nwant the labels line", s)
	}
}

func TestWriteCSVAndTable(t *testing.T) {
	r := &Result{Runs: []RunResult{run("fulcrum", 4, 200, 2)}}
	r.Runs[0].Errors = map[string]int64{"UNAVAILABLE": 3, "TIMEOUT": 1}
	var buf bytes.Buffer
	if err := r.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0][0] != "target" || rows[1][0] != "fulcrum" || rows[1][6] != "read" {
		t.Errorf("got rows %q, want a header and one fulcrum read row", rows)
	}
	buf.Reset()
	if err := WriteTable(&buf, r.Runs); err != nil {
		t.Fatal(err)
	}
	if s := buf.String(); !strings.Contains(s, "errors: UNAVAILABLE=3 TIMEOUT=1") {
		t.Errorf("table does not list the error codes, most frequent first:\n%s", s)
	}
}
