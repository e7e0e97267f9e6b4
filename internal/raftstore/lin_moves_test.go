package raftstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestLinearizableMoves checks linearizability while replicas move: four
// nodes, each group starting on nodes 1-3, a mover that keeps choosing a
// new 3-node replica set per group and drives it with ConvergeMembership
// the way the server does (a replica that left its group is deleted and
// recreated empty, so a move back starts from a snapshot), while the
// usual nemesis partitions, delays, crashes and transfers leaderships.
// FULCRUM_MOVE_SEEDS runs more seeds.
func TestLinearizableMoves(t *testing.T) {
	seeds := 3
	if testing.Short() {
		seeds = 1
	}
	if v := os.Getenv("FULCRUM_MOVE_SEEDS"); v != "" {
		fmt.Sscan(v, &seeds)
	}
	first := int64(201)
	if v := os.Getenv("FULCRUM_MOVE_FIRST"); v != "" {
		fmt.Sscan(v, &first)
	}
	for seed := first; seed < first+int64(seeds); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runLinearizableMoves(t, seed, *linDuration+time.Second)
		})
	}
}

func runLinearizableMoves(t *testing.T, seed int64, dur time.Duration) {
	// Only the nodes that created a group may bootstrap it; a node taken
	// out of a group loses that right (controlplane's ShardInfo.Initial).
	var initMu sync.Mutex
	initial := map[uint64][]uint64{1: {1, 2, 3}, 2: {1, 2, 3}}
	peersFor := func(node, group uint64) []uint64 {
		initMu.Lock()
		defer initMu.Unlock()
		if slices.Contains(initial[group], node) {
			return slices.Clone(initial[group])
		}
		return nil
	}
	c := newTestCluster(t, seed, 0, 2, nil)
	c.peersFor = peersFor
	if os.Getenv("FULCRUM_MOVE_TRACE") != "" {
		c.trace = &tracer{start: time.Now()}
	}
	c.ids = []uint64{1, 2, 3, 4}
	for _, id := range c.ids {
		if err := c.start(id, vfs.NewCrashableMem()); err != nil {
			t.Fatal(err)
		}
	}
	mrng := rand.New(rand.NewPCG(uint64(seed), 0x44))
	moves := 0
	rec := runWorkload(c, seed, dur, rand.New(rand.NewPCG(uint64(seed), 0x33)), func(ctx context.Context) {
		moves = mover(ctx, c, mrng, func(node, group uint64) {
			initMu.Lock()
			initial[group] = slices.DeleteFunc(initial[group], func(id uint64) bool { return id == node })
			initMu.Unlock()
		})
	})
	res, err := rec.Check(30 * time.Second)
	if err != nil {
		path := fmt.Sprintf("%s/lin-moves-seed-%d.html", t.TempDir(), seed)
		_ = rec.WriteVisualization(path)
		if c.trace != nil {
			f, _ := os.Create(fmt.Sprintf("/tmp/lin-moves-trace-%d.txt", seed))
			for _, l := range c.trace.lines {
				fmt.Fprintln(f, l)
			}
			f.Close()
		}
		t.Fatalf("seed %d: history of %d ops is not linearizable: %v (visualization: %s)", seed, res.Ops, err, path)
	}
	if moves == 0 {
		t.Fatalf("seed %d: no move completed: the test did not exercise moves", seed)
	}
	t.Logf("seed %d: %d ops linearizable across %d completed moves", seed, res.Ops, moves)
}

// mover keeps moving each group to a new replica set of three of the four
// nodes and returns how many moves completed. dropped is told when a
// node's replica is deleted.
func mover(ctx context.Context, c *testCluster, r *rand.Rand, dropped func(node, group uint64)) int {
	target := map[uint64][]uint64{1: {1, 2, 3}, 2: {1, 2, 3}}
	done := 0
	for ctx.Err() == nil {
		g := uint64(1 + r.IntN(2))
		out := c.ids[r.IntN(len(c.ids))]
		var next []uint64
		for _, id := range c.ids {
			if id != out {
				next = append(next, id)
			}
		}
		if slices.Equal(next, target[g]) {
			continue
		}
		target[g] = next
		c.trace.add("move group %d to %v", g, next)
		if converge(ctx, c, g, next, dropped) {
			done++
		}
	}
	return done
}

// converge drives group g to voters until its leader reports them (true)
// or ctx ends, deleting and recreating empty the replicas that left.
func converge(ctx context.Context, c *testCluster, g uint64, voters []uint64, dropped func(node, group uint64)) bool {
	for ctx.Err() == nil {
		if c.trace != nil {
			for _, id := range c.ids {
				for _, grp := range []uint64{1, 2} {
					if n := c.node(id); n != nil {
						if st, ok := n.Status(grp); ok {
							line := fmt.Sprintf("status g%d n%d: %s term %d leader %d voters %v learners %v commit %d applied %d last %d", grp, id, st.State, st.Term, st.Leader, st.Voters, st.Learners, st.Commit, st.Applied, st.LastIndex)
							key := fmt.Sprintf("%d/%d", grp, id)
							if c.traceLast == nil {
								c.traceLast = map[string]string{}
							}
							short := fmt.Sprintf("%s %d %d %v %v", st.State, st.Term, st.Leader, st.Voters, st.Learners)
							if c.traceLast[key] != short {
								c.traceLast[key] = short
								c.trace.add("%s", line)
							}
						}
					}
				}
			}
		}
		for _, id := range c.ids {
			n := c.node(id)
			if n == nil {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			step, err := n.ConvergeMembership(sctx, g, voters, nil)
			cancel()
			if step.Kind != StepNone && step.Kind != StepWait {
				c.trace.add("group %d: node %d: %v: %v", g, id, step, err)
			}
		}
		st, ok := c.anyStatus(g)
		if ok && c.node(st.Leader) != nil {
			if lst, ok := c.node(st.Leader).Status(g); ok && lst.State == "StateLeader" {
				st = lst
			}
		}
		settled := ok && st.State == "StateLeader" && slices.Equal(st.Voters, voters) && len(st.Learners) == 0 && !st.Joint
		// Replicas out of the committed membership are deleted (their
		// rows too) and recreated empty, waiting to be added again.
		if ok && st.State == "StateLeader" && !st.Joint {
			for _, id := range c.ids {
				if slices.Contains(st.Voters, id) || slices.Contains(st.Learners, id) {
					continue
				}
				n := c.node(id)
				if n == nil {
					continue
				}
				own, ok := n.Status(g)
				if ok && own.Applied == 0 && own.Leader == 0 && len(own.Voters) == 0 {
					continue // already empty and waiting
				}
				// The leader's config excludes the replica only from its
				// applied index on: one at or past everything the replica
				// applied proves the removal committed (an older one may
				// predate the replica's latest addition).
				if ok && own.Applied > st.Applied {
					continue
				}
				dropped(id, g)
				c.trace.add("group %d: delete replica on %d (applied %d; leader %d applied %d voters %v learners %v)", g, id, own.Applied, st.Leader, st.Applied, st.Voters, st.Learners)
				rctx, cancel := context.WithTimeout(ctx, time.Second)
				if err := n.RemoveGroup(rctx, g); err == nil {
					spec := c.specs[g-1]
					spec.Peers = nil
					_ = n.CreateGroup(rctx, spec)
				}
				cancel()
			}
		}
		if settled {
			return true
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	return false
}
