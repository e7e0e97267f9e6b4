package primary

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// TestSyncFailoverLosesNoAckedWrite kills the primary under a writer in
// sync mode; the control plane promotes an in-sync replica, and every
// write acknowledged before or after is readable from the new primary.
//
// The network delays, jitters and drops messages, so replication runs
// through its resend paths.
func TestSyncFailoverLosesNoAckedWrite(t *testing.T) {
	const seed = 7
	c := newCluster(t, seed, 3, failover.AckPolicy{Mode: failover.AckSync, K: 1}, nil)
	c.net.SetLatency(100*time.Microsecond, 2*time.Millisecond)
	c.net.SetDropRate(0.02)
	old := c.primary(5 * time.Second)
	w := c.startWriter("k", func() failover.NodeID {
		_, id := c.auth.current()
		return id
	})
	c.waitFor("50 acknowledged writes and replicas in the control plane's in-sync record", 5*time.Second, func() bool {
		return w.acked() >= 50 && len(c.auth.record().Members) > 0
	})
	c.kill(old)
	before := w.acked()
	c.waitFor("a promotion and 50 more acknowledged writes", 10*time.Second, func() bool {
		_, id := c.auth.current()
		return id != old && w.acked() >= before+50
	})
	ops := w.halt()
	epoch, cur := c.auth.current()
	if epoch < 2 {
		c.fatalf("got epoch %d after the failover, want >= 2", epoch)
	}
	acked, lost := 0, 0
	for _, o := range ops {
		if o.err != nil {
			continue
		}
		acked++
		r, err := c.read(cur, o.key, -1)
		if err != nil {
			c.fatalf("read %s from new primary %d: %v", o.key, cur, err)
		}
		if !r.Found || string(r.Value.Data) != o.val {
			lost++
			t.Errorf("seed %d: key %s acknowledged by node %d: got found=%v %q from node %d, want %q", seed, o.key, o.node, r.Found, r.Value.Data, cur, o.val)
		}
	}
	t.Logf("seed %d: %d writes, %d acknowledged, %d lost; epoch %d primary %d", seed, len(ops), acked, lost, epoch, cur)
}

// TestAsyncFailoverCountsLostWrites partitions an async primary away
// while a client keeps writing to it. The writes it acknowledged after
// the cut never reached a replica; once it returns, exactly those are in
// its lost-writes record, and nothing else is.
//
// With a tail shorter than the lost suffix, the entries that had left it
// are counted without their contents, and the total is still exact.
func TestAsyncFailoverCountsLostWrites(t *testing.T) {
	for _, tc := range []struct {
		name string
		seed int64
		tail int
	}{
		{"whole suffix in tail", 11, 1 << 16},
		{"suffix longer than tail", 12, 64},
	} {
		t.Run(tc.name, func(t *testing.T) { testAsyncLost(t, tc.seed, tc.tail) })
	}
}

