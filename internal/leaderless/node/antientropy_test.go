package node

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/merkle"
	"github.com/fulcrumdb/fulcrum/internal/transport"
	"github.com/fulcrumdb/fulcrum/internal/versionvec"
)

const testShards = 4

func testShard(_ string, key []byte) int {
	h := fnv.New32a()
	h.Write(key)
	return int(h.Sum32() % testShards)
}

// withAntiEntropy configures anti-entropy over every shard of testNS, all
// nodes of ids being home replicas (N equal to the cluster size).
func withAntiEntropy(ids []uint64, interval time.Duration) func(*Config) {
	return func(cfg *Config) {
		cfg.Shard = testShard
		cfg.Shards = func() []ShardReplicas {
			out := make([]ShardReplicas, testShards)
			for s := range out {
				out[s] = ShardReplicas{Namespace: testNS, Shard: s, Replicas: ids}
			}
			return out
		}
		cfg.AntiEntropyInterval = interval
		cfg.TreeDepth = 6
	}
}

// After a partition with W=1 writes on both sides, anti-entropy alone (no
// reads, so no read repair) makes every replica identical, with each key
// at the oracle's last-writer-wins winner; afterwards the trees agree, so
// a further round exchanges nothing, and each incrementally maintained
// tree equals one rebuilt from the store.
func TestAntiEntropyConverges(t *testing.T) {
	ids := []uint64{1, 2, 3}
	for _, seed := range []int64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			inBubble(t, seed, 3, withAntiEntropy(ids, 200*time.Millisecond), func(t *testing.T, c *cluster) {
				rng := rand.New(rand.NewPCG(uint64(seed), 9))
				// Build the trees before the writes, so the incremental
				// path is what gets checked below.
				c.buildTrees()
				keys := make([]string, 40)
				for i := range keys {
					keys[i] = fmt.Sprintf("key%02d", i)
				}
				winner := map[string]versionvec.Sibling{}
				c.net.Isolate(transport.NodeID(ids[rng.IntN(3)]))
				for i := range 300 {
					id := ids[rng.IntN(3)]
					key := keys[rng.IntN(len(keys))]
					if rng.IntN(8) == 0 {
						res, err := c.engines[id].Delete(context.Background(), testNS, []byte(key), WriteOptions{N: 3, W: 1})
						if err != nil {
							t.Fatalf("op %d: delete on node %d: %v", i, id, err)
						}
						record(winner, key, versionvec.Sibling{Dot: res.Dot, Timestamp: res.Timestamp, Tombstone: true})
						continue
					}
					val := fmt.Sprintf("v%d", i)
					res, err := put(c.engines[id], key, val, WriteOptions{N: 3, W: 1})
					if err != nil {
						t.Fatalf("op %d: put on node %d: %v", i, id, err)
					}
					record(winner, key, versionvec.Sibling{Dot: res.Dot, Timestamp: res.Timestamp, Value: []byte(val)})
				}
				c.net.Heal()
				waitFor(t, 10*time.Second, "replicas identical", func() bool {
					for _, key := range keys {
						a, _ := c.state(1, key)
						for _, id := range ids[1:] {
							if b, _ := c.state(id, key); !b.Equal(a) {
								return false
							}
						}
					}
					return true
				})
				synctest.Wait()
				checkConverged(t, c, keys, winner)
				before := c.engines[1].Stats().AntiEntropyRanges
				if err := c.engines[1].AntiEntropyOnce(context.Background()); err != nil {
					t.Fatalf("round after convergence: %v", err)
				}
				if got := c.engines[1].Stats().AntiEntropyRanges - before; got != 0 {
					t.Errorf("ranges exchanged after convergence: got %d, want 0", got)
				}
				checkTrees(t, c, 6)
			})
		})
	}
}

