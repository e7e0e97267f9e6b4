package raftstore

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/lincheck"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// The long run: go test ./internal/raftstore -run TestLinearizable -seeds 1000 -seed-duration 2s
// (FULCRUM_LIN_SEEDS also works, for scripts).
var (
	linSeeds    = flag.Int("seeds", 0, "number of seeds for TestLinearizable (default 4, or $FULCRUM_LIN_SEEDS)")
	linFirst    = flag.Int64("first-seed", 1, "first seed for TestLinearizable")
	linDuration = flag.Duration("seed-duration", 1500*time.Millisecond, "workload duration per seed")
)

func TestLinearizable(t *testing.T) {
	seeds := *linSeeds
	if seeds == 0 {
		if v := os.Getenv("FULCRUM_LIN_SEEDS"); v != "" {
			fmt.Sscan(v, &seeds)
		}
	}
	if seeds == 0 {
		seeds = 4
		if testing.Short() {
			seeds = 1
		}
	}
	for i := 0; i < seeds; i++ {
		seed := *linFirst + int64(i)
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runLinearizable(t, seed, *linDuration, nil)
		})
	}
}

// TestLinearizableLeaseReads runs the same with lease reads (the nemesis
// transfers leaderships and partitions leaders: both must end a lease).
// FULCRUM_LEASE_SEEDS runs more.
func TestLinearizableLeaseReads(t *testing.T) {
	seeds := 3
	if v := os.Getenv("FULCRUM_LEASE_SEEDS"); v != "" {
		fmt.Sscan(v, &seeds)
	}
	var leased uint64
	lease := func(c *Config) { c.LeaseReads, c.MaxClockDrift = true, 10*time.Millisecond }
	for seed := int64(101); seed < 101+int64(seeds); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			leased += runLinearizable(t, seed, *linDuration, lease)
		})
	}
	if leased == 0 {
		t.Fatal("no read was answered from a lease: the test did not exercise lease reads")
	}
	t.Logf("%d reads answered from leases", leased)
}

// runLinearizable runs clients against a 3-node, 2-shard cluster while a
// nemesis injects one fault kind after another, then checks the history.
func runLinearizable(t *testing.T, seed int64, dur time.Duration, mutate func(*Config)) (leaseReads uint64) {
	c := newTestCluster(t, seed, 3, 2, mutate)
	rec := runWorkload(c, seed, dur, rand.New(rand.NewPCG(uint64(seed), 0x11)), nil)
	res, err := rec.Check(30 * time.Second)
	if err != nil {
		path := fmt.Sprintf("%s/lin-seed-%d.html", t.TempDir(), seed)
		_ = rec.WriteVisualization(path)
		t.Fatalf("seed %d: history of %d ops is not linearizable: %v (visualization: %s)", seed, res.Ops, err, path)
	}
	c.mu.Lock()
	for _, tn := range c.nodes {
		leaseReads += tn.node.Stats().LeaseReads
	}
	c.mu.Unlock()
	t.Logf("seed %d: %d ops linearizable", seed, res.Ops)
	return leaseReads
}

