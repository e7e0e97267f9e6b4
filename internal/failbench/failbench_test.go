package failbench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

const ms1 = time.Millisecond

func TestUnavailable(t *testing.T) {
	ops := []Op{
		{Seq: 0, Sent: 0, Done: 1 * ms1, Acked: true},
		{Seq: 1, Sent: 90 * ms1, Done: 110 * ms1, Acked: true}, // sent before the kill, acked after
		{Seq: 2, Sent: 101 * ms1, Done: 102 * ms1, Err: "refused"},
		{Seq: 3, Sent: 300 * ms1, Done: 950 * ms1, Acked: true},
		{Seq: 4, Sent: 900 * ms1, Done: 901 * ms1, Acked: true}, // sent later, acked first
	}
	for _, tc := range []struct {
		kill time.Duration
		want time.Duration
		ok   bool
	}{
		{kill: 100 * ms1, want: 801 * ms1, ok: true},
		{kill: 0, want: 1 * ms1, ok: true},
		{kill: time.Second, ok: false},
	} {
		got, ok := Unavailable(ops, tc.kill)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Unavailable(kill %v) = %v, %v; want %v, %v", tc.kill, got, ok, tc.want, tc.ok)
		}
	}
	if got, want := AckGap(ops), 791*ms1; got != want {
		t.Errorf("AckGap = %v, want %v", got, want)
	}
	if got := AckGap(ops[:1]); got != 0 {
		t.Errorf("AckGap of one ack = %v, want 0", got)
	}
}

func TestLost(t *testing.T) {
	acked := []Op{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}, {Key: "c", Value: "3"}}
	got := Lost(acked, map[string]string{"a": "1", "b": "other"})
	if len(got) != 2 || got[0].Key != "b" || got[1].Key != "c" {
		t.Fatalf("Lost = %+v, want b (other value) and c (absent)", got)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 20; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*ms1)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 10 * ms1}, {0.95, 19 * ms1}, {0.99, 20 * ms1}, {1, 20 * ms1}, {0.01, 1 * ms1}} {
		if got := Percentile(ds, tc.p); got != tc.want {
			t.Errorf("Percentile(1..20 ms, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := Percentile(nil, 0.5); got != 0 {
		t.Errorf("Percentile(empty) = %v, want 0", got)
	}
	if ds[0] != 20*ms1 {
		t.Errorf("Percentile sorted its argument")
	}
}

func TestSummaryAndTables(t *testing.T) {
	r := Result{Name: "x", Trials: []Trial{
		{N: 1, Victim: "node 1", Unavailable: 900 * ms1, Recovered: true, AckGap: 910 * ms1, Acked: 100, Failed: 3, Lost: 0, Reported: 0},
		{N: 2, Victim: "node 2", Unavailable: 2 * time.Second, Recovered: false, AckGap: 2 * time.Second, Acked: 50, Lost: 4, LostKeys: []string{"k1"}, Reported: -1, FirstErr: "UNAVAILABLE a|b"},
		{N: 3, Victim: "node 3", Unavailable: 1200 * ms1, Recovered: true, AckGap: 1300 * ms1, Acked: 10, Lost: 1, Reported: 4},
	}}
	s := r.Summary()
	want := Summary{Name: "x", Trials: 3, UnavailP50: 1200 * ms1, UnavailP99: 2 * time.Second, Max: 2 * time.Second,
		GapP50: 1300 * ms1, GapMax: 2 * time.Second, Unrecovered: 1, LostSum: 5, LostMax: 4, Reported: 4, Acked: 160, Failed: 3}
	if s != want {
		t.Fatalf("Summary = %+v\nwant %+v", s, want)
	}
	r.Trials[0].Reported = -1
	if got := r.Summary().Reported; got != -1 {
		t.Errorf("Summary.Reported with one unknown = %d, want -1", got)
	}
	tab := Table([]Summary{s})
	if !strings.Contains(tab, "| x | 3 | 1200 ms | 2000 ms | 2000 ms | 1300 ms / 2000 ms | 1 | 5 / 4 | 4 | 160 | 3 |") {
		t.Errorf("Table row missing:\n%s", tab)
	}
	tt := TrialTable(r)
	if !strings.Contains(tt, "| 2 | node 2 | > 2000 ms |") || !strings.Contains(tt, "4 (k1) | - |") || !strings.Contains(tt, "UNAVAILABLE a/b") {
		t.Errorf("TrialTable:\n%s", tt)
	}
}

func TestInfoField(t *testing.T) {
	info := "# Cluster\r\nfulcrum_primary_shards_local:1\r\nfulcrum_primary_lost_writes:17\r\n"
	if v, ok := infoField(info, lostWritesField); !ok || v != "17" {
		t.Errorf("infoField = %q, %v; want 17", v, ok)
	}
	if _, ok := infoField(info, "nope"); ok {
		t.Errorf("infoField found a missing field")
	}
}

// fakeSystem is an in-memory primary that refuses writes for down after
// each kill and then forgets the last lose writes it acknowledged before
// the kill, which it reports as lost (unless report is false).
type fakeSystem struct {
	down   time.Duration
	lose   int
	report bool
	never  bool // never recovers

	mu struct {
		sync.Mutex
		data     map[string]string
		order    []string
		upAt     time.Time
		reported uint64
		kills    int
		restarts int
	}
}

var (
	_ System       = (*fakeSystem)(nil)
	_ LostReporter = (*fakeSystem)(nil)
)

func newFake(down time.Duration, lose int) *fakeSystem {
	f := &fakeSystem{down: down, lose: lose, report: true}
	f.mu.data = map[string]string{}
	return f
}

type fakeClient struct{ f *fakeSystem }

func (c fakeClient) Set(ctx context.Context, key, value string) error {
	time.Sleep(ms1) // a round trip, in the bubble's virtual time
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	if time.Now().Before(c.f.mu.upAt) || (c.f.never && c.f.mu.kills > 0) {
		return errors.New("UNAVAILABLE failover under way")
	}
	c.f.mu.data[key] = value
	c.f.mu.order = append(c.f.mu.order, key)
	return nil
}

func (c fakeClient) Close() error { return nil }

func (f *fakeSystem) NewClient(int) (Client, error) { return fakeClient{f}, nil }
func (f *fakeSystem) Ready(context.Context) error   { return nil }

func (f *fakeSystem) KillPrimary(context.Context) (string, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	at := time.Now()
	f.mu.kills++
	f.mu.upAt = at.Add(f.down)
	n := min(f.lose, len(f.mu.order))
	for _, k := range f.mu.order[len(f.mu.order)-n:] {
		delete(f.mu.data, k)
	}
	f.mu.order = f.mu.order[:len(f.mu.order)-n]
	f.mu.reported = uint64(n)
	return fmt.Sprintf("fake %d", f.mu.kills), at, nil
}

func (f *fakeSystem) ReadBack(_ context.Context, keys []string) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for _, k := range keys {
		if v, ok := f.mu.data[k]; ok {
			out[k] = v
		}
	}
	return out, nil
}