// A seeded run under faults: messages dropped and delayed, a node cut off
// in some phases, W and R drawn per request. Afterwards (heal, no faults)
// anti-entropy converges every replica, and each key's winner is a write
// that was minted (acknowledged, or failed as indeterminate) and is no
// older than any acknowledged write of the key: no acknowledged write is
// lost except to a newer one.
func TestFaultyRunConverges(t *testing.T) {
	ids := []uint64{1, 2, 3}
	for _, seed := range []int64{31, 32, 33} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			inBubble(t, seed, 3, func(cfg *Config) {
				withAntiEntropy(ids, 100*time.Millisecond)(cfg)
				cfg.RequestTimeout = 200 * time.Millisecond
			}, func(t *testing.T, c *cluster) {
				rng := rand.New(rand.NewPCG(uint64(seed), 11))
				c.net.SetLatency(time.Millisecond, 5*time.Millisecond)
				c.net.SetDropRate(0.1)
				keys := []string{"a", "b", "c", "d", "e"}
				acked := map[string]versionvec.Sibling{} // newest acknowledged write per key
				minted := map[string]map[versionvec.Dot]bool{}
				for phase := range 4 {
					c.net.Heal()
					if phase%2 == 0 {
						c.net.Isolate(transport.NodeID(ids[rng.IntN(3)]))
					}
					for i := range 40 {
						id := ids[rng.IntN(3)]
						key := keys[rng.IntN(len(keys))]
						opts := WriteOptions{N: 3, W: 1 + rng.IntN(2), Sloppy: true}
						var (
							res WriteResult
							err error
						)
						w := versionvec.Sibling{}
						if rng.IntN(6) == 0 {
							res, err = c.engines[id].Delete(context.Background(), testNS, []byte(key), opts)
							w.Tombstone = true
						} else {
							val := fmt.Sprintf("p%d-%d", phase, i)
							res, err = put(c.engines[id], key, val, opts)
							w.Value = []byte(val)
						}
						w.Dot, w.Timestamp = res.Dot, res.Timestamp
						if res.Dot != (versionvec.Dot{}) {
							if minted[key] == nil {
								minted[key] = map[versionvec.Dot]bool{}
							}
							minted[key][res.Dot] = true
						}
						if err == nil {
							record(acked, key, w)
						}
					}
				}
				var failed, ok uint64
				for _, id := range ids {
					s := c.engines[id].Stats()
					failed, ok = failed+s.WritesFailed, ok+s.WritesOK
				}
				t.Logf("writes: %d acknowledged, %d failed", ok, failed)
				if failed == 0 || ok == 0 {
					t.Errorf("got %d acknowledged and %d failed writes, want some of each (faults not exercised)", ok, failed)
				}
				c.net.SetDropRate(0)
				c.net.Heal()
				waitFor(t, 30*time.Second, "replicas identical", func() bool {
					for _, key := range keys {
						a, _ := c.state(1, key)
						for _, id := range ids[1:] {
							if b, _ := c.state(id, key); !b.Equal(a) {
								return false
							}
						}
					}
					return true
				})
				for _, key := range keys {
					st, _ := c.state(1, key)
					got, ok := st.Winner()
					want, wasAcked := acked[key]
					switch {
					case !ok && wasAcked:
						t.Errorf("key %q: got no value, want at least %v (acknowledged)", key, want)
					case ok && !minted[key][got.Dot]:
						t.Errorf("key %q: got winner %v, which no write minted", key, got)
					case ok && wasAcked && want.Newer(got):
						t.Errorf("key %q: got winner %v, older than acknowledged %v", key, got, want)
					}
				}
			})
		})
	}
}

