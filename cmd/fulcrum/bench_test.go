package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/bench"
	"github.com/fulcrumdb/fulcrum/internal/server"
	"github.com/fulcrumdb/fulcrum/internal/server/servertest"
)

func startBenchNode(t *testing.T) *server.Server { return servertest.Start(t) }

func TestBenchSweepOutPlotCompare(t *testing.T) {
	srv := startBenchNode(t)
	dir := t.TempDir()
	m, stdout, stderr := testMain(t)
	code := m.Run(context.Background(), []string{"bench",
		"--target", "resp=resp://" + srv.RESPAddr(), "--target", "http=http://" + srv.HTTPAddr(),
		"--workload", "A", "--keys", "200", "--concurrency", "1,2", "--duration", "400ms",
		"--warmup", "0", "--interval", "200ms", "--seed", "7", "--out", dir, "--plot", dir, "--label", "nodes=1"})
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	out := stdout.String()
	for _, want := range []string{"target", "p999", "resp", "http", "c=1", "c=2", "read", "write", "total"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr.String(), "seed 7") {
		t.Errorf("stderr does not print the seed:\n%s", stderr)
	}
	jsons, _ := filepath.Glob(filepath.Join(dir, "bench-*.json"))
	csvs, _ := filepath.Glob(filepath.Join(dir, "bench-*.csv"))
	svgs, _ := filepath.Glob(filepath.Join(dir, "*.svg"))
	if len(jsons) != 1 || len(csvs) != 1 || len(svgs) != 3 {
		t.Fatalf("got json %v csv %v svg %v, want 1, 1 and 3 files", jsons, csvs, svgs)
	}
	data, err := os.ReadFile(jsons[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"command"`, `"go_version"`, `"cores"`, `"--workload"`, `"seed": 7`, `"nodes": "1"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("result file lacks %s", want)
		}
	}

	m, stdout, stderr = testMain(t)
	if code := m.Run(context.Background(), []string{"bench", "compare", jsons[0], jsons[0]}); code != 0 {
		t.Fatalf("compare: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout.String(), "1.00x") {
		t.Errorf("comparing a file with itself: want 1.00x ratios, got:\n%s", stdout)
	}
}

func TestBenchFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench"},
		{"bench", "--target", "nokind"},
		{"bench", "--target", "x=resp://127.0.0.1:1", "--workload", "Z"},
		{"bench", "--target", "x=resp://127.0.0.1:1", "--concurrency", "0"},
		{"bench", "--target", "x=resp://127.0.0.1:1", "--read-ratio", "2"},
		{"bench", "--target", "x=resp://127.0.0.1:1", "--slo", "p42=1ms"},
		{"bench", "--target", "x=resp://127.0.0.1:1", "--cas-ratio", "0.5"},
		{"bench", "--target", "x=http://127.0.0.1:1", "--read-ratio", "0.6", "--cas-ratio", "0.5"},
		{"bench", "compare", "only-one.json"},
		{"bench", "--target", "x=resp://127.0.0.1:1", "--label", "novalue"},
		{"bench", "--target", "x=resp://127.0.0.1:1", "--w", "-1"},
		{"bench", "--target", "x=http://127.0.0.1:1", "--r", "-1"},
		{"bench", "--target", "x=resp://127.0.0.1:1", "--w", "8"},
		{"bench", "--target", "x=resp://127.0.0.1:1", "--r", "two"},
	} {
		m, _, stderr := testMain(t)
		if code := m.Run(context.Background(), args); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %s)", args, code, stderr)
		}
	}
}

func TestBenchUnreachableTarget(t *testing.T) {
	m, _, stderr := testMain(t)
	// Port 1 on loopback refuses connections: the run fails at connect.
	code := m.Run(context.Background(), []string{"bench", "--target", "x=resp://127.0.0.1:1", "--duration", "100ms"})
	if code != 1 || !strings.Contains(stderr.String(), "connect x") {
		t.Errorf("exit %d, stderr %q; want 1 and a connect error", code, stderr)
	}
}

// TestBenchQuorum: --w and --r reach both front ends (a lone node takes
// 1), are shown in the header, recorded per run and labelled; an explicit
// --label wins over the default one.
func TestBenchQuorum(t *testing.T) {
	srv := startBenchNode(t)
	dir := t.TempDir()
	m, stdout, stderr := testMain(t)
	code := m.Run(context.Background(), []string{"bench",
		"--target", "resp=resp://" + srv.RESPAddr(), "--target", "http=http://" + srv.HTTPAddr(),
		"--read-ratio", "0.5", "--keys", "50", "--ops", "100", "--warmup", "0", "--seed", "3",
		"--w", "1", "--r", "1", "--label", "r=one", "--out", dir})
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr.String(), "w=1 r=1") {
		t.Errorf("header lacks the quorum:\n%s", stderr)
	}
	jsons, _ := filepath.Glob(filepath.Join(dir, "bench-*.json"))
	if len(jsons) != 1 {
		t.Fatalf("got result files %v, want 1", jsons)
	}
	res, err := bench.ReadResult(jsons[0])
	if err != nil {
		t.Fatal(err)
	}
	if res.Labels["w"] != "1" || res.Labels["r"] != "one" {
		t.Errorf("labels %v, want w=1 (default) and r=one (given)", res.Labels)
	}
	if len(res.Runs) != 2 {
		t.Fatalf("got %d runs, want 2", len(res.Runs))
	}
	for _, r := range res.Runs {
		if r.Quorum == nil || *r.Quorum != (bench.Quorum{W: 1, R: 1}) {
			t.Errorf("%s: recorded quorum %v, want w=1 r=1", r.Target, r.Quorum)
		}
		if len(r.Errors) > 0 {
			t.Errorf("%s: errors %v, want none", r.Target, r.Errors)
		}
	}
}