func (f *fakeSystem) Restart(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.restarts++
	return nil
}

func (f *fakeSystem) ReportedLost(context.Context) (uint64, error) {
	if !f.report {
		return 0, ErrNotExposed
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.reported, nil
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Trials, cfg.Seed = 3, 7
	cfg.MaxUnavailable = 5 * time.Second
	return cfg
}

// TestRun runs trials against the fake in virtual time: the writer sees
// the outage, the lost writes and the reported count exactly.
func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(700*ms1, 3)
		res, err := Run(t.Context(), f, testConfig())
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Trials) != 3 || f.mu.restarts != 3 {
			t.Fatalf("got %d trials and %d restarts, want 3 and 3", len(res.Trials), f.mu.restarts)
		}
		for _, tr := range res.Trials {
			// The first write sent after the outage is at most one tick
			// (5 ms) and a round trip (1 ms) later.
			if !tr.Recovered || tr.Unavailable < 700*ms1 || tr.Unavailable > 706*ms1 {
				t.Errorf("trial %d: unavailable %v (recovered %v), want 700 to 706 ms", tr.N, tr.Unavailable, tr.Recovered)
			}
			if tr.Lost != 3 || tr.Reported != 3 || len(tr.LostKeys) != 3 {
				t.Errorf("trial %d: lost %d %v, reported %d; want 3, 3", tr.N, tr.Lost, tr.LostKeys, tr.Reported)
			}
			// 1 to 2 s of warm-up, 0.7 s down, 1 s of settling, at 200/s.
			if tr.Acked < 200*2 || tr.Acked > 200*3 || tr.Failed == 0 {
				t.Errorf("trial %d: %d acked, %d failed", tr.N, tr.Acked, tr.Failed)
			}
			if !strings.HasPrefix(tr.FirstErr, "UNAVAILABLE") {
				t.Errorf("trial %d: first error %q", tr.N, tr.FirstErr)
			}
		}
		s := res.Summary()
		if s.LostSum != 9 || s.Reported != 9 || s.Unrecovered != 0 {
			t.Errorf("summary %+v", s)
		}
	})
}

func TestRunNotExposed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(100*ms1, 0)
		f.report = false
		cfg := testConfig()
		cfg.Trials = 1
		res, err := Run(t.Context(), f, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if tr := res.Trials[0]; tr.Reported != -1 || tr.Lost != 0 {
			t.Errorf("trial: reported %d lost %d, want -1 and 0", tr.Reported, tr.Lost)
		}
	})
}

func TestRunNoRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(0, 0)
		f.never = true
		cfg := testConfig()
		cfg.MaxUnavailable = 2 * time.Second
		res, err := Run(t.Context(), f, cfg)
		if !errors.Is(err, ErrNoRecovery) {
			t.Fatalf("Run: %v, want ErrNoRecovery", err)
		}
		if len(res.Trials) != 1 || res.Trials[0].Recovered || res.Trials[0].Unavailable != 2*time.Second {
			t.Fatalf("trials %+v, want one, not recovered, unavailable 2s", res.Trials)
		}
	})
}

func TestRunIsolateNeedsIsolator(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.Isolate = 100 * ms1
		_, err := Run(t.Context(), newFake(0, 0), cfg)
		if !errors.Is(err, ErrNoFirewall) {
			t.Fatalf("Run with Isolate on a fake: %v, want ErrNoFirewall", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, mut := range []func(*Config){
		func(c *Config) { c.Trials = 0 },
		func(c *Config) { c.Rate = 0 },
		func(c *Config) { c.InFlight = 0 },
		func(c *Config) { c.Settle = -1 },
		func(c *Config) { c.MaxUnavailable = 0 },
	} {
		c := DefaultConfig()
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("Validate accepted %+v", c)
		}
	}
}