// Anti-entropy pages through a namespace (here 8 keys per page): after a
// partition in which the isolated node and the others each wrote keys the
// other side lacks, one round on the isolated node alone (pulls and
// pushes) makes all three identical; a further round exchanges nothing.
// The pages of serveRanges, walked by hand, hold exactly the keys of the
// spans asked for, each once.
func TestAntiEntropyPages(t *testing.T) {
	ids := []uint64{1, 2, 3}
	inBubble(t, 5, 3, func(cfg *Config) {
		withAntiEntropy(ids, -1)(cfg)
		cfg.Preference = fixedPreference(ids)
		cfg.testPage = 8
	}, func(t *testing.T, c *cluster) {
		c.net.Isolate(3)
		var keys []string
		for i := range 60 {
			key := fmt.Sprintf("key%03d", i)
			keys = append(keys, key)
			id := uint64(1 + i%2)
			if i%3 == 0 {
				id = 3
			}
			if _, err := put(c.engines[id], key, fmt.Sprint(i), WriteOptions{N: 3, W: 1}); err != nil {
				t.Fatalf("put %s on node %d: %v", key, id, err)
			}
		}
		synctest.Wait() // the majority's background sends are done
		c.net.Heal()

		shard1 := map[string]bool{}
		for _, key := range keys {
			if testShard(testNS, []byte(key)) == 1 {
				if _, ok := c.state(1, key); ok {
					shard1[key] = true
				}
			}
		}
		var after []byte
		got := map[string]bool{}
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatal("serveRanges: no end after 100 pages")
			}
			body, err := c.engines[1].serveRanges(context.Background(), request{op: opRanges, ns: testNS, after: after, spans: []span{{shard: 1, rng: merkle.Range{Last: ^uint64(0)}}}})
			if err != nil {
				t.Fatal(err)
			}
			p, err := decodeRangesPage(body)
			if err != nil {
				t.Fatal(err)
			}
			for _, ent := range p.entries {
				if got[string(ent.Key)] || !shard1[string(ent.Key)] {
					t.Errorf("page %d: key %q repeated, or not of shard 1", pages, ent.Key)
				}
				got[string(ent.Key)] = true
			}
			if p.next == nil {
				if pages == 0 {
					t.Error("one page, want several (8 keys a page)")
				}
				break
			}
			after = p.next
		}
		if len(got) != len(shard1) {
			t.Errorf("pages held %d keys of shard 1, want %d", len(got), len(shard1))
		}

		first := c.engines[3].Stats()
		if err := c.engines[3].AntiEntropyOnce(context.Background()); err != nil {
			t.Fatalf("round on node 3: %v", err)
		}
		synctest.Wait()
		if s := c.engines[3].Stats(); s.AntiEntropyRounds-first.AntiEntropyRounds != 2*testShards || s.AntiEntropyRanges == first.AntiEntropyRanges {
			t.Errorf("first round: %d shard comparisons, %d ranges; want %d, some", s.AntiEntropyRounds-first.AntiEntropyRounds, s.AntiEntropyRanges-first.AntiEntropyRanges, 2*testShards)
		}
		for _, key := range keys {
			a, ok := c.state(3, key)
			if !ok {
				t.Errorf("node 3 lacks %q", key)
				continue
			}
			for _, id := range ids[:2] {
				if b, _ := c.state(id, key); !b.Equal(a) {
					t.Errorf("key %q: node %d holds %v, node 3 %v; want equal", key, id, b, a)
				}
			}
		}
		before := c.engines[3].Stats()
		if err := c.engines[3].AntiEntropyOnce(context.Background()); err != nil {
			t.Fatalf("second round on node 3: %v", err)
		}
		after3 := c.engines[3].Stats()
		if r := after3.AntiEntropyRanges - before.AntiEntropyRanges; r != 0 {
			t.Errorf("ranges exchanged after convergence: got %d, want 0", r)
		}
		if n := after3.AntiEntropyRounds - before.AntiEntropyRounds; n != 2*testShards {
			t.Errorf("shard comparisons in a round: got %d, want %d", n, 2*testShards)
		}
		checkTrees(t, c, 6)
	})
}

