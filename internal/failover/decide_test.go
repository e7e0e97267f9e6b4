package failover

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	cfg := DefaultConfig() // lease 800ms, margin 100ms
	lease := Lease{Holder: 1, Epoch: 7, Granted: 10_000 * ms, Duration: cfg.LeaseDuration}
	expired := lease.ExpiredAt(cfg.Margin)
	shard := func(mode AckMode, degrade bool) Shard {
		return Shard{Epoch: 7, Primary: 1, Lease: lease, Policy: AckPolicy{Mode: mode, K: 1, AllowDegrade: degrade}}
	}
	r := func(id NodeID, applied LSN, epoch Epoch, inSync, alive bool) Replica {
		return Replica{ID: id, Applied: applied, LastEpoch: epoch, InSync: inSync, Alive: alive}
	}
	for _, tc := range []struct {
		name     string
		shard    Shard
		replicas []Replica
		now      int64
		want     Action
		wantNode NodeID
		wantLose bool
	}{
		{"lease still running", shard(AckAsync, false), []Replica{r(2, 9, 7, true, true)}, expired - 1, NoAction, 0, false},
		{"async: most up-to-date live", shard(AckAsync, false),
			[]Replica{r(2, 9, 7, true, true), r(3, 12, 7, false, true), r(4, 20, 7, true, false)}, expired, Promote, 3, true},
		{"newer epoch beats longer log", shard(AckAsync, false),
			[]Replica{r(2, 30, 6, true, true), r(3, 12, 7, false, true)}, expired, Promote, 3, true},
		{"tie goes to the lowest id", shard(AckAsync, false),
			[]Replica{r(5, 12, 7, true, true), r(3, 12, 7, true, true), r(4, 12, 7, true, true)}, expired, Promote, 3, true},
		{"the old primary is never a candidate", shard(AckAsync, false),
			[]Replica{r(1, 50, 7, true, true), r(2, 9, 7, true, true)}, expired, Promote, 2, true},
		{"async: nobody alive", shard(AckAsync, false), []Replica{r(2, 9, 7, true, false)}, expired, Unavailable, 0, false},
		{"sync: only in-sync replicas", shard(AckSync, false),
			[]Replica{r(2, 9, 7, true, true), r(3, 12, 7, false, true)}, expired, Promote, 2, false},
		{"sync: no live in-sync replica", shard(AckSync, false),
			[]Replica{r(2, 9, 7, true, false), r(3, 12, 7, false, true)}, expired, Unavailable, 0, false},
		{"sync degraded: falls back to async, says so", shard(AckSync, true),
			[]Replica{r(2, 9, 7, true, false), r(3, 12, 7, false, true)}, expired, Promote, 3, true},
		{"sync degrade unused when an in-sync replica lives", shard(AckSync, true),
			[]Replica{r(2, 9, 7, true, true), r(3, 12, 7, false, true)}, expired, Promote, 2, false},
		{"semi may lose", shard(AckSemi, false), []Replica{r(2, 9, 7, false, true)}, expired, Promote, 2, true},
		{"no primary yet, no lease", Shard{Policy: AckPolicy{Mode: AckSync, K: 1}},
			[]Replica{r(2, 0, 0, true, true), r(3, 0, 0, true, true)}, 0, Promote, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.shard, tc.replicas, tc.now, cfg)
			if d.Action != tc.want || d.Node != tc.wantNode || d.MayLoseAcked != tc.wantLose {
				t.Fatalf("got %v node %d mayLose=%v (%s), want %v node %d mayLose=%v", d.Action, d.Node, d.MayLoseAcked, d.Reason, tc.want, tc.wantNode, tc.wantLose)
			}
			if d.Reason == "" {
				t.Fatalf("got no reason")
			}
			if (d.Err() != nil) != (d.Action == Unavailable) || (d.Err() != nil && !errors.Is(d.Err(), ErrNoCandidate)) {
				t.Fatalf("got Err() %v for %v", d.Err(), d.Action)
			}
			if d.Action != Promote {
				return
			}
			e := tc.shard.Epoch + 1
			wantLease := Lease{Holder: d.Node, Epoch: e, Granted: tc.now, Duration: cfg.LeaseDuration}
			if d.Epoch != e || d.Lease != wantLease || d.ISR.Epoch != e || d.ISR.Version != 0 || len(d.ISR.Members) != 0 {
				t.Fatalf("got epoch %d lease %+v record %+v, want epoch %d lease %+v and an empty record", d.Epoch, d.Lease, d.ISR, e, wantLease)
			}
		})
	}
}