func testAsyncLost(t *testing.T, seed int64, tail int) {
	c := newCluster(t, seed, 3, failover.AckPolicy{Mode: failover.AckAsync}, func(cfg *Config) {
		cfg.TailEntries = tail
		cfg.MaxInflight = min(cfg.MaxInflight, tail)
		cfg.MaxBatchEntries = min(cfg.MaxBatchEntries, tail)
	})
	old := c.primary(5 * time.Second)
	w := c.startWriter("a", func() failover.NodeID { return old })
	c.waitFor("30 acknowledged writes", 5*time.Second, func() bool { return w.acked() >= 30 })
	c.net.Isolate(transportID(old))
	c.waitFor("the isolated primary to refuse with lease lost", 5*time.Second, func() bool {
		ops := w.snapshot()
		return len(ops) > 0 && errors.Is(ops[len(ops)-1].err, failover.ErrLeaseLost)
	})
	ops := w.halt()
	var cur failover.NodeID
	c.waitFor("a promotion", 5*time.Second, func() bool {
		_, cur = c.auth.current()
		return cur != old
	})
	if _, err := c.write(cur, "after", "1"); err != nil {
		c.waitFor("the new primary to take writes", 5*time.Second, func() bool {
			_, err := c.write(cur, "after", "1")
			return err == nil
		})
	}
	epoch, _ := c.auth.current()
	c.net.Heal()
	c.waitFor("the old primary to rejoin as a caught-up replica", 10*time.Second, func() bool {
		s := c.status(old)
		return s.Role == Replica && s.Epoch == epoch && !s.NeedSnapshot && s.Applied >= c.status(cur).Applied && s.Lag.Time < time.Second
	})

	missing := map[string]bool{}
	for _, o := range ops {
		if o.err != nil {
			continue
		}
		r, err := c.read(cur, o.key, -1)
		if err != nil {
			c.fatalf("read %s from node %d: %v", o.key, cur, err)
		}
		if !r.Found {
			missing[o.key] = true
		} else if string(r.Value.Data) != o.val {
			c.fatalf("key %s: got %q, want %q", o.key, r.Value.Data, o.val)
		}
	}
	recorded := map[string]bool{}
	var unrecorded uint64
	for _, id := range c.ids {
		lws, err := c.nodes[id].eng.LostWrites(t.Context(), testShard)
		if err != nil {
			c.fatalf("lost writes of node %d: %v", id, err)
		}
		st := c.status(id)
		if got := st.Lost - st.LostUnrecorded; got != uint64(len(lws)) {
			c.fatalf("node %d: got lost count %d (%d unrecorded), want %d recorded (its record)", id, st.Lost, st.LostUnrecorded, len(lws))
		}
		if id != old && st.Lost != 0 {
			c.fatalf("node %d, a replica that was never cut off: got %d lost writes, want 0", id, st.Lost)
		}
		unrecorded += st.LostUnrecorded
		for _, lw := range lws {
			for _, o := range lw.Batch.Ops {
				recorded[string(o.Key)] = true
			}
		}
	}
	if len(missing) == 0 {
		c.fatalf("got no acknowledged write missing after the failover, want some (the test lost its point)")
	}
	if got := uint64(len(recorded)) + unrecorded; got != uint64(len(missing)) {
		c.fatalf("got %d lost writes (%d recorded), want %d (acknowledged but missing)", got, len(recorded), len(missing))
	}
	if tail >= len(ops) && unrecorded != 0 {
		c.fatalf("got %d unrecorded lost writes with a tail of %d, want 0", unrecorded, tail)
	}
	for k := range missing {
		if !recorded[k] && unrecorded == 0 {
			c.fatalf("acknowledged write %s is missing from the new primary but in no lost record", k)
		}
		// Moved aside, never merged: the returning node no longer shows it.
		if r, err := c.read(old, k, -1); err != nil || r.Found {
			c.fatalf("read %s on the returned node: got found=%v err=%v, want not found", k, r.Found, err)
		}
	}
	for k := range recorded {
		if !missing[k] {
			c.fatalf("write %s is in a lost record but was not an acknowledged write missing from the new primary", k)
		}
	}
	t.Logf("seed %d: %d writes, %d acknowledged but lost: %d recorded, %d counted only", seed, len(ops), len(missing), len(recorded), unrecorded)
}

