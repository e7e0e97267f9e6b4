package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/leaderless"
	"github.com/fulcrumdb/fulcrum/internal/transport"
	"github.com/fulcrumdb/fulcrum/internal/versionvec"
)

// During a partition that isolates one of three nodes, W=1/R=1 keeps every
// node answering reads and writes (AP); after the heal, blocking read
// repair makes every replica identical, and each key holds the
// last-writer-wins winner among the acknowledged writes (the oracle).
func TestPartitionedW1R1Converges(t *testing.T) {
	for _, seed := range []int64{1, 2, 3, 4, 5} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			inBubble(t, seed, 3, nil, func(t *testing.T, c *cluster) {
				rng := rand.New(rand.NewPCG(uint64(seed), 7))
				keys := []string{"a", "b", "c", "d", "e", "f"}
				winner := map[string]versionvec.Sibling{} // oracle: newest acknowledged write per key
				wopts := WriteOptions{N: 3, W: 1}
				ropts := ReadOptions{N: 3, R: 1, Repair: leaderless.RepairAsync}
				c.net.Isolate(transport.NodeID(c.ids[rng.IntN(3)]))
				for i := range 200 {
					id := c.ids[rng.IntN(3)]
					key := keys[rng.IntN(len(keys))]
					switch r := rng.IntN(10); {
					case r < 6:
						val := fmt.Sprintf("v%d", i)
						res, err := put(c.engines[id], key, val, wopts)
						if err != nil {
							t.Fatalf("op %d: put on node %d during partition: got %v, want success", i, id, err)
						}
						record(winner, key, versionvec.Sibling{Dot: res.Dot, Timestamp: res.Timestamp, Value: []byte(val)})
					case r < 7:
						res, err := c.engines[id].Delete(context.Background(), testNS, []byte(key), wopts)
						if err != nil {
							t.Fatalf("op %d: delete on node %d during partition: got %v, want success", i, id, err)
						}
						record(winner, key, versionvec.Sibling{Dot: res.Dot, Timestamp: res.Timestamp, Tombstone: true})
					default:
						if _, err := get(c.engines[id], key, ropts); err != nil {
							t.Fatalf("op %d: get on node %d during partition: got %v, want success", i, id, err)
						}
					}
				}
				c.net.Heal()
				for _, key := range keys {
					res, err := get(c.engines[c.ids[0]], key, ReadOptions{N: 3, R: 3, Repair: leaderless.RepairBlocking})
					if err != nil {
						t.Fatalf("repair read of %q: %v", key, err)
					}
					if want := oracleRead(winner, key); describe(res) != want {
						t.Errorf("key %q: read got %s, want %s", key, describe(res), want)
					}
				}
				synctest.Wait() // background sends and repairs settle
				checkConverged(t, c, keys, winner)
			})
		})
	}
}

// record keeps the newest write of key in the oracle.
func record(winner map[string]versionvec.Sibling, key string, w versionvec.Sibling) {
	if cur, ok := winner[key]; !ok || w.Newer(cur) {
		winner[key] = w
	}
}

func oracleRead(winner map[string]versionvec.Sibling, key string) string {
	w, ok := winner[key]
	if !ok || w.Tombstone {
		return "absent"
	}
	return fmt.Sprintf("%q", w.Value)
}

// checkConverged checks that every node holds the same state of every key
// and that its winner is the oracle's.
func checkConverged(t *testing.T, c *cluster, keys []string, winner map[string]versionvec.Sibling) {
	t.Helper()
	for _, key := range keys {
		first, _ := c.state(c.ids[0], key)
		for _, id := range c.ids[1:] {
			st, _ := c.state(id, key)
			if !st.Equal(first) {
				t.Errorf("key %q: node %d holds %v, node %d holds %v; want identical replicas", key, id, st, c.ids[0], first)
			}
		}
		want, wrote := winner[key]
		got, ok := first.Winner()
		switch {
		case !wrote && ok:
			t.Errorf("key %q: got winner %v, want none", key, got)
		case wrote && (!ok || got.Dot != want.Dot || got.Tombstone != want.Tombstone):
			t.Errorf("key %q: got winner %v, want %v", key, got, want)
		}
	}
}