// The loop's rounds are lazy: a namespace the peer has exchanged with this
// node since the start of this node's previous round is diffed but not
// exchanged again (the peer's rounds do it); a lazy round whose previous
// one started after the peer's exchange, or an explicit AntiEntropyOnce,
// exchanges it.
func TestAntiEntropyLazyRound(t *testing.T) {
	ids := []uint64{1, 2}
	inBubble(t, 7, 2, func(cfg *Config) {
		withAntiEntropy(ids, -1)(cfg)
		cfg.Preference = fixedPreference(ids)
	}, func(t *testing.T, c *cluster) {
		ctx := context.Background()
		n := 0
		writeMissed := func() []string { // keys node 2 misses
			c.net.Isolate(2)
			defer c.net.Heal()
			var keys []string
			for range 10 {
				key := fmt.Sprintf("key%02d", n)
				n++
				if _, err := put(c.engines[1], key, "v", WriteOptions{N: 2, W: 1}); err != nil {
					t.Fatalf("put %s: %v", key, err)
				}
				keys = append(keys, key)
			}
			synctest.Wait()
			return keys
		}
		missing := func(keys []string) int {
			m := 0
			for _, k := range keys {
				if _, ok := c.state(2, k); !ok {
					m++
				}
			}
			return m
		}
		first := writeMissed()
		before := time.Now().UnixNano()
		time.Sleep(time.Millisecond) // virtual: the exchange is after before
		if err := c.engines[1].antiEntropyRound(ctx, before); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if m := missing(first); m != 0 {
			t.Fatalf("after node 1's round: node 2 misses %d keys, want 0", m)
		}
		time.Sleep(time.Millisecond)
		after := time.Now().UnixNano()
		second := writeMissed()
		if err := c.engines[2].antiEntropyRound(ctx, before); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if m := missing(second); m != len(second) {
			t.Errorf("node 2's lazy round, node 1 exchanged since its previous one: node 2 misses %d keys, want %d (not exchanged)", m, len(second))
		}
		if err := c.engines[2].antiEntropyRound(ctx, after); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if m := missing(second); m != 0 {
			t.Errorf("node 2's lazy round, node 1 did not exchange since its previous one: node 2 misses %d keys, want 0", m)
		}
		third := writeMissed()
		if err := c.engines[2].AntiEntropyOnce(ctx); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if m := missing(third); m != 0 {
			t.Errorf("after node 2's AntiEntropyOnce: node 2 misses %d keys, want 0", m)
		}
	})
}

// With AntiEntropyBandwidth set, repairing a replica that missed 300 KB
// of writes takes at least the time the cap allows (in the bubble's
// virtual time); without it, no time passes.
func TestAntiEntropyBandwidth(t *testing.T) {
	ids := []uint64{1, 2, 3}
	const bw = 32 << 10 // bytes per second
	for _, limited := range []bool{false, true} {
		t.Run(fmt.Sprintf("limited=%v", limited), func(t *testing.T) {
			inBubble(t, 7, 3, func(cfg *Config) {
				withAntiEntropy(ids, -1)(cfg)
				cfg.Preference = fixedPreference(ids)
				if limited {
					cfg.AntiEntropyBandwidth = bw
				}
			}, func(t *testing.T, c *cluster) {
				c.net.Isolate(3)
				value := strings.Repeat("x", 1000)
				for i := range 300 {
					if _, err := put(c.engines[1], fmt.Sprintf("key%03d", i), value, WriteOptions{N: 3, W: 1}); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(5 * time.Second) // virtual: the writes' sends to node 3 give up
				synctest.Wait()
				c.net.Heal()
				if _, ok := c.state(3, "key000"); ok {
					t.Fatal("node 3 has key000 before anti-entropy")
				}
				start := time.Now()
				if err := c.engines[3].AntiEntropyOnce(context.Background()); err != nil {
					t.Fatal(err)
				}
				took := time.Since(start)
				for i := range 300 {
					if _, ok := c.state(3, fmt.Sprintf("key%03d", i)); !ok {
						t.Fatalf("node 3 lacks key%03d after the round", i)
					}
				}
				// 300 KB pulled from node 1 (node 2 has them too: pulled
				// once, the second exchange finds them equal), less the
				// burst, at bw.
				floor := time.Duration(300_000-aeMinBurst) * time.Second / bw
				switch {
				case limited && took < floor:
					t.Errorf("limited round took %v, want at least %v", took, floor)
				case !limited && took > time.Second:
					t.Errorf("unlimited round took %v of virtual time", took)
				}
				t.Logf("round took %v (virtual)", took)
			})
		})
	}
}