// runWorkload runs 6 clients (get, put, compare-and-set on 4 keys) and
// the nemesis (seeded by nrng) against c for dur, with also, if set, run
// beside them; it heals the network and returns the history.
func runWorkload(c *testCluster, seed int64, dur time.Duration, nrng *rand.Rand, also func(ctx context.Context)) *lincheck.Recorder {
	rec := lincheck.NewRecorder()
	keys := []string{"a", "b", "c", "d"}
	ctx, stop := context.WithTimeout(context.Background(), dur)
	defer stop()
	var wg sync.WaitGroup
	const clients = 6
	for cl := 0; cl < clients; cl++ {
		r := rand.New(rand.NewPCG(uint64(seed), uint64(cl)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			lastVersion := map[string]uint64{}
			for ctx.Err() == nil {
				runClientOp(c, rec, cl, r, keys, lastVersion)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		nemesis(ctx, c, nrng)
	}()
	if also != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			also(ctx)
		}()
	}
	wg.Wait()
	c.net.Heal()
	c.net.SetDropRate(0)
	c.net.SetLatency(0, 0)
	return rec
}

func runClientOp(c *testCluster, rec *lincheck.Recorder, client int, r *rand.Rand, keys []string, lastVersion map[string]uint64) {
	key := keys[r.IntN(len(keys))]
	node := c.node(c.ids[r.IntN(len(c.ids))])
	if node == nil {
		time.Sleep(time.Millisecond) // crashed right now
		return
	}
	group := c.groupOf(key)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(100+r.IntN(400))*time.Millisecond)
	defer cancel()
	if c.trace != nil {
		start := time.Since(c.trace.start)
		defer func() { c.trace.add("  op client %d via node %d key %s (began %v)", client, node.ID(), key, start) }()
	}
	switch x := r.IntN(10); {
	case x < 4:
		p := rec.Begin(client, lincheck.Input{Kind: lincheck.Get, Key: key})
		v, ok, err := node.Get(ctx, group, testNS, []byte(key))
		c.trace.add("get %s via %d: %q v%d %v %v", key, node.ID(), v.Data, v.Version, ok, err)
		if err != nil {
			p.Fail() // a failed read has no effect
			return
		}
		p.End(lincheck.Output{Exists: ok, Value: string(v.Data), Version: v.Version})
		if ok {
			lastVersion[key] = v.Version
		}
	case x < 8:
		val := fmt.Sprintf("%d-%d", client, r.Uint32())
		p := rec.Begin(client, lincheck.Input{Kind: lincheck.Put, Key: key, Value: val})
		res, err := node.Write(ctx, group, set(key, val))
		if err == nil {
			c.trace.add("put %s=%s via %d: v%d", key, val, node.ID(), res[0].Cur.Version)
		} else {
			c.trace.add("put %s=%s via %d: %v", key, val, node.ID(), err)
		}
		if !recordWriteError(p, err) {
			return
		}
		p.End(lincheck.Output{Version: res[0].Cur.Version, OK: true})
		lastVersion[key] = res[0].Cur.Version
	default:
		val := fmt.Sprintf("cas-%d-%d", client, r.Uint32())
		ifv := lastVersion[key]
		p := rec.Begin(client, lincheck.Input{Kind: lincheck.CAS, Key: key, Value: val, IfVersion: ifv})
		b := kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: testNS, Key: []byte(key), Value: []byte(val), Cond: kv.CondVersion, IfVersion: ifv}}}
		res, err := node.Write(ctx, group, b)
		if err == nil {
			c.trace.add("cas %s=%s if v%d via %d: applied %v v%d", key, val, ifv, node.ID(), res[0].Applied, res[0].Cur.Version)
		} else {
			c.trace.add("cas %s=%s if v%d via %d: %v", key, val, ifv, node.ID(), err)
		}
		if !recordWriteError(p, err) {
			return
		}
		out := lincheck.Output{OK: res[0].Applied}
		if res[0].Applied {
			out.Version = res[0].Cur.Version
			lastVersion[key] = out.Version
		}
		p.End(out)
	}
}

// recordWriteError files a failed write by what its error promises:
// UNAVAILABLE means it never took effect, anything else may have.
func recordWriteError(p *lincheck.Pending, err error) bool {
	if err == nil {
		return true
	}
	if kv.CodeOf(err) == kv.CodeUnavailable {
		p.Fail()
	} else {
		p.Unknown()
	}
	return false
}

