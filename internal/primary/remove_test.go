package primary

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/storage"
	"github.com/fulcrumdb/fulcrum/internal/transport/simnet"
)

// shardGoroutines counts the goroutines running a shard's code, in every
// engine of the process.
func shardGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "primary.(*shard).") {
			count++
		}
	}
	return count
}

// TestRemoveShard removes a sync shard from every node while its primary
// waits for acknowledgements that cannot come: the waiting write fails
// with ErrRemoved (outcome unknown), the shard's goroutines end, its log
// and position are deleted while its lost writes stay, and a shard added
// again under the same id starts empty.
func TestRemoveShard(t *testing.T) {
	const seed = 41
	policy := failover.AckPolicy{Mode: failover.AckSync, K: 1}
	c := newCluster(t, seed, 3, policy, func(cfg *Config) {
		// Replicas stay in the in-sync set while their acks are
		// blocked, so the write below waits instead of being refused.
		cfg.Failover.MaxLagTime = time.Minute
	})
	p := c.primary(5 * time.Second)
	c.waitFor("both replicas in the control plane's in-sync record", 5*time.Second, func() bool {
		return len(c.auth.record().Members) == 2
	})
	for _, k := range []string{"a", "b", "c"} {
		c.waitFor("a sync write", 5*time.Second, func() bool { _, err := c.write(p, k, "v"); return err == nil })
	}
	eng, st := c.nodes[p].eng, c.nodes[p].st
	// A lost write recorded earlier: the user's to recover, kept.
	lost := kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: testNS, Key: []byte("lost"), Value: []byte("x")}}}
	if _, err := st.Apply(t.Context(), kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: LostNamespace, Key: lostKey(testShard, 1, 99), Value: kv.AppendBatch(nil, &lost)}}}); err != nil {
		t.Fatal(err)
	}

	for _, id := range c.ids {
		if id != p {
			c.net.Block(transportID(id), transportID(p)) // no acks reach the primary
		}
	}
	last := c.status(p).Applied
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := eng.Write(ctx, testShard, kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: testNS, Key: []byte("pending"), Value: []byte("v")}}})
		done <- err
	}()
	c.waitFor("the write applied on the primary, waiting for acks", 5*time.Second, func() bool { return c.status(p).Applied == last+1 })
	last++

	if shardGoroutines() == 0 {
		t.Fatalf("seed %d: no shard goroutine found while the shard runs: the check below would prove nothing", seed)
	}
	if err := eng.RemoveShard(t.Context(), testShard); err != nil {
		t.Fatalf("seed %d: remove: %v", seed, err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrRemoved) || kv.CodeOf(err) != kv.CodeTimeout {
			t.Fatalf("seed %d: pending write: got %v (code %s), want ErrRemoved with TIMEOUT", seed, err, kv.CodeOf(err))
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("seed %d: the pending write did not end when its shard was removed", seed)
	}
	if _, err := eng.Status(testShard); !errors.Is(err, ErrUnknownShard) {
		t.Fatalf("seed %d: status after remove: got %v, want ErrUnknownShard", seed, err)
	}
	if _, err := c.write(p, "after", "v"); !errors.Is(err, ErrUnknownShard) || kv.CodeOf(err) != kv.CodeNotFound {
		t.Fatalf("seed %d: write after remove: got %v, want ErrUnknownShard (NOT_FOUND)", seed, err)
	}
	if err := eng.RemoveShard(t.Context(), testShard); !errors.Is(err, ErrUnknownShard) {
		t.Fatalf("seed %d: second remove: got %v, want ErrUnknownShard", seed, err)
	}
	for _, key := range [][]byte{stateKey(testShard), logKey(testShard, 1), logKey(testShard, last)} {
		if _, ok, err := st.Mark(key); err != nil || ok {
			t.Fatalf("seed %d: mark %x after remove: present %v, %v; want deleted", seed, key, ok, err)
		}
	}
	if lw, err := eng.LostWrites(t.Context(), testShard); err != nil || len(lw) != 1 || lw[0].LSN != 99 {
		t.Fatalf("seed %d: lost writes after remove: got %+v, %v; want the one recorded", seed, lw, err)
	}

	// Once every node has removed it, no goroutine of the shard is left.
	for _, id := range c.ids {
		if id != p {
			if err := c.nodes[id].eng.RemoveShard(t.Context(), testShard); err != nil {
				t.Fatalf("seed %d: remove on node %d: %v", seed, id, err)
			}
		}
	}
	c.waitFor("no shard goroutine left", 5*time.Second, func() bool { return shardGoroutines() == 0 })

	// Added again under the same id (the control plane out of reach, so
	// nothing moves it), the shard starts from an empty log.
	c.nodes[p].client.down.Store(true)
	if err := eng.AddShard(testShard, ShardConfig{Policy: policy, Members: c.ids}); err != nil {
		t.Fatalf("seed %d: add again: %v", seed, err)
	}
	if got := c.status(p); got.Applied != 0 || got.Epoch != 0 || got.Role != Replica || got.Lost != 0 {
		t.Fatalf("seed %d: re-added shard: got %+v, want an empty replica at epoch 0", seed, got)
	}
}