// W=2 of N=2 with one home replica cut off: a sloppy write succeeds through
// the fallback, which keeps a hint; a sloppy read finds the value there;
// once the owner is back the hint is delivered and the hint store empties.
func TestSloppyWriteHintedHandoff(t *testing.T) {
	inBubble(t, 11, 3, func(cfg *Config) { cfg.Preference = fixedPreference([]uint64{1, 2, 3}) }, func(t *testing.T, c *cluster) {
		c.net.Isolate(2)
		res, err := put(c.engines[1], "k", "v1", WriteOptions{N: 2, W: 2, Sloppy: true})
		if err != nil {
			t.Fatalf("sloppy put: got %v, want success", err)
		}
		if res.Acked != 2 || res.Hinted != 1 {
			t.Fatalf("sloppy put: got %d acks (%d hinted), want 2 (1 hinted)", res.Acked, res.Hinted)
		}
		if got := c.engines[3].Stats().HintsPending; got != 1 {
			t.Fatalf("node 3 hints pending: got %d, want 1", got)
		}
		if _, ok := c.state(3, "k"); ok {
			t.Fatalf("fallback node 3 stored the key as its own; want only a hint")
		}
		r, err := get(c.engines[1], "k", ReadOptions{N: 2, R: 2, Sloppy: true})
		if err != nil || describe(r) != `"v1"` {
			t.Fatalf("sloppy read: got %s, %v; want \"v1\"", describe(r), err)
		}
		if _, err := get(c.engines[1], "k", ReadOptions{N: 2, R: 2}); !errors.Is(err, kv.ErrUnavailable) {
			t.Fatalf("strict read R=2 with a home replica cut off: got %v, want UNAVAILABLE", err)
		}

		c.net.Heal()
		waitFor(t, 5*time.Second, "hint delivered to node 2", func() bool {
			st, ok := c.state(2, "k")
			w, _ := st.Winner()
			return ok && string(w.Value) == "v1" && c.engines[3].Stats().HintsPending == 0
		})
		entries, _, _ := c.stores[3].Scan(context.Background(), hintNamespace, nil, 0)
		if len(entries) != 0 {
			t.Errorf("node 3 hint records after delivery: got %d, want 0", len(entries))
		}
		if s := c.engines[3].Stats(); s.HintsDelivered != 1 || s.HintsStored != 1 {
			t.Errorf("node 3 stats: got stored %d delivered %d, want 1 and 1", s.HintsStored, s.HintsDelivered)
		}
	})
}

// A hint whose owner stays away longer than the hint window is dropped,
// from the index and from the store.
func TestHintExpires(t *testing.T) {
	inBubble(t, 12, 3, func(cfg *Config) {
		cfg.Preference = fixedPreference([]uint64{1, 2, 3})
		cfg.HintWindow = time.Second
		cfg.HandoffInterval = -1
	}, func(t *testing.T, c *cluster) {
		c.net.Isolate(2)
		if _, err := put(c.engines[1], "k", "v", WriteOptions{N: 2, W: 2, Sloppy: true}); err != nil {
			t.Fatalf("sloppy put: %v", err)
		}
		time.Sleep(2 * time.Second) // virtual: past the window
		if _, err := c.engines[3].HandoffOnce(context.Background()); err != nil {
			t.Fatalf("HandoffOnce: %v", err)
		}
		s := c.engines[3].Stats()
		if s.HintsPending != 0 || s.HintsExpired != 1 {
			t.Errorf("after the window: got %d pending, %d expired; want 0 and 1", s.HintsPending, s.HintsExpired)
		}
		if entries, _, _ := c.stores[3].Scan(context.Background(), hintNamespace, nil, 0); len(entries) != 0 {
			t.Errorf("hint records after expiry: got %d, want 0", len(entries))
		}
	})
}

