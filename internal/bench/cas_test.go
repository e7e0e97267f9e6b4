package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestPickOpRatios(t *testing.T) {
	const draws = 200000
	for _, w := range []Workload{
		{ReadRatio: 0.5},
		{ReadRatio: 0.5, CASRatio: 0.5},
		{ReadRatio: 0.4, DeleteRatio: 0.1, CASRatio: 0.3},
		{CASRatio: 1},
		{DeleteRatio: 0.05, CASRatio: 0.05},
	} {
		want := [numOps]float64{
			OpRead: w.ReadRatio, OpDelete: w.DeleteRatio, OpCAS: w.CASRatio,
			OpWrite: 1 - w.ReadRatio - w.DeleteRatio - w.CASRatio,
		}
		var got [numOps]int
		rng := rand.New(rand.NewPCG(42, 1))
		for range draws {
			got[w.pickOp(rng)]++
		}
		for op := range numOps {
			frac := float64(got[op]) / draws
			// 5 standard deviations of a binomial proportion, plus exact
			// zeros for the ops not in the mix.
			tol := 5 * math.Sqrt(want[op]*(1-want[op])/draws)
			if want[op] == 0 && got[op] != 0 || math.Abs(frac-want[op]) > tol {
				t.Errorf("mix %+v: %s got %.4f of draws, want %.4f ± %.4f", w, op, frac, want[op], tol)
			}
		}
	}
}

func TestPickOpSeeded(t *testing.T) {
	w := Workload{ReadRatio: 0.4, DeleteRatio: 0.1, CASRatio: 0.3}
	draw := func(seed uint64) []Op {
		rng := rand.New(rand.NewPCG(seed, 1))
		ops := make([]Op, 1000)
		for i := range ops {
			ops[i] = w.pickOp(rng)
		}
		return ops
	}
	a, b, c := draw(7), draw(7), draw(8)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Error("the same seed drew different operation sequences")
	}
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Error("different seeds drew the same operation sequence")
	}
}

func TestWorkloadValidateCAS(t *testing.T) {
	for _, tc := range []struct {
		w    Workload
		want string // "" = valid
	}{
		{Workload{ReadRatio: 0.5, CASRatio: 0.5, Keys: 1}, ""},
		{Workload{ReadRatio: 0.3, DeleteRatio: 0.3, CASRatio: 0.4, Keys: 1}, ""},
		{Workload{CASRatio: -0.1, Keys: 1}, "cas ratio"},
		{Workload{ReadRatio: 0.5, DeleteRatio: 0.2, CASRatio: 0.4, Keys: 1}, "read+delete+cas"},
	} {
		err := tc.w.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: got %v, want %q", tc.w, err, tc.want)
		}
	}
}

