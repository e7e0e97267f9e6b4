package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fulcrumdb/fulcrum/internal/config"
	"github.com/fulcrumdb/fulcrum/internal/server"
	"github.com/fulcrumdb/fulcrum/internal/server/servertest"
)

func startFulcrum(t *testing.T) *server.Server { return servertest.Start(t) }

// startRedis runs redis-server on a free port, or skips the test.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not on PATH: skipping the Redis end-to-end run")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s not answering after 10s", addr)
		}
		time.Sleep(20 * time.Millisecond) // polling for readiness, with a deadline
	}
	return addr
}

func checkRun(t *testing.T, r RunResult, wantOps ...string) {
	t.Helper()
	tot := r.Total()
	if tot.Count == 0 || tot.OpsPerSec <= 0 {
		t.Errorf("%s %s: got no successful operations: %+v", r.Target, r.Load(), tot)
	}
	if len(r.Errors) > 0 {
		t.Errorf("%s %s: got errors %v, want none", r.Target, r.Load(), r.Errors)
	}
	if tot.P50Ms <= 0 || tot.P50Ms > tot.P99Ms || tot.P99Ms > tot.MaxMs {
		t.Errorf("%s: percentiles out of order: %+v", r.Target, tot)
	}
	for _, name := range wantOps {
		found := false
		for _, o := range r.Ops {
			found = found || (o.Op == name && o.Count > 0)
		}
		if !found {
			t.Errorf("%s: no %q operations in %+v", r.Target, name, r.Ops)
		}
	}
	if len(r.Intervals) == 0 || len(r.CDF) == 0 {
		t.Errorf("%s: got %d intervals and %d CDF points, want some", r.Target, len(r.Intervals), len(r.CDF))
	}
}

