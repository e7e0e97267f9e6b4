package node

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/leaderless"
	"github.com/fulcrumdb/fulcrum/internal/merkle"
	"github.com/fulcrumdb/fulcrum/internal/transport"
	"github.com/fulcrumdb/fulcrum/internal/transport/simnet"
	"github.com/fulcrumdb/fulcrum/internal/versionvec"
)

const (
	testGrace = 5 * time.Second
	weakNS    = "weakns" // a namespace the sweep knows from Config.Namespaces only
)

// withCollection turns on tombstone collection with testGrace (one
// second of hints, so the grace is above its floor), sweeping every sweep
// (negative: no loop), over every shard of testNS with anti-entropy whose
// loop runs every ae (negative: no loop), and over weakNS.
func withCollection(ids []uint64, sweep, ae time.Duration) func(*Config) {
	return func(cfg *Config) {
		withAntiEntropy(ids, ae)(cfg)
		cfg.Preference = fixedPreference(ids)
		cfg.HintWindow = time.Second
		cfg.RequestTimeout = 200 * time.Millisecond
		cfg.TombstoneGrace = testGrace
		cfg.TombstoneSweepInterval = sweep
		cfg.Namespaces = func() []string { return []string{weakNS} }
	}
}

// collectAll runs a sweep on each of ids and returns how many each
// collected.
func (c *cluster) collectAll(ids ...uint64) []int {
	c.t.Helper()
	var out []int
	for _, id := range ids {
		n, err := c.engines[id].CollectTombstonesOnce(context.Background())
		if err != nil {
			c.t.Fatalf("sweep on node %d: %v", id, err)
		}
		out = append(out, n)
	}
	return out
}

// checkTrees checks that every node's incrementally maintained tree of
// every shard equals one rebuilt from its store.
func checkTrees(t *testing.T, c *cluster, depth int) {
	t.Helper()
	for _, id := range c.ids {
		entries, _, _ := c.stores[id].Scan(context.Background(), testNS, nil, 0)
		for s := range testShards {
			inc, err := c.engines[id].builtTree(context.Background(), treeID{testNS, s})
			if err != nil {
				t.Fatal(err)
			}
			fresh, _ := merkle.New(depth)
			for _, e := range entries {
				if testShard(testNS, e.Key) == s {
					fresh.Add(merkle.KeyHash(e.Key), merkle.ItemHash(e.Key, e.Value))
				}
			}
			if !inc.Equal(fresh) {
				t.Errorf("node %d shard %d: incremental tree root %x, rebuilt %x; want equal", id, s, inc.Root(), fresh.Root())
			}
		}
	}
}

// buildTrees has every node build its trees (a first anti-entropy round),
// so that later changes go through the incremental path.
func (c *cluster) buildTrees() {
	c.t.Helper()
	for _, id := range c.ids {
		if err := c.engines[id].AntiEntropyOnce(context.Background()); err != nil {
			c.t.Fatalf("first anti-entropy round on node %d: %v", id, err)
		}
	}
}

func del(e *Engine, key string, opts WriteOptions) (WriteResult, error) {
	return e.Delete(context.Background(), testNS, []byte(key), opts)
}