func TestCheckTargetCAS(t *testing.T) {
	cas := Workload{ReadRatio: 0.5, CASRatio: 0.5, Keys: 10}
	for spec, ok := range map[string]bool{
		"r=resp://127.0.0.1:1": false,
		"h=http://127.0.0.1:1": true,
		"e=etcd://127.0.0.1:1": true,
	} {
		tg, err := ParseTarget(spec)
		if err != nil {
			t.Fatal(err)
		}
		err = CheckTarget(tg, cas)
		if ok != (err == nil) {
			t.Errorf("%s with CASes: got %v, want ok=%t", spec, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "cas needs an http or etcd target") {
			t.Errorf("%s: error %q does not say what cas needs", spec, err)
		}
		if err := CheckTarget(tg, Workload{ReadRatio: 1, Keys: 10}); err != nil {
			t.Errorf("%s without CASes: got %v, want nil", spec, err)
		}
	}
	// Run refuses before connecting (port 1 would refuse the connection).
	resp, _ := ParseTarget("r=resp://127.0.0.1:1")
	_, err := Run(context.Background(), Config{Targets: []Target{resp}, Workload: cas, Ops: 1})
	if err == nil || !strings.Contains(err.Error(), "cas needs") {
		t.Errorf("Run of CASes on resp: got %v, want the cas error", err)
	}
}

func TestVersionCacheBounded(t *testing.T) {
	var nilCache *versionCache
	nilCache.set([]byte("k"), seen{version: 1, exists: true}) // records nothing, no panic
	if _, ok := nilCache.get([]byte("k")); ok {
		t.Error("a nil cache returned a version")
	}
	c := newVersionCache()
	for i := range 3 * maxSeen {
		c.set(fmt.Appendf(nil, "k%d", i), seen{version: uint64(i), exists: true})
	}
	if len(c.m) != maxSeen {
		t.Errorf("got %d entries, want the bound %d", len(c.m), maxSeen)
	}
	last := fmt.Appendf(nil, "k%d", 3*maxSeen-1)
	if s, ok := c.get(last); !ok || s.version != 3*maxSeen-1 {
		t.Errorf("the last key set: got %+v %t, want its version", s, ok)
	}
	c.forget(last)
	if _, ok := c.get(last); ok {
		t.Error("a forgotten key is still there")
	}
}

// checkCASSemantics drives two connections of tg through the CAS cases:
// create on a never-seen key (read first), conflicts after the other
// client wrote, a retry (read again), a CAS on the version the client
// itself wrote and a create after a delete.
func checkCASSemantics(t *testing.T, tg Target, ns string) {
	t.Helper()
	ctx := context.Background()
	a, err := tg.Connect(ctx, ConnOptions{Namespace: ns}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := tg.Connect(ctx, ConnOptions{Namespace: ns}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	key := fmt.Appendf(nil, "cas-%d", time.Now().UnixNano())
	do := func(c Conn, op Op, val string) error {
		errs := make([]error, 1)
		c.Do(ctx, []Request{{Op: op, Key: key, Value: []byte(val)}}, errs)
		return errs[0]
	}
	for i, step := range []struct {
		c    Conn
		op   Op
		val  string
		want error
	}{
		{a, OpCAS, "a1", nil},         // never seen: read (absent), create
		{b, OpCAS, "b1", nil},         // never seen: read a1's version, set
		{a, OpCAS, "a2", ErrConflict}, // a's version (a1) is stale
		{a, OpCAS, "a3", nil},         // a forgot it: read again, then set
		{b, OpWrite, "b2", nil},       // b notes the version of its own write
		{a, OpCAS, "a4", ErrConflict}, // the key moved under a
		{b, OpCAS, "b3", nil},         // on the version b wrote
		{b, OpDelete, "", nil},        // b deletes ...
		{b, OpCAS, "b4", nil},         // ... and, having seen it absent, creates
		{a, OpCAS, "a5", nil},         // a re-reads (it forgot at a4), sets
		{b, OpCAS, "b5", ErrConflict}, // b's b4 is stale
		{b, OpRead, "", nil},          // b reads the new version
		{b, OpCAS, "b6", nil},         // and sets on it
	} {
		err := do(step.c, step.op, step.val)
		if !errors.Is(err, step.want) || (step.want == nil && err != nil) {
			t.Fatalf("step %d (%s %q): got %v, want %v", i, step.op, step.val, err, step.want)
		}
	}
}

// casWorkload is a small contended mix with every operation.
func casWorkload(ns string) Workload {
	return Workload{ReadRatio: 0.4, DeleteRatio: 0.1, CASRatio: 0.3, Keys: 20, ValueSize: 32, Dist: "zipfian", Namespace: ns, KeyPrefix: "mix:"}
}

// checkCASRun checks a run of casWorkload: every operation type reported,
// conflicts counted among the CASes and in the total, none as errors.
func checkCASRun(t *testing.T, r RunResult) {
	t.Helper()
	checkRun(t, r, "read", "write", "delete", "cas")
	var cas OpStats
	for _, o := range r.Ops {
		if o.Op == "cas" {
			cas = o
		} else if o.Op != "total" && o.Conflicts != 0 {
			t.Errorf("%s: %d conflicts, want them only on cas", o.Op, o.Conflicts)
		}
	}
	if cas.Conflicts > cas.Count || r.Total().Conflicts != cas.Conflicts {
		t.Errorf("cas %d ops, %d conflicts; total conflicts %d: want conflicts <= ops and the total equal", cas.Count, cas.Conflicts, r.Total().Conflicts)
	}
	t.Logf("%s: %d CASes, %d conflicts", r.Target, cas.Count, cas.Conflicts)
	res := &Result{Runs: []RunResult{r}}
	var csv, table bytes.Buffer
	if err := res.WriteCSV(&csv); err != nil {
		t.Fatal(err)
	}
	if err := WriteTable(&table, res.Runs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(csv.String(), ",conflicts,w,r\n") || !strings.Contains(csv.String(), ",cas,") {
		t.Errorf("CSV lacks the cas row or the conflicts column:\n%s", csv.String())
	}
	if !strings.Contains(table.String(), "cas_conflict") {
		t.Errorf("table lacks the cas_conflict column:\n%s", table.String())
	}
}

func TestEndToEndCASHTTP(t *testing.T) {
	srv := startFulcrum(t)
	web, err := ParseTarget("fulcrum-http=http://" + srv.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("semantics", func(t *testing.T) { checkCASSemantics(t, web, "") })
	t.Run("mix", func(t *testing.T) {
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)
		runs, err := Run(context.Background(), Config{
			Targets: []Target{web}, Workload: casWorkload("casns"), Clients: 4,
			Duration: 700 * time.Millisecond, Interval: 200 * time.Millisecond, Preload: true, Seed: seed,
		})
		if err != nil {
			t.Fatal(err)
		}
		checkCASRun(t, runs[0])
	})
}

func TestEndToEndCASEtcd(t *testing.T) {
	ep := startEtcd(t)
	tg, err := ParseTarget("etcd=etcd://" + ep + "?conns=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("semantics", func(t *testing.T) { checkCASSemantics(t, tg, "casns") })
	t.Run("mix", func(t *testing.T) {
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)
		runs, err := Run(context.Background(), Config{
			Targets: []Target{tg}, Workload: casWorkload("casns"), Clients: 4,
			Duration: 700 * time.Millisecond, Interval: 200 * time.Millisecond, Preload: true, Seed: seed,
		})
		if err != nil {
			t.Fatal(err)
		}
		checkCASRun(t, runs[0])
	})
}