func TestEndToEndFulcrum(t *testing.T) {
	srv := startFulcrum(t)
	resp, err := ParseTarget("fulcrum-resp=resp://" + srv.RESPAddr())
	if err != nil {
		t.Fatal(err)
	}
	web, err := ParseTarget("fulcrum-http=http://" + srv.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	ctx := context.Background()

	t.Run("closed", func(t *testing.T) {
		w := Presets["A"]
		w.Keys, w.ValueSize, w.Namespace, w.DeleteRatio, w.ReadRatio = 300, 64, "benchns", 0.05, 0.45
		runs, err := Run(ctx, Config{
			Targets: []Target{resp, web}, Workload: w, Clients: 2, Pipeline: 1,
			Duration: time.Second, Rounds: 2, Interval: 250 * time.Millisecond, Preload: true, Seed: seed,
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 2 {
			t.Fatalf("got %d results, want 2", len(runs))
		}
		for _, r := range runs {
			checkRun(t, r, "read", "write", "delete")
			if !strings.HasPrefix(r.ServerVersion, "fulcrum ") {
				t.Errorf("%s: server version %q, want fulcrum ...", r.Target, r.ServerVersion)
			}
			if r.Seconds < 0.9 || r.Seconds > 3 {
				t.Errorf("%s: measured %.2fs, want about 1s", r.Target, r.Seconds)
			}
		}
		// Both protocols wrote into the namespace, not the default one.
		if n := srv.Store().Count("benchns"); n < 200 {
			t.Errorf("namespace benchns holds %d keys, want most of 300", n)
		}
		if n := srv.Store().Count("default"); n != 0 {
			t.Errorf("namespace default holds %d keys, want 0", n)
		}
	})

	t.Run("ops-pipelined", func(t *testing.T) {
		w := Presets["B"]
		w.Keys, w.ValueSize = 100, 16
		runs, err := Run(ctx, Config{
			Targets: []Target{resp}, Workload: w, Clients: 2, Pipeline: 8,
			Ops: 1001, Rounds: 3, Seed: seed,
		})
		if err != nil {
			t.Fatal(err)
		}
		tot := runs[0].Total()
		if tot.Count+tot.Errors != 1001 {
			t.Errorf("got %d operations + %d errors, want exactly 1001", tot.Count, tot.Errors)
		}
		checkRun(t, runs[0], "read")
	})

	t.Run("open", func(t *testing.T) {
		w := Presets["C"]
		w.Keys = 100
		runs, err := Run(ctx, Config{
			Targets: []Target{resp}, Workload: w, Clients: 2, Rate: 400,
			Duration: time.Second, Preload: true, Seed: seed,
		})
		if err != nil {
			t.Fatal(err)
		}
		r := runs[0]
		checkRun(t, r, "read")
		if r.Lag == nil || r.Lag.Sent != 400 {
			t.Fatalf("lag: got %+v, want 400 arrivals sent", r.Lag)
		}
		if tot := r.Total(); tot.Count+tot.Errors != r.Lag.Sent {
			t.Errorf("got %d operations + %d errors, want every arrival (%d) measured", tot.Count, tot.Errors, r.Lag.Sent)
		}
	})

	t.Run("interrupted", func(t *testing.T) {
		w := Presets["C"]
		w.Keys = 50
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		// Cancel at the first progress report of the measured phase: the
		// 10-minute run stops, and what was measured is still returned.
		runs, err := Run(ctx, Config{
			Targets: []Target{resp}, Workload: w, Clients: 1, Duration: 10 * time.Minute,
			Interval: 50 * time.Millisecond, Seed: seed,
			Progress: func(p Progress) {
				if p.Phase == "run" {
					cancel()
				}
			},
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got error %v, want context.Canceled", err)
		}
		if len(runs) != 1 || runs[0].Total().Count == 0 {
			t.Fatalf("got %d results %+v, want the partial measurement", len(runs), runs)
		}
		if errs := runs[0].Errors; len(errs) > 0 {
			t.Errorf("interruption counted as errors: %v", errs)
		}
	})

	t.Run("slo", func(t *testing.T) {
		w := Presets["C"]
		w.Keys = 50
		// No server answers within 1µs: the search finds no rate, after
		// the first probe and the bisection steps.
		res, err := SearchSLO(ctx, Config{
			Targets: []Target{resp}, Workload: w, Clients: 1, Duration: 200 * time.Millisecond, Seed: seed,
		}, SLO{Quantile: "p50", Limit: time.Microsecond}, 200, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 || res[0].MaxRate != 0 || len(res[0].Probes) != 3 {
			t.Fatalf("got %+v, want max rate 0 after 3 probes", res)
		}
	})
}

func TestEndToEndRedis(t *testing.T) {
	addr := startRedis(t)
	tg, err := ParseTarget("redis=resp://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	w := Presets["A"]
	w.Keys = 200
	runs, err := Run(context.Background(), Config{
		Targets: []Target{tg}, Workload: w, Clients: 2, Pipeline: 4,
		Duration: time.Second, Preload: true, Seed: seed,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, runs[0], "read", "write")
	if !strings.HasPrefix(runs[0].ServerVersion, "redis ") {
		t.Errorf("server version %q, want redis ...", runs[0].ServerVersion)
	}
}

func TestEndToEndSeveralAddresses(t *testing.T) {
	srvs := []*server.Server{startFulcrum(t), startFulcrum(t)}
	tg, err := ParseTarget("two=resp://" + srvs[0].RESPAddr() + "," + srvs[1].RESPAddr())
	if err != nil {
		t.Fatal(err)
	}
	// Client i talks to address i mod 2: client 2 writes to the first
	// server, client 3 to the second.
	ctx := context.Background()
	for client := 2; client < 4; client++ {
		c, err := tg.Connect(ctx, ConnOptions{Namespace: "spread"}, client)
		if err != nil {
			t.Fatal(err)
		}
		errs := make([]error, 1)
		c.Do(ctx, []Request{{Op: OpWrite, Key: fmt.Appendf(nil, "k%d", client), Value: []byte("v")}}, errs)
		c.Close()
		if errs[0] != nil {
			t.Fatal(errs[0])
		}
	}
	for i, s := range srvs {
		if n := s.Store().Count("spread"); n != 1 {
			t.Errorf("server %d holds %d keys, want 1", i, n)
		}
	}
}

func TestEndToEndErrorsCounted(t *testing.T) {
	srv := startFulcrum(t)
	for _, spec := range []string{"f-http=http://" + srv.HTTPAddr(), "f-resp=resp://" + srv.RESPAddr()} {
		tg, err := ParseTarget(spec)
		if err != nil {
			t.Fatal(err)
		}
		// Values over the server's limit are refused with TOO_LARGE: every
		// write fails, and the failures are counted by code, not dropped.
		w := Workload{ReadRatio: 0, Keys: 10, ValueSize: int(config.Default().Limits.MaxValueSize) + 1}
		runs, err := Run(context.Background(), Config{Targets: []Target{tg}, Workload: w, Clients: 1, Ops: 20, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if got := runs[0].Errors["TOO_LARGE"]; got != 20 {
			t.Errorf("%s: TOO_LARGE errors: got %d (all: %v), want 20", spec, got, runs[0].Errors)
		}
		if tot := runs[0].Total(); tot.Errors != 20 || tot.Count != 0 {
			t.Errorf("%s: total: got %d ok + %d errors, want 0 + 20", spec, tot.Count, tot.Errors)
		}
	}
}