// TestFencingStalePrimary cuts the primary off with a client still
// writing to it: it refuses once its lease window ends, before the new
// primary is promoted, and after the partition heals it refuses as a
// replica of the newer epoch.
func TestFencingStalePrimary(t *testing.T) {
	const seed = 13
	c := newCluster(t, seed, 3, failover.AckPolicy{Mode: failover.AckAsync}, nil)
	old := c.primary(5 * time.Second)
	w := c.startWriter("f", func() failover.NodeID { return old })
	c.waitFor("20 acknowledged writes", 5*time.Second, func() bool { return w.acked() >= 20 })
	c.net.Isolate(transportID(old))
	c.waitFor("a promotion", 5*time.Second, func() bool {
		_, id := c.auth.current()
		return id != old
	})
	c.net.Heal()
	c.waitFor("the old primary to step down", 5*time.Second, func() bool {
		return c.status(old).Role == Replica
	})
	ops := w.halt()
	proms := c.auth.promotions()
	promotedAt := proms[len(proms)-1].At
	refusedLease, refusedLeader, acked := false, false, 0
	for _, o := range ops {
		switch {
		case o.err == nil:
			acked++
			if o.start >= promotedAt {
				c.fatalf("write %s started at %v, after the promotion at %v, was acknowledged by the old primary", o.key, time.Duration(o.start), time.Duration(promotedAt))
			}
		case errors.Is(o.err, failover.ErrLeaseLost):
			refusedLease = true
			if code := kv.CodeOf(o.err); code != kv.CodeUnavailable {
				c.fatalf("lease lost refusal: got code %s, want %s", code, kv.CodeUnavailable)
			}
		case errors.Is(o.err, ErrNotPrimary):
			refusedLeader = true
			if code := kv.CodeOf(o.err); code != kv.CodeNotLeader {
				c.fatalf("not primary refusal: got code %s, want %s", code, kv.CodeNotLeader)
			}
		}
	}
	if !refusedLease {
		c.fatalf("got no lease-lost refusal from the cut-off primary, want some")
	}
	_, err := c.write(old, "late", "x")
	if !errors.Is(err, ErrNotPrimary) {
		c.fatalf("write to the old primary after heal: got %v, want %v", err, ErrNotPrimary)
	}
	t.Logf("seed %d: %d writes, %d acknowledged, lease refusals %v, not-primary refusals %v", seed, len(ops), acked, refusedLease, refusedLeader)
}

// TestReplicaReadLag reads from a replica with its lag, and refuses once
// the replica has not heard from the primary for longer than the bound.
func TestReplicaReadLag(t *testing.T) {
	const seed = 17
	c := newCluster(t, seed, 3, failover.AckPolicy{Mode: failover.AckAsync}, nil)
	p := c.primary(5 * time.Second)
	for i := range 20 {
		if _, err := c.write(p, fmt.Sprintf("r%d", i), "v"); err != nil {
			c.fatalf("write: %v", err)
		}
	}
	var r failover.NodeID
	for _, id := range c.ids {
		if id != p {
			r = id
			break
		}
	}
	c.waitFor("the replica to catch up", 5*time.Second, func() bool {
		s := c.status(r)
		return s.Applied == c.status(p).Applied && s.Lag.Time < 200*time.Millisecond
	})
	got, err := c.read(r, "r19", time.Second)
	if err != nil || !got.Found || got.Role != Replica || got.Lag.LSN != 0 {
		c.fatalf("replica read: got %+v, %v; want found on a replica with LSN lag 0", got, err)
	}
	if got, err := c.read(p, "r19", 0); err != nil || !got.Found || got.Lag != (Lag{}) || got.Role != Primary {
		c.fatalf("primary read with no staleness allowed: got %+v, %v; want found with zero lag", got, err)
	}

	c.net.Block(transportID(p), transportID(r))
	if _, err := c.write(p, "fresh", "v"); err != nil {
		c.fatalf("write: %v", err)
	}
	c.waitFor("the replica's lag to pass 100ms", 5*time.Second, func() bool { return c.status(r).Lag.Time > 100*time.Millisecond })
	_, err = c.read(r, "fresh", 50*time.Millisecond)
	if !errors.Is(err, ErrTooStale) || kv.CodeOf(err) != kv.CodeUnavailable {
		c.fatalf("read with a 50ms bound from a replica 100ms behind: got %v, want UNAVAILABLE %v", err, ErrTooStale)
	}
	got, err = c.read(r, "fresh", -1)
	if err != nil || got.Found || got.Lag.Time <= 100*time.Millisecond {
		c.fatalf("unbounded read from a stale replica: got %+v, %v; want not found, lag > 100ms", got, err)
	}
	c.net.Heal()
	c.waitFor("the replica to see the fresh write", 5*time.Second, func() bool {
		got, err := c.read(r, "fresh", 200*time.Millisecond)
		return err == nil && got.Found
	})
}