// nemesis applies faults in rounds: each round picks one fault, holds it
// for a while, and heals.
func nemesis(ctx context.Context, c *testCluster, r *rand.Rand) {
	nodes := make([]transport.NodeID, len(c.ids))
	for i, id := range c.ids {
		nodes[i] = transport.NodeID(id)
	}
	hold := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	for ctx.Err() == nil {
		if !hold(time.Duration(50+r.IntN(150)) * time.Millisecond) {
			return
		}
		switch r.IntN(8) {
		case 0: // isolate the leader of a group
			st, _ := c.anyStatus(uint64(1 + r.IntN(len(c.specs))))
			if st.Leader != 0 {
				c.net.Isolate(transport.NodeID(st.Leader))
			}
		case 1: // majority/minority split
			i := r.IntN(len(nodes))
			var rest []transport.NodeID
			for j, n := range nodes {
				if j != i {
					rest = append(rest, n)
				}
			}
			c.net.Partition([]transport.NodeID{nodes[i]}, rest)
		case 2: // bridge: a-b and b-c talk, a-c cannot
			a, b := nodes[0], nodes[2]
			c.net.Block(a, b)
			c.net.Block(b, a)
		case 3: // one-way: a node hears but is not heard
			i := r.IntN(len(nodes))
			for j, n := range nodes {
				if j != i {
					c.net.Block(nodes[i], n)
				}
			}
		case 4:
			c.net.SetDropRate(0.2)
		case 5:
			c.net.SetLatency(0, 20*time.Millisecond)
			c.net.SetReorder(true)
		case 6:
			c.crash(c.ids[r.IntN(len(c.ids))])
		case 7:
			g := uint64(1 + r.IntN(len(c.specs)))
			if st, ok := c.anyStatus(g); ok && st.Leader != 0 {
				if n := c.node(st.Leader); n != nil {
					tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
					_ = n.TransferLeadership(tctx, g, c.ids[r.IntN(len(c.ids))])
					cancel()
				}
			}
		}
		if !hold(time.Duration(100+r.IntN(300)) * time.Millisecond) {
			return
		}
		c.net.Heal()
		c.net.SetDropRate(0)
		c.net.SetLatency(0, 0)
		c.net.SetReorder(false)
	}
}

func (c *testCluster) anyStatus(group uint64) (GroupStatus, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tn := range c.nodes {
		if st, ok := tn.node.Status(group); ok && st.Leader != 0 {
			return st, true
		}
	}
	return GroupStatus{}, false
}

// TestCheckerCatchesStaleReads is the negative control: the same recorder
// and checker must reject a history with reads that skip the read barrier
// on a partitioned replica. If this ever passes, the linearizability
// tests above prove nothing.
func TestCheckerCatchesStaleReads(t *testing.T) {
	c := newTestCluster(t, 99, 3, 1, nil)
	rec := lincheck.NewRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The stale replica is a follower; writes go through the leader.
	lead := c.leader(1, 5*time.Second)
	stale := lead%3 + 1
	if _, err := c.node(lead).Write(ctx, 1, set("a", "0")); err != nil {
		t.Fatal(err)
	}
	// The follower applies the first write, then is cut off.
	c.mu.Lock()
	staleStore := c.nodes[stale].store
	c.mu.Unlock()
	for {
		if v, ok, _ := staleStore.Get(ctx, testNS, []byte("a")); ok && string(v.Data) == "0" {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the follower never applied the first write")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.net.Isolate(transport.NodeID(stale))
	for i := 1; i <= 20; i++ {
		val := fmt.Sprint(i)
		p := rec.Begin(0, lincheck.Input{Kind: lincheck.Put, Key: "a", Value: val})
		res, err := c.node(lead).Write(ctx, 1, set("a", val))
		if err != nil {
			t.Fatal(err)
		}
		p.End(lincheck.Output{Version: res[0].Cur.Version, OK: true})
		// The broken read: the isolated follower's local state, no ReadIndex.
		p = rec.Begin(1, lincheck.Input{Kind: lincheck.Get, Key: "a"})
		v, ok, err := staleStore.Get(ctx, testNS, []byte("a"))
		if err != nil {
			t.Fatal(err)
		}
		p.End(lincheck.Output{Exists: ok, Value: string(v.Data), Version: v.Version})
	}
	if _, err := rec.Check(10 * time.Second); err == nil {
		t.Fatal("checker accepted stale reads from a partitioned replica")
	}
}