// TestDecideAgainstOracle checks Decide's choice against a brute-force
// one over random shards, and that the order of the reports never matters.
func TestDecideAgainstOracle(t *testing.T) {
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 3))
	cfg := DefaultConfig()
	for i := range 5000 {
		s := Shard{Epoch: Epoch(rng.IntN(4)), Primary: NodeID(rng.IntN(4)),
			Lease:  Lease{Holder: NodeID(rng.IntN(2)), Granted: rng.Int64N(1000), Duration: time.Duration(rng.Int64N(1000))},
			Policy: AckPolicy{Mode: AckMode(rng.IntN(3)), AllowDegrade: rng.IntN(2) == 0}}
		var reps []Replica
		for range rng.IntN(6) {
			reps = append(reps, Replica{ID: NodeID(1 + rng.IntN(8)), Applied: LSN(rng.IntN(4)), LastEpoch: Epoch(rng.IntN(4)),
				InSync: rng.IntN(2) == 0, Alive: rng.IntN(4) > 0})
		}
		now := rng.Int64N(2500)

		// Oracle: filter, then the candidate no other candidate beats.
		eligible := func(r Replica, inSyncOnly bool) bool {
			return r.ID != s.Primary && r.Alive && (!inSyncOnly || r.InSync)
		}
		better := func(a, b Replica) bool { // a strictly preferred to b
			ka := [3]int64{int64(a.LastEpoch), int64(a.Applied), -int64(a.ID)}
			kb := [3]int64{int64(b.LastEpoch), int64(b.Applied), -int64(b.ID)}
			for j := range ka {
				if ka[j] != kb[j] {
					return ka[j] > kb[j]
				}
			}
			return false
		}
		choose := func(inSyncOnly bool) (NodeID, bool) {
			for _, c := range reps {
				if !eligible(c, inSyncOnly) {
					continue
				}
				best := true
				for _, o := range reps {
					if eligible(o, inSyncOnly) && better(o, c) {
						best = false
					}
				}
				if best {
					return c.ID, true
				}
			}
			return 0, false
		}
		wantAction, wantNode, wantLose := NoAction, NodeID(0), false
		if s.Lease.Holder == 0 || now >= s.Lease.Granted+int64(s.Lease.Duration)+int64(cfg.Margin) {
			sync := s.Policy.Mode == AckSync
			node, ok := choose(sync)
			wantLose = !sync
			if !ok && sync && s.Policy.AllowDegrade {
				node, ok = choose(false)
				wantLose = true
			}
			wantAction, wantNode = Unavailable, 0
			if ok {
				wantAction, wantNode = Promote, node
			} else {
				wantLose = false
			}
		}

		d := Decide(s, reps, now, cfg)
		if d.Action != wantAction || d.Node != wantNode || d.MayLoseAcked != wantLose {
			t.Fatalf("seed %d case %d: shard %+v replicas %+v now %d: got %v %d mayLose=%v, want %v %d mayLose=%v",
				seed, i, s, reps, now, d.Action, d.Node, d.MayLoseAcked, wantAction, wantNode, wantLose)
		}
		rng.Shuffle(len(reps), func(a, b int) { reps[a], reps[b] = reps[b], reps[a] })
		if d2 := Decide(s, reps, now, cfg); d2.Action != d.Action || d2.Node != d.Node || d2.MayLoseAcked != d.MayLoseAcked {
			t.Fatalf("seed %d case %d: got %v %d after reordering the reports, want %v %d", seed, i, d2.Action, d2.Node, d.Action, d.Node)
		}
	}
}