// TestSnapshotCatchUp cuts a replica off while the primary writes more
// than its retained tail; it catches up by snapshot.
func TestSnapshotCatchUp(t *testing.T) {
	const seed = 19
	c := newCluster(t, seed, 3, failover.AckPolicy{Mode: failover.AckAsync}, func(cfg *Config) {
		cfg.MaxBatchEntries, cfg.MaxInflight, cfg.TailEntries = 8, 16, 32
	})
	p := c.primary(5 * time.Second)
	var r failover.NodeID
	for _, id := range c.ids {
		if id != p {
			r = id
			break
		}
	}
	c.net.Block(transportID(p), transportID(r))
	for i := range 200 {
		if _, err := c.write(p, fmt.Sprintf("s%03d", i), fmt.Sprint(i)); err != nil {
			c.fatalf("write %d: %v", i, err)
		}
	}
	if _, err := c.write(p, "s000", "overwritten"); err != nil {
		c.fatalf("write: %v", err)
	}
	c.net.Heal()
	c.waitFor("the replica to catch up", 5*time.Second, func() bool { return c.status(r).Applied == c.status(p).Applied })
	for i := range 200 {
		want := fmt.Sprint(i)
		if i == 0 {
			want = "overwritten"
		}
		got, err := c.read(r, fmt.Sprintf("s%03d", i), -1)
		if err != nil || !got.Found || string(got.Value.Data) != want {
			c.fatalf("key s%03d on the replica: got %+v, %v; want %q", i, got, err, want)
		}
		pv, _ := c.read(p, fmt.Sprintf("s%03d", i), -1)
		if pv.Value.Version != got.Value.Version {
			c.fatalf("key s%03d: got version %d on the replica, want %d (the primary's)", i, got.Value.Version, pv.Value.Version)
		}
	}
}

// TestRestartRecoversLog restarts a replica: it comes back with the epoch,
// log position and tail it persisted, and catches up from there.
func TestRestartRecoversLog(t *testing.T) {
	const seed = 23
	policy := failover.AckPolicy{Mode: failover.AckSemi, K: 1}
	c := newCluster(t, seed, 3, policy, nil)
	p := c.primary(5 * time.Second)
	var r failover.NodeID
	for _, id := range c.ids {
		if id != p {
			r = id
			break
		}
	}
	for i := range 30 {
		if _, err := c.write(p, fmt.Sprintf("b%02d", i), "v"); err != nil {
			c.fatalf("write %d: %v", i, err)
		}
	}
	c.waitFor("the replica to catch up", 5*time.Second, func() bool { return c.status(r).Applied == c.status(p).Applied })
	before := c.status(r)
	c.kill(r)
	for i := 30; i < 50; i++ {
		if _, err := c.write(p, fmt.Sprintf("b%02d", i), "v"); err != nil {
			c.fatalf("write %d: %v", i, err)
		}
	}
	c.restart(r, policy)
	after := c.status(r)
	if after.Epoch != before.Epoch || after.Applied < before.Applied || after.LastEpoch != before.LastEpoch {
		c.fatalf("after restart: got epoch %d, applied %d (epoch %d); want epoch %d, applied >= %d (epoch %d)",
			after.Epoch, after.Applied, after.LastEpoch, before.Epoch, before.Applied, before.LastEpoch)
	}
	c.waitFor("the restarted replica to catch up", 5*time.Second, func() bool { return c.status(r).Applied == c.status(p).Applied })
	for i := range 50 {
		if got, err := c.read(r, fmt.Sprintf("b%02d", i), -1); err != nil || !got.Found {
			c.fatalf("key b%02d on the restarted replica: got %+v, %v; want found", i, got, err)
		}
	}
	if st := c.status(r); st.Lost != 0 {
		c.fatalf("got %d lost writes on a replica that only restarted, want 0", st.Lost)
	}
}