// A delete is not undone by a replica that missed it: after the heal, read
// repair spreads the tombstone, and every replica reads the key as absent;
// once the grace period has passed every replica collects the tombstone,
// and the key still reads as absent.
func TestTombstoneNotResurrected(t *testing.T) {
	inBubble(t, 13, 3, withCollection([]uint64{1, 2, 3}, -1, -1), func(t *testing.T, c *cluster) {
		if _, err := put(c.engines[1], "k", "v", WriteOptions{N: 3, W: 3}); err != nil {
			t.Fatalf("put: %v", err)
		}
		c.net.Isolate(3)
		if _, err := c.engines[1].Delete(context.Background(), testNS, []byte("k"), WriteOptions{N: 3, W: 2}); err != nil {
			t.Fatalf("delete with node 3 away: %v", err)
		}
		if r, err := get(c.engines[3], "k", ReadOptions{N: 3, R: 1}); err != nil || !r.Found {
			t.Fatalf("isolated node 3 before heal: got %s, %v; want the old value (it missed the delete)", describe(r), err)
		}
		c.net.Heal()
		// Read from the stale node itself: its old value must lose.
		r, err := get(c.engines[3], "k", ReadOptions{N: 3, R: 3, Repair: leaderless.RepairBlocking})
		if err != nil || r.Found {
			t.Fatalf("read after heal: got %s, %v; want absent", describe(r), err)
		}
		if r.Agreed != 2 || r.Repaired != 1 {
			t.Errorf("read after heal: got agreed %d repaired %d, want 2 and 1", r.Agreed, r.Repaired)
		}
		for _, id := range c.ids {
			st, ok := c.state(id, "k")
			if !ok || !st.Absent() {
				t.Errorf("node %d: got state %v, want a tombstone", id, st)
			}
			if r, err := get(c.engines[id], "k", ReadOptions{N: 3, R: 1}); err != nil || r.Found {
				t.Errorf("node %d R=1 read: got %s, %v; want absent", id, describe(r), err)
			}
		}
		time.Sleep(testGrace)
		if got := c.collectAll(c.ids...); fmt.Sprint(got) != "[1 1 1]" {
			t.Fatalf("collected past the grace: got %v, want [1 1 1]", got)
		}
		for _, id := range c.ids {
			if err := c.engines[id].AntiEntropyOnce(context.Background()); err != nil {
				t.Fatalf("anti-entropy on node %d: %v", id, err)
			}
		}
		for _, id := range c.ids {
			if st, ok := c.state(id, "k"); ok {
				t.Errorf("node %d after collection: got state %v, want none", id, st)
			}
			if r, err := get(c.engines[id], "k", ReadOptions{N: 3, R: 3, Repair: leaderless.RepairBlocking}); err != nil || r.Found {
				t.Errorf("node %d R=3 read after collection: got %s, %v; want absent", id, describe(r), err)
			}
		}
	})
}

// W=2 when two of the three replicas are cut off: the write fails with
// UNAVAILABLE and says it is indeterminate (the coordinator's own replica
// applied it and it is not rolled back).
func TestQuorumLostIsUnavailableAndIndeterminate(t *testing.T) {
	inBubble(t, 14, 3, func(cfg *Config) { cfg.Preference = fixedPreference([]uint64{1, 2, 3}) }, func(t *testing.T, c *cluster) {
		c.net.Isolate(1)
		res, err := put(c.engines[1], "k", "v", WriteOptions{N: 3, W: 2, Sloppy: true})
		if err == nil {
			t.Fatalf("put with quorum lost: got success, want UNAVAILABLE")
		}
		if code := kv.CodeOf(err); code != kv.CodeUnavailable {
			t.Errorf("code: got %s, want %s", code, kv.CodeUnavailable)
		}
		if !errors.Is(err, ErrIndeterminate) || !errors.Is(err, leaderless.ErrUnavailable) || !res.Indeterminate {
			t.Errorf("got %v (indeterminate %v), want an indeterminate write", err, res.Indeterminate)
		}
		for _, want := range []string{"only 1 of 2 required replicas answered", "indeterminate"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message: got %q, want it to contain %q", err.Error(), want)
			}
		}
		if s := c.engines[1].Stats(); s.WritesFailed != 1 || s.WritesIndeterminate != 1 {
			t.Errorf("stats: got failed %d indeterminate %d, want 1 and 1", s.WritesFailed, s.WritesIndeterminate)
		}
		// Reads need R as well.
		if _, err := get(c.engines[1], "k", ReadOptions{N: 3, R: 2}); kv.CodeOf(err) != kv.CodeUnavailable {
			t.Errorf("read R=2: got %v, want UNAVAILABLE", err)
		}
	})
}

// Table of request errors that need no network fault.
func TestRequestErrors(t *testing.T) {
	inBubble(t, 15, 3, func(cfg *Config) { cfg.Preference = fixedPreference([]uint64{1, 2, 3}) }, func(t *testing.T, c *cluster) {
		tests := []struct {
			name string
			node uint64
			opts WriteOptions
			code kv.Code
			is   error
		}{
			{"not a home replica", 3, WriteOptions{N: 2, W: 1}, kv.CodeNotLeader, ErrNotReplica},
			{"W above N", 1, WriteOptions{N: 2, W: 3}, kv.CodeInvalid, leaderless.ErrInvalidPlan},
			{"N above the preference list", 1, WriteOptions{N: 4, W: 1}, kv.CodeInvalid, leaderless.ErrInvalidPlan},
			{"N zero", 1, WriteOptions{W: 1}, kv.CodeInvalid, leaderless.ErrInvalidPlan},
		}
		for _, tc := range tests {
			_, err := put(c.engines[tc.node], "k", "v", tc.opts)
			if kv.CodeOf(err) != tc.code || !errors.Is(err, tc.is) {
				t.Errorf("%s: got %v, want code %s wrapping %v", tc.name, err, tc.code, tc.is)
			}
		}
	})
}

