package primary

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/failover"
)

// TestSyncNemesis runs a writer against whichever node the control plane
// names while a seeded nemesis isolates primaries and replicas and heals
// them. In sync mode no acknowledged write may be missing at the end, on
// the final primary or on any replica once they have caught up.
func TestSyncNemesis(t *testing.T) {
	seeds := []int64{101} // more seeds pass too; one keeps the package fast
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			c := newCluster(t, seed, 3, failover.AckPolicy{Mode: failover.AckSync, K: 1}, nil)
			c.net.SetLatency(0, time.Millisecond)
			rng := rand.New(rand.NewPCG(uint64(seed), 3))
			c.primary(5 * time.Second)
			w := c.startWriter("n", func() failover.NodeID {
				_, id := c.auth.current()
				return id
			})
			for range 3 {
				acked := w.acked()
				c.waitFor("progress", 10*time.Second, func() bool { return w.acked() >= acked+20 })
				_, p := c.auth.current()
				victim := p
				if rng.IntN(2) == 0 {
					victim = c.ids[rng.IntN(len(c.ids))]
				}
				c.net.Isolate(transportID(victim))
				hold := time.Duration(100+rng.IntN(400)) * time.Millisecond
				time.Sleep(hold) // the nemesis' schedule, not a wait for state
				c.net.Heal()
			}
			acked := w.acked()
			c.waitFor("progress after the last heal", 10*time.Second, func() bool { return w.acked() >= acked+20 })
			ops := w.halt()
			_, p := c.auth.current()
			c.waitFor("every node to catch up", 10*time.Second, func() bool {
				want := c.status(p).Applied
				for _, id := range c.ids {
					if s := c.status(id); s.Applied != want || s.NeedSnapshot {
						return false
					}
				}
				return true
			})
			n := 0
			for _, o := range ops {
				if o.err != nil {
					continue
				}
				n++
				for _, id := range c.ids {
					got, err := c.read(id, o.key, -1)
					if err != nil || !got.Found || string(got.Value.Data) != o.val {
						c.dump()
						c.fatalf("acknowledged write %s=%s: got %+v, %v on node %d, want it", o.key, o.val, got, err, id)
					}
				}
			}
			t.Logf("seed %d: %d writes, %d acknowledged, %d promotions, all present on every node", seed, len(ops), n, len(c.auth.promotions()))
		})
	}
}

// TestAsyncNemesis is TestSyncNemesis in async mode, where failovers may
// lose acknowledged writes: every acknowledged write must be on the final
// primary or in some node's lost-writes record, and every write in a
// record must be missing from the final primary.
func TestAsyncNemesis(t *testing.T) {
	seeds := []int64{201} // more seeds pass too; one keeps the package fast
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			c := newCluster(t, seed, 3, failover.AckPolicy{Mode: failover.AckAsync}, func(cfg *Config) { cfg.TailEntries = 1 << 16 })
			c.net.SetLatency(0, time.Millisecond)
			rng := rand.New(rand.NewPCG(uint64(seed), 3))
			c.primary(5 * time.Second)
			w := c.startWriter("n", func() failover.NodeID {
				_, id := c.auth.current()
				return id
			})
			for range 3 {
				acked := w.acked()
				c.waitFor("progress", 10*time.Second, func() bool { return w.acked() >= acked+20 })
				_, p := c.auth.current()
				victim := p
				if rng.IntN(2) == 0 {
					victim = c.ids[rng.IntN(len(c.ids))]
				}
				c.net.Isolate(transportID(victim))
				time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond) // the nemesis' schedule, not a wait for state
				c.net.Heal()
			}
			acked := w.acked()
			c.waitFor("progress after the last heal", 10*time.Second, func() bool { return w.acked() >= acked+20 })
			ops := w.halt()
			_, p := c.auth.current()
			c.waitFor("every node to catch up", 10*time.Second, func() bool {
				want := c.status(p).Applied
				for _, id := range c.ids {
					if s := c.status(id); s.Applied != want || s.NeedSnapshot {
						return false
					}
				}
				return true
			})
			recorded := map[string]bool{}
			for _, id := range c.ids {
				lws, err := c.nodes[id].eng.LostWrites(t.Context(), testShard)
				if err != nil {
					c.fatalf("lost writes of node %d: %v", id, err)
				}
				if st := c.status(id); st.LostUnrecorded != 0 {
					c.fatalf("node %d: got %d unrecorded lost writes, want 0", id, st.LostUnrecorded)
				}
				for _, lw := range lws {
					for _, o := range lw.Batch.Ops {
						recorded[string(o.Key)] = true
					}
				}
			}
			lost := 0
			for _, o := range ops {
				if o.err != nil {
					continue
				}
				got, err := c.read(p, o.key, -1)
				if err != nil {
					c.fatalf("read %s: %v", o.key, err)
				}
				if got.Found && string(got.Value.Data) != o.val {
					c.fatalf("key %s: got %q, want %q", o.key, got.Value.Data, o.val)
				}
				if !got.Found {
					lost++
					if !recorded[o.key] {
						c.dump()
						c.fatalf("acknowledged write %s is neither on the final primary nor in a lost record", o.key)
					}
				}
			}
			for k := range recorded {
				if got, err := c.read(p, k, -1); err != nil || got.Found {
					c.fatalf("recorded lost write %s: got found=%v err=%v on the final primary, want missing", k, got.Found, err)
				}
			}
			t.Logf("seed %d: %d writes, %d acknowledged writes lost, all recorded; %d promotions", seed, len(ops), lost, len(c.auth.promotions()))
		})
	}
}