// TestPrimaryRestartKeepsOffice restarts the primary before its lease
// runs out: it takes office again in the same epoch, keeping the epoch's
// start in its history, and the replicas go on from where they were.
func TestPrimaryRestartKeepsOffice(t *testing.T) {
	const seed = 29
	policy := failover.AckPolicy{Mode: failover.AckSync, K: 2}
	c := newCluster(t, seed, 3, policy, nil)
	p := c.primary(5 * time.Second)
	for i := range 20 {
		if _, err := c.write(p, fmt.Sprintf("p%02d", i), "v"); err != nil {
			c.fatalf("write %d: %v", i, err)
		}
	}
	epoch, _ := c.auth.current()
	c.kill(p)
	c.restart(p, policy)
	c.waitFor("the restarted primary to take writes", 5*time.Second, func() bool {
		_, err := c.write(p, "p20", "v")
		return err == nil
	})
	if e, cur := c.auth.current(); e != epoch || cur != p {
		t.Skipf("seed %d: the control plane promoted node %d in epoch %d before the restart finished", seed, cur, e)
	}
	for i := 21; i < 40; i++ {
		if _, err := c.write(p, fmt.Sprintf("p%02d", i), "v"); err != nil {
			c.fatalf("write %d: %v", i, err)
		}
	}
	// Sync with K=2: every acknowledged write is on both replicas.
	for _, id := range c.ids {
		st := c.status(id)
		if st.Lost != 0 || st.Epoch != epoch {
			c.fatalf("node %d: got epoch %d, %d lost; want epoch %d, none lost", id, st.Epoch, st.Lost, epoch)
		}
		for i := range 40 {
			if got, err := c.read(id, fmt.Sprintf("p%02d", i), -1); err != nil || !got.Found {
				c.fatalf("key p%02d on node %d: got %+v, %v; want found", i, id, got, err)
			}
		}
	}
}

func TestRefusals(t *testing.T) {
	const seed = 31
	policy := failover.AckPolicy{Mode: failover.AckAsync}
	c := newCluster(t, seed, 3, policy, nil)
	p := c.primary(5 * time.Second)
	r := c.ids[0]
	if r == p {
		r = c.ids[1]
	}
	eng := c.nodes[r].eng
	tests := []struct {
		name string
		err  error
		want error
		code kv.Code
	}{
		{"write on a replica", func() error { _, err := c.write(r, "k", "v"); return err }(), ErrNotPrimary, kv.CodeNotLeader},
		{"write to an unknown shard", func() error { _, err := eng.Write(t.Context(), 99, kv.Batch{}); return err }(), ErrUnknownShard, kv.CodeNotFound},
		{"read of an unknown shard", func() error { _, err := eng.Read(t.Context(), 99, testNS, []byte("k"), -1); return err }(), ErrUnknownShard, kv.CodeNotFound},
		{"policy beyond the replicas", eng.AddShard(5, ShardConfig{Policy: failover.AckPolicy{Mode: failover.AckSemi, K: 3}, Members: c.ids}), failover.ErrInvalidPolicy, kv.CodeInternal},
		{"shard added twice", eng.AddShard(testShard, ShardConfig{Policy: policy, Members: c.ids}), nil, kv.CodeInternal},
	}
	for _, tc := range tests {
		if tc.err == nil || (tc.want != nil && !errors.Is(tc.err, tc.want)) || kv.CodeOf(tc.err) != tc.code {
			t.Errorf("seed %d: %s: got %v (code %s), want %v (code %s)", seed, tc.name, tc.err, kv.CodeOf(tc.err), tc.want, tc.code)
		}
	}
}

// A sync primary whose in-sync proposals commit but whose replies are
// lost (a timeout, then CONFLICT on every resend, neither carrying the
// record) learns the committed record from its reports: when a replica
// dies, its departure is recorded and writes go on with the other.
func TestSyncPrimaryLearnsRecordWithoutProposalReplies(t *testing.T) {
	const seed = 11
	c := newCluster(t, seed, 3, failover.AckPolicy{Mode: failover.AckSync, K: 1}, nil)
	p := c.primary(5 * time.Second)
	c.waitFor("both replicas in the control plane's in-sync record", 5*time.Second, func() bool {
		return len(c.auth.record().Members) == 2
	})
	c.nodes[p].client.loseISRReplies.Store(true)
	var victim failover.NodeID
	for _, id := range c.ids {
		if id != p {
			victim = id
			break
		}
	}
	c.kill(victim)
	c.waitFor("the dead replica out of the record and writes acknowledged again", 5*time.Second, func() bool {
		rec := c.auth.record()
		if slices.Contains(rec.Members, victim) || len(rec.Members) != 1 {
			return false
		}
		_, err := c.write(p, "after", "v")
		return err == nil
	})
}