// In sibling mode, writes made concurrently on both sides of a partition
// are both kept; a write with the read's context resolves them.
func TestSiblingsKeptAndResolved(t *testing.T) {
	inBubble(t, 16, 2, func(cfg *Config) { cfg.Preference = fixedPreference([]uint64{1, 2}) }, func(t *testing.T, c *cluster) {
		w := WriteOptions{N: 2, W: 1, KeepSiblings: true}
		r := ReadOptions{N: 2, R: 2, KeepSiblings: true, Repair: leaderless.RepairBlocking}
		c.net.Isolate(1)
		if _, err := put(c.engines[1], "k", "left", w); err != nil {
			t.Fatal(err)
		}
		if _, err := put(c.engines[2], "k", "right", w); err != nil {
			t.Fatal(err)
		}
		c.net.Heal()
		res, err := get(c.engines[1], "k", r)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Siblings) != 2 {
			t.Fatalf("after concurrent writes: got %d siblings %v, want 2", len(res.Siblings), res.Siblings)
		}
		w.Context = res.Context
		if _, err := put(c.engines[2], "k", "merged", w); err != nil {
			t.Fatal(err)
		}
		res, err = get(c.engines[1], "k", r)
		if err != nil || len(res.Siblings) != 1 || string(res.Value) != "merged" {
			t.Fatalf("after resolving: got %v siblings, %v; want the one value \"merged\"", res.Siblings, err)
		}
	})
}

// A full hint store refuses hints: the sloppy write then fails rather than
// lose the copy.
func TestHintLimitRefuses(t *testing.T) {
	inBubble(t, 17, 3, func(cfg *Config) {
		cfg.Preference = fixedPreference([]uint64{1, 2, 3})
		cfg.HintLimit = 1
		cfg.HandoffInterval = -1
	}, func(t *testing.T, c *cluster) {
		c.net.Isolate(2)
		if _, err := put(c.engines[1], "a", "v", WriteOptions{N: 2, W: 2, Sloppy: true}); err != nil {
			t.Fatalf("first sloppy put: %v", err)
		}
		_, err := put(c.engines[1], "b", "v", WriteOptions{N: 2, W: 2, Sloppy: true})
		if kv.CodeOf(err) != kv.CodeUnavailable || !errors.Is(err, ErrIndeterminate) {
			t.Fatalf("second sloppy put with the hint store full: got %v, want UNAVAILABLE (indeterminate: node 1 has it)", err)
		}
		if got := c.engines[3].Stats().HintsRefused; got != 1 {
			t.Errorf("hints refused: got %d, want 1", got)
		}
	})
}

// Close stops everything: requests after it are refused.
func TestClosedEngineRefuses(t *testing.T) {
	inBubble(t, 18, 2, nil, func(t *testing.T, c *cluster) {
		c.engines[1].Close()
		if _, err := put(c.engines[1], "k", "v", WriteOptions{N: 2, W: 1}); !errors.Is(err, ErrClosed) {
			t.Errorf("put after Close: got %v, want ErrClosed", err)
		}
		if _, err := get(c.engines[1], "k", ReadOptions{N: 2, R: 1}); !errors.Is(err, ErrClosed) {
			t.Errorf("get after Close: got %v, want ErrClosed", err)
		}
	})
}

// Blind writes of one key racing on every node are all kept as siblings:
// each replica's read-merge-write of a key is atomic, so no merge loses
// another's sibling.
func TestConcurrentBlindWritesAllKept(t *testing.T) {
	inBubble(t, 19, 3, func(cfg *Config) { cfg.Preference = fixedPreference([]uint64{1, 2, 3}) }, func(t *testing.T, c *cluster) {
		const perNode = 10
		errs := make(chan error, 3*perNode)
		for _, id := range c.ids {
			for i := range perNode {
				go func() {
					_, err := put(c.engines[id], "k", fmt.Sprintf("%d-%d", id, i), WriteOptions{N: 3, W: 2, KeepSiblings: true})
					errs <- err
				}()
			}
		}
		for range 3 * perNode {
			if err := <-errs; err != nil {
				t.Fatalf("concurrent put: %v", err)
			}
		}
		res, err := get(c.engines[1], "k", ReadOptions{N: 3, R: 3, KeepSiblings: true, Repair: leaderless.RepairBlocking})
		if err != nil {
			t.Fatal(err)
		}
		// Writes coordinated by one node see that node's earlier ones
		// only through the client's context, which is nil here: every
		// write is concurrent with every other.
		if got := len(res.Siblings); got != 3*perNode {
			t.Errorf("siblings after %d blind writes: got %d, want %d", 3*perNode, got, 3*perNode)
		}
	})
}