// A deleted key's tombstone stays on every replica until the grace period
// has passed since the delete, to the nanosecond, and is then collected
// on each: gone from the store and the Merkle tree, counted in Stats and
// in the Prometheus collector. Live keys stay; weak namespaces (known from
// Config.Namespaces only) are swept too.
func TestTombstonesCollectedAfterGrace(t *testing.T) {
	ids := []uint64{1, 2, 3}
	inBubble(t, 41, 3, withCollection(ids, -1, -1), func(t *testing.T, c *cluster) {
		c.buildTrees()
		all := WriteOptions{N: 3, W: 3}
		for _, k := range []string{"k", "live"} {
			if _, err := put(c.engines[1], k, "v", all); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.engines[2].Put(context.Background(), weakNS, []byte("w"), []byte("v"), all); err != nil {
			t.Fatal(err)
		}
		res, err := del(c.engines[1], "k", all)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.engines[2].Delete(context.Background(), weakNS, []byte("w"), all); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()

		// One nanosecond before the grace has passed: nothing collected.
		time.Sleep(time.Until(time.Unix(0, res.Timestamp.WallNanos).Add(testGrace)) - time.Nanosecond)
		if got := c.collectAll(ids...); fmt.Sprint(got) != "[0 0 0]" {
			t.Fatalf("collected before the grace passed: got %v, want [0 0 0]", got)
		}
		for _, id := range ids {
			if st, ok := c.state(id, "k"); !ok || !st.Absent() || st.Len() == 0 {
				t.Fatalf("node %d before the grace: got %v (found %v), want the tombstone", id, st, ok)
			}
		}
		time.Sleep(time.Nanosecond)
		if got := c.collectAll(ids...); fmt.Sprint(got) != "[2 2 2]" {
			t.Fatalf("collected once the grace passed: got %v, want [2 2 2] (k and the weak key)", got)
		}
		for _, id := range ids {
			if st, ok := c.state(id, "k"); ok {
				t.Errorf("node %d: got state %v of the deleted key, want none", id, st)
			}
			if _, ok, _ := c.stores[id].Get(context.Background(), weakNS, []byte("w")); ok {
				t.Errorf("node %d: the weak namespace's tombstone is still stored", id)
			}
			if st, ok := c.state(id, "live"); !ok || st.Absent() {
				t.Errorf("node %d: live key got %v (found %v), want its value", id, st, ok)
			}
			if r, err := get(c.engines[id], "k", ReadOptions{N: 3, R: 3}); err != nil || r.Found {
				t.Errorf("node %d read R=3: got %s, %v; want absent", id, describe(r), err)
			}
			if s := c.engines[id].Stats(); s.TombstonesCollected != 2 || s.TombstonesRefused != 0 {
				t.Errorf("node %d stats: got collected %d refused %d, want 2 and 0", id, s.TombstonesCollected, s.TombstonesRefused)
			}
		}
		checkTrees(t, c, 6)
		before := c.engines[1].Stats().AntiEntropyRanges
		c.buildTrees()
		if got := c.engines[1].Stats().AntiEntropyRanges - before; got != 0 {
			t.Errorf("anti-entropy ranges after every replica collected: got %d, want 0", got)
		}
		if got := c.collectAll(ids...); fmt.Sprint(got) != "[0 0 0]" {
			t.Errorf("second sweep: got %v, want [0 0 0]", got)
		}

		reg := prometheus.NewPedanticRegistry()
		if err := reg.Register(c.engines[1].Collector()); err != nil {
			t.Fatalf("register collector: %v", err)
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("gather: %v", err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			if strings.Contains(mf.GetName(), "tombstones") {
				got[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		if want := map[string]float64{"fulcrum_leaderless_tombstones_collected_total": 2, "fulcrum_leaderless_tombstones_refused_total": 0}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("metrics: got %v, want %v", got, want)
		}
	})
}

// The sweep loop started by New collects on its own, and not early.
func TestTombstoneSweepLoop(t *testing.T) {
	ids := []uint64{1, 2, 3}
	inBubble(t, 42, 3, withCollection(ids, time.Second, 200*time.Millisecond), func(t *testing.T, c *cluster) {
		if _, err := put(c.engines[1], "k", "v", WriteOptions{N: 3, W: 3}); err != nil {
			t.Fatal(err)
		}
		if _, err := del(c.engines[2], "k", WriteOptions{N: 3, W: 3}); err != nil {
			t.Fatal(err)
		}
		deleted := time.Now()
		time.Sleep(testGrace - 500*time.Millisecond) // the loop has swept four times
		for _, id := range ids {
			if st, ok := c.state(id, "k"); !ok || st.Len() == 0 {
				t.Fatalf("node %d %v after the delete: got %v, want the tombstone", id, time.Since(deleted), st)
			}
		}
		waitFor(t, 3*time.Second, "every replica collected", func() bool {
			for _, id := range ids {
				if _, ok := c.state(id, "k"); ok {
					return false
				}
			}
			return true
		})
		if d := time.Since(deleted); d < testGrace {
			t.Errorf("collected %v after the delete, want at least %v", d, testGrace)
		}
	})
}

// After a replica collects a tombstone, its next write of the key starts
// from no state; its dot must still be above the deleted write's, or the
// replicas that have not collected yet (holding the tombstone, whose
// context covers the old dots) would take it for a write they have seen
// and drop it. The write, made with the other replicas cut off, reaches
// them through anti-entropy and is read everywhere.
func TestWriteAfterCollectionNotDominated(t *testing.T) {
	ids := []uint64{1, 2, 3}
	inBubble(t, 43, 3, withCollection(ids, -1, -1), func(t *testing.T, c *cluster) {
		all := WriteOptions{N: 3, W: 3}
		for i := range 3 { // a few writes, so node 1's counter is well above 1
			if _, err := put(c.engines[1], "k", fmt.Sprint("old", i), all); err != nil {
				t.Fatal(err)
			}
		}
		gone, err := del(c.engines[1], "k", all)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(testGrace + time.Second)
		if got := c.collectAll(1); got[0] != 1 {
			t.Fatalf("node 1 collected %d, want 1", got[0])
		}
		stale, _ := c.state(2, "k") // not collected: still the tombstone

		c.net.Isolate(1)
		res, err := put(c.engines[1], "k", "new", WriteOptions{N: 3, W: 1})
		if err != nil {
			t.Fatalf("put after collection: %v", err)
		}
		if res.Dot.Counter <= gone.Dot.Counter || stale.Context().Covers(res.Dot) {
			t.Fatalf("write after collection got dot %v, want one above the delete's %v and not covered by node 2's %v", res.Dot, gone.Dot, stale)
		}
		c.net.Heal()
		if err := c.engines[1].AntiEntropyOnce(context.Background()); err != nil {
			t.Fatalf("anti-entropy: %v", err)
		}
		synctest.Wait()
		for _, id := range ids {
			if r, err := get(c.engines[id], "k", ReadOptions{N: 3, R: 1}); err != nil || describe(r) != `"new"` {
				t.Errorf("node %d R=1 read: got %s, %v; want \"new\"", id, describe(r), err)
			}
		}
		checkConverged(t, c, []string{"k"}, map[string]versionvec.Sibling{"k": {Dot: res.Dot, Timestamp: res.Timestamp, Value: []byte("new")}})
		// Nothing left to collect: the key is live.
		if got := c.collectAll(ids...); fmt.Sprint(got) != "[0 0 0]" {
			t.Errorf("sweep after the new write: got %v, want [0 0 0]", got)
		}
	})
}

// Replicas collect at different times. One that has collected refuses the
// tombstone a slower one sends back (anti-entropy both ways), so the two
// do not collect it in turns for ever; once the slower one sweeps they
// agree, and anti-entropy finds nothing left to exchange.
func TestCollectionConvergesAcrossReplicas(t *testing.T) {
	ids := []uint64{1, 2, 3}
	inBubble(t, 44, 3, withCollection(ids, -1, -1), func(t *testing.T, c *cluster) {
		c.buildTrees()
		if _, err := put(c.engines[1], "k", "v", WriteOptions{N: 3, W: 3}); err != nil {
			t.Fatal(err)
		}
		if _, err := del(c.engines[1], "k", WriteOptions{N: 3, W: 3}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(testGrace + time.Second)
		c.collectAll(1)
		for _, id := range []uint64{2, 1} { // 2 pushes to 1; 1 pulls from 2
			if err := c.engines[id].AntiEntropyOnce(context.Background()); err != nil {
				t.Fatalf("anti-entropy on node %d: %v", id, err)
			}
		}
		if _, ok := c.state(1, "k"); ok {
			t.Errorf("node 1 stored the collected tombstone again")
		}
		if _, ok := c.state(2, "k"); !ok {
			t.Errorf("node 2 lost its tombstone without sweeping")
		}
		if got := c.engines[1].Stats().TombstonesRefused; got < 2 {
			t.Errorf("node 1 tombstones refused: got %d, want at least 2 (pushed, then pulled)", got)
		}
		c.collectAll(2, 3)
		checkTrees(t, c, 6)
		before := c.engines[1].Stats().AntiEntropyRanges
		c.buildTrees()
		if got := c.engines[1].Stats().AntiEntropyRanges - before; got != 0 {
			t.Errorf("anti-entropy ranges after every replica collected: got %d, want 0", got)
		}
	})
}

// A replica that missed the delete and comes back within the grace period
// gets the tombstone (anti-entropy), and after everyone has collected the
// key stays deleted: collection does not resurrect it.
func TestRejoinWithinGraceNotResurrected(t *testing.T) {
	ids := []uint64{1, 2, 3}
	inBubble(t, 45, 3, withCollection(ids, time.Second, 200*time.Millisecond), func(t *testing.T, c *cluster) {
		if _, err := put(c.engines[1], "k", "v", WriteOptions{N: 3, W: 3}); err != nil {
			t.Fatal(err)
		}
		c.net.Isolate(3)
		if _, err := del(c.engines[1], "k", WriteOptions{N: 3, W: 2}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(testGrace / 2)
		if st, _ := c.state(3, "k"); st.Absent() {
			t.Fatalf("node 3 got %v while cut off, want the old value", st)
		}
		c.net.Heal()
		time.Sleep(testGrace) // anti-entropy and sweeps run
		waitFor(t, 5*time.Second, "every replica collected", func() bool {
			for _, id := range ids {
				if _, ok := c.state(id, "k"); ok {
					return false
				}
			}
			return true
		})
		time.Sleep(time.Second) // more anti-entropy rounds
		for _, id := range ids {
			if r, err := get(c.engines[id], "k", ReadOptions{N: 3, R: 3, Repair: leaderless.RepairBlocking}); err != nil || r.Found {
				t.Errorf("node %d read: got %s, %v; want absent", id, describe(r), err)
			}
			if st, ok := c.state(id, "k"); ok {
				t.Errorf("node %d: got state %v, want none", id, st)
			}
		}
	})
}

// The limit of the grace period, pinned so the documentation stays true:
// a replica away longer than the grace brings a deleted value back once
// the others have collected the tombstone. The operator must wipe such a
// replica before it rejoins.
func TestAwayPastGraceResurrects(t *testing.T) {
	ids := []uint64{1, 2, 3}
	inBubble(t, 46, 3, withCollection(ids, -1, -1), func(t *testing.T, c *cluster) {
		if _, err := put(c.engines[1], "k", "v", WriteOptions{N: 3, W: 3}); err != nil {
			t.Fatal(err)
		}
		c.net.Isolate(3)
		if _, err := del(c.engines[1], "k", WriteOptions{N: 3, W: 2}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(testGrace + time.Second)
		c.collectAll(1, 2)
		c.net.Heal()
		if err := c.engines[3].AntiEntropyOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		if r, err := get(c.engines[1], "k", ReadOptions{N: 3, R: 1}); err != nil || describe(r) != `"v"` {
			t.Errorf("node 1 read: got %s, %v; want the resurrected \"v\" (if this changed, update docs/eventual.md)", describe(r), err)
		}
	})
}

// Seeded runs of writes and deletes over several grace periods, with one
// node cut off now and then (never as long as the grace), anti-entropy
// and sweeps running throughout, and quiet periods longer than the grace
// between some phases: keys are deleted, collected and written again. Afterwards every replica agrees on each key and it reads as the
// newest acknowledged write: no deleted value comes back, and no write
// made after a collection is lost.
func TestRandomDeletesWithCollection(t *testing.T) {
	ids := []uint64{1, 2, 3}
	for _, seed := range []int64{51, 52, 53} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			inBubble(t, seed, 3, withCollection(ids, 500*time.Millisecond, 200*time.Millisecond), func(t *testing.T, c *cluster) {
				rng := rand.New(rand.NewPCG(uint64(seed), 13))
				keys := []string{"a", "b", "c", "d", "e", "f"}
				newest := map[string]versionvec.Sibling{}
				for phase := range 8 {
					c.net.Heal()
					if rng.IntN(2) == 0 {
						// Quiet, connected, for longer than the grace:
						// tombstones are collected, and the next phase
						// writes some of their keys again.
						time.Sleep(testGrace + time.Second)
					}
					if phase%2 == 0 {
						c.net.Isolate(transport.NodeID(ids[rng.IntN(3)]))
					}
					for i := range 25 {
						time.Sleep(time.Duration(rng.IntN(80)) * time.Millisecond)
						id := ids[rng.IntN(3)]
						key := keys[rng.IntN(len(keys))]
						opts := WriteOptions{N: 3, W: 1}
						if rng.IntN(3) == 0 {
							res, err := del(c.engines[id], key, opts)
							if err != nil {
								t.Fatalf("phase %d op %d: delete on node %d: %v", phase, i, id, err)
							}
							record(newest, key, versionvec.Sibling{Dot: res.Dot, Timestamp: res.Timestamp, Tombstone: true})
							continue
						}
						val := fmt.Sprintf("p%d-%d", phase, i)
						res, err := put(c.engines[id], key, val, opts)
						if err != nil {
							t.Fatalf("phase %d op %d: put on node %d: %v", phase, i, id, err)
						}
						record(newest, key, versionvec.Sibling{Dot: res.Dot, Timestamp: res.Timestamp, Value: []byte(val)})
					}
				}
				c.net.Heal()
				time.Sleep(2 * testGrace) // anti-entropy spreads, sweeps collect
				var collected uint64
				for _, id := range ids {
					collected += c.engines[id].Stats().TombstonesCollected
				}
				t.Logf("%d tombstones collected", collected)
				if collected < 6 {
					t.Errorf("got %d tombstones collected, want at least 6: collection not exercised", collected)
				}
				for _, key := range keys {
					first, found := c.state(1, key)
					for _, id := range ids[1:] {
						st, ok := c.state(id, key)
						if ok != found || !st.Equal(first) {
							t.Errorf("key %q: node %d holds %v (found %v), node 1 %v (found %v); want the same", key, id, st, ok, first, found)
						}
					}
					want := newest[key]
					got, ok := first.Winner()
					switch {
					case want.Tombstone && !first.Absent():
						t.Errorf("key %q: got %v, want absent (deleted last by %v): resurrected", key, first, want)
					case !want.Tombstone && (!ok || got.Dot != want.Dot):
						t.Errorf("key %q: got %v, want %v (written last)", key, first, want)
					}
					r, err := get(c.engines[ids[rng.IntN(3)]], key, ReadOptions{N: 3, R: 3})
					if err != nil || describe(r) != oracleRead(newest, key) {
						t.Errorf("key %q read R=3: got %s, %v; want %s", key, describe(r), err, oracleRead(newest, key))
					}
				}
			})
		})
	}
}

// Validate refuses a grace at or below its floor (the hint window, two
// anti-entropy periods and the request timeout); zero takes the default,
// raised above the floor when the window is long; negative turns
// collection off.
func TestTombstoneGraceConfig(t *testing.T) {
	net := simnet.New(1)
	defer net.Close()
	base := Config{
		Self:                1,
		Endpoint:            net.Endpoint(1),
		Store:               NewMemStore(),
		Clock:               hlc.New(func() int64 { return 1 }),
		Preference:          fixedPreference([]uint64{1}),
		HintWindow:          time.Hour,
		AntiEntropyInterval: 30 * time.Second,
		RequestTimeout:      time.Second,
	}
	floor := time.Hour + time.Minute + time.Second
	for _, c := range []struct {
		grace, hintWindow time.Duration
		wantErr           bool
		want              time.Duration // after defaults
	}{
		{grace: floor, wantErr: true},
		{grace: floor + time.Nanosecond, want: floor + time.Nanosecond},
		{grace: 0, want: 24 * time.Hour},
		{grace: 0, hintWindow: 48 * time.Hour, want: 48*time.Hour + time.Minute + time.Second + time.Hour},
		{grace: 25 * time.Hour, hintWindow: 48 * time.Hour, wantErr: true},
		{grace: -1, want: -1},
	} {
		cfg := base
		cfg.TombstoneGrace = c.grace
		if c.hintWindow != 0 {
			cfg.HintWindow = c.hintWindow
		}
		err := cfg.Validate()
		if (err != nil) != c.wantErr {
			t.Errorf("grace %v, hint window %v: Validate got %v, want error %v", c.grace, cfg.HintWindow, err, c.wantErr)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), "TombstoneGrace") {
				t.Errorf("grace %v: error %q does not name the field", c.grace, err)
			}
			continue
		}
		cfg.applyDefaults()
		if cfg.TombstoneGrace != c.want {
			t.Errorf("grace %v, hint window %v: after defaults got %v, want %v", c.grace, cfg.HintWindow, cfg.TombstoneGrace, c.want)
		}
	}
}

// With collection off (negative grace) tombstones stay however old.
func TestCollectionOff(t *testing.T) {
	ids := []uint64{1, 2}
	inBubble(t, 47, 2, func(cfg *Config) {
		withCollection(ids, time.Second, -1)(cfg)
		cfg.TombstoneGrace = -1
	}, func(t *testing.T, c *cluster) {
		if _, err := del(c.engines[1], "k", WriteOptions{N: 2, W: 2}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * testGrace)
		if got := c.collectAll(ids...); fmt.Sprint(got) != "[0 0]" {
			t.Errorf("collected with collection off: got %v, want [0 0]", got)
		}
		for _, id := range ids {
			if _, ok := c.state(id, "k"); !ok {
				t.Errorf("node %d: tombstone gone with collection off", id)
			}
		}
	})
}