// stubAuthority answers nothing: the shards it serves stay replicas.
type stubAuthority struct{}

func (stubAuthority) Report(context.Context, int, ReplicaStatus) (Assignment, error) {
	return Assignment{}, kv.Errorf(kv.CodeUnavailable, "no control plane")
}

func (stubAuthority) Renew(context.Context, int, failover.NodeID, failover.Epoch) (failover.Lease, error) {
	return failover.Lease{}, kv.Errorf(kv.CodeUnavailable, "no control plane")
}

func (stubAuthority) ProposeISR(context.Context, int, failover.ISRProposal) (failover.ISRRecord, error) {
	return failover.ISRRecord{}, kv.Errorf(kv.CodeUnavailable, "no control plane")
}

// TestShardFailoverConfig: a shard added with its own failover bounds
// runs with them (and the intervals derived from them); one added
// without runs with the engine's.
func TestShardFailoverConfig(t *testing.T) {
	st, err := storage.Open(storage.Options{Dir: "/data", FS: vfs.NewMem(), Sync: storage.SyncNone, SweepInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	net := simnet.New(1)
	defer net.Close()
	cfg := testConfig(1, nil)
	eng, err := New(cfg, net.Endpoint(1), st, stubAuthority{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	members := []failover.NodeID{1, 2, 3}
	policy := failover.AckPolicy{Mode: failover.AckAsync}
	own := failover.ConfigFor(300 * time.Millisecond)
	for _, tc := range []struct {
		shard int
		fc    failover.Config
		want  failover.Config
	}{
		{1, failover.Config{}, cfg.Failover},
		{2, own, own},
	} {
		if err := eng.AddShard(tc.shard, ShardConfig{Policy: policy, Members: members, Failover: tc.fc}); err != nil {
			t.Fatalf("shard %d: %v", tc.shard, err)
		}
		s, err := eng.Status(tc.shard)
		if err != nil || s.Failover != tc.want {
			t.Fatalf("shard %d: got failover %+v, %v; want %+v", tc.shard, s.Failover, err, tc.want)
		}
	}
	s, _ := eng.shard(2)
	if want := cfg.WithFailover(own); s.cfg.ReportInterval != want.ReportInterval || s.cfg.HeartbeatInterval != want.HeartbeatInterval || s.cfg.RPCTimeout != want.RPCTimeout {
		t.Fatalf("shard 2 intervals: got report %v heartbeat %v rpc %v, want %v %v %v",
			s.cfg.ReportInterval, s.cfg.HeartbeatInterval, s.cfg.RPCTimeout, want.ReportInterval, want.HeartbeatInterval, want.RPCTimeout)
	}
	bad := own
	bad.MaxDrift = bad.LeaseDuration
	if err := eng.AddShard(3, ShardConfig{Policy: policy, Members: members, Failover: bad}); !errors.Is(err, failover.ErrInvalidConfig) {
		t.Fatalf("shard with invalid bounds: got %v, want ErrInvalidConfig", err)
	}
	if _, err := eng.Status(3); !errors.Is(err, ErrUnknownShard) {
		t.Fatalf("shard with invalid bounds: got status error %v, want ErrUnknownShard", err)
	}
}
