package raftstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/placement"
	"github.com/fulcrumdb/fulcrum/internal/raftlog"
	"github.com/fulcrumdb/fulcrum/internal/storage"
	"github.com/fulcrumdb/fulcrum/internal/transport"
	"github.com/fulcrumdb/fulcrum/internal/transport/simnet"
)

// testCluster is a set of nodes over simnet, each with its own in-memory
// crashable filesystem holding its raft log and state machine.
type testCluster struct {
	t      testing.TB
	net    *simnet.Network
	ids    []uint64
	specs  []GroupSpec
	cfg    func(*Config)
	mu     sync.Mutex
	nodes  map[uint64]*testNode
	crashR *rand.Rand
	// peersFor, when set, gives the Peers of a group's replica on a node
	// (a replica moved in later has none), instead of spec.Peers.
	peersFor func(node, group uint64) []uint64
	// trace, when set, records what happened, for a failure's report.
	trace     *tracer
	traceLast map[string]string // mover goroutine only
}

// tracer keeps timestamped lines of a run.
type tracer struct {
	mu    sync.Mutex
	start time.Time
	lines []string
}

func (tr *tracer) add(format string, args ...any) {
	if tr == nil {
		return
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.lines = append(tr.lines, fmt.Sprintf("%8.3fms ", float64(time.Since(tr.start).Microseconds())/1000)+fmt.Sprintf(format, args...))
}

type testNode struct {
	id    uint64
	fs    *vfs.MemFS
	ep    transport.Endpoint
	log   *raftlog.Store
	store *storage.Store
	node  *Node
}

const testNS = "ns"

func newTestCluster(t testing.TB, seed int64, nodes, shards int, mutate func(*Config)) *testCluster {
	c := &testCluster{
		t:      t,
		net:    simnet.New(seed),
		nodes:  make(map[uint64]*testNode),
		cfg:    mutate,
		crashR: rand.New(rand.NewPCG(uint64(seed), 7)),
	}
	for i := 1; i <= nodes; i++ {
		c.ids = append(c.ids, uint64(i))
	}
	for s := 0; s < shards; s++ {
		c.specs = append(c.specs, GroupSpec{ID: uint64(s + 1), Namespace: testNS, Shard: s, Shards: shards, Peers: c.ids})
	}
	t.Cleanup(c.close)
	for _, id := range c.ids {
		if err := c.start(id, vfs.NewCrashableMem()); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// start opens a node on fs; it may run on any goroutine, so it reports
// errors instead of failing the test.
func (c *testCluster) start(id uint64, fs *vfs.MemFS) error {
	ep := c.net.Endpoint(transport.NodeID(id))
	lg, err := raftlog.Open(raftlog.Options{Dir: "/raft", FS: fs})
	if err != nil {
		return fmt.Errorf("node %d: raftlog: %w", id, err)
	}
	st, err := storage.Open(storage.Options{Dir: "/data", FS: fs, Sync: storage.SyncNone, SweepInterval: time.Hour})
	if err != nil {
		return fmt.Errorf("node %d: storage: %w", id, err)
	}
	cfg := Config{NodeID: id, Transport: ep, Log: lg, Store: st, TickInterval: 10 * time.Millisecond, ElectionTicks: 10, HeartbeatTicks: 1}
	if c.cfg != nil {
		c.cfg(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		return fmt.Errorf("node %d: %w", id, err)
	}
	tn := &testNode{id: id, fs: fs, ep: ep, log: lg, store: st, node: n}
	ep.Handle(transport.KindRaft, n)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, spec := range c.specs {
		if c.peersFor != nil {
			spec.Peers = c.peersFor(id, spec.ID)
		}
		if err := n.CreateGroup(ctx, spec); err != nil {
			tn.stop()
			return fmt.Errorf("node %d: create group %d: %w", id, spec.ID, err)
		}
	}
	c.mu.Lock()
	c.nodes[id] = tn
	c.mu.Unlock()
	return nil
}

func (tn *testNode) stop() {
	tn.ep.Close()
	tn.node.Close()
	tn.store.Close()
	tn.log.Close()
}

// crash cuts the node off, keeps only what it had synced (plus a random
// part of the rest) and restarts it from that.
func (c *testCluster) crash(id uint64) {
	c.trace.add("crash node %d", id)
	c.mu.Lock()
	tn := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if tn == nil {
		return
	}
	// Cut the network first: everything this node told others was
	// persisted before, so the clone holds it (raft's assumption).
	tn.ep.Close()
	clone := tn.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: c.crashR.IntN(101), RNG: rand.New(rand.NewPCG(c.crashR.Uint64(), 1))})
	tn.node.Close()
	tn.store.Close()
	tn.log.Close()
	if err := c.start(id, clone); err != nil {
		c.t.Errorf("restart after crash: %v", err)
	}
}

func (c *testCluster) node(id uint64) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tn := c.nodes[id]; tn != nil {
		return tn.node
	}
	return nil
}

func (c *testCluster) close() {
	c.mu.Lock()
	nodes := c.nodes
	c.nodes = map[uint64]*testNode{}
	c.mu.Unlock()
	for _, tn := range nodes {
		tn.stop()
	}
	c.net.Close()
}

func (c *testCluster) groupOf(key string) uint64 {
	return uint64(placement.ShardOf(testNS, []byte(key), len(c.specs)) + 1)
}

// leader waits for the group to have a leader every live node agrees on.
func (c *testCluster) leader(group uint64, within time.Duration) uint64 {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		var lead uint64
		agree := true
		c.mu.Lock()
		for _, tn := range c.nodes {
			st, ok := tn.node.Status(group)
			if !ok || st.Leader == 0 || (lead != 0 && st.Leader != lead) {
				agree = false
				break
			}
			lead = st.Leader
		}
		c.mu.Unlock()
		if agree && lead != 0 {
			return lead
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("group %d: no agreed leader within %v", group, within)
	return 0
}

func set(key, value string) kv.Batch {
	return kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: testNS, Key: []byte(key), Value: []byte(value)}}}
}

func TestWriteReadOnEveryNode(t *testing.T) {
	c := newTestCluster(t, 1, 3, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 20; i++ {
		key := fmt.Sprintf("k%d", i)
		n := c.node(uint64(i%3 + 1))
		res, err := n.Write(ctx, c.groupOf(key), set(key, fmt.Sprint(i)))
		if err != nil {
			t.Fatalf("write %s via node %d: %v", key, n.ID(), err)
		}
		if !res[0].Applied || res[0].Cur.Version == 0 {
			t.Fatalf("write %s: %+v", key, res[0])
		}
	}
	for _, id := range c.ids {
		for i := 0; i < 20; i++ {
			key := fmt.Sprintf("k%d", i)
			v, ok, err := c.node(id).Get(ctx, c.groupOf(key), testNS, []byte(key))
			if err != nil || !ok || string(v.Data) != fmt.Sprint(i) {
				t.Fatalf("node %d get %s: %q %v %v", id, key, v.Data, ok, err)
			}
		}
	}
	// Every replica minted the same version for the same write.
	g := c.groupOf("k0")
	var versions []uint64
	for _, id := range c.ids {
		if err := c.node(id).ReadBarrier(ctx, g); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		v, _, _ := c.nodes[id].store.Get(ctx, testNS, []byte("k0"))
		c.mu.Unlock()
		versions = append(versions, v.Version)
	}
	if versions[0] != versions[1] || versions[1] != versions[2] {
		t.Fatalf("versions differ across replicas: %v", versions)
	}
}

func TestMinorityIsUnavailable(t *testing.T) {
	c := newTestCluster(t, 2, 3, 1, nil)
	lead := c.leader(1, 5*time.Second)
	ctx := context.Background()
	if _, err := c.node(lead).Write(ctx, 1, set("a", "1")); err != nil {
		t.Fatal(err)
	}
	// Isolate the leader: it is the minority now.
	var rest []transport.NodeID
	for _, id := range c.ids {
		if id != lead {
			rest = append(rest, transport.NodeID(id))
		}
	}
	c.net.Partition([]transport.NodeID{transport.NodeID(lead)}, rest)
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, _, err := c.node(lead).Get(short, 1, testNS, []byte("a"))
	cancel()
	if kv.CodeOf(err) != kv.CodeUnavailable {
		t.Fatalf("minority read: %v, want UNAVAILABLE", err)
	}
	short, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = c.node(lead).Write(short, 1, set("a", "2"))
	cancel()
	if code := kv.CodeOf(err); code != kv.CodeUnavailable && code != kv.CodeTimeout {
		t.Fatalf("minority write: %v, want UNAVAILABLE or TIMEOUT", err)
	}
	t.Logf("minority write answered: %v", err)
	// The majority elects a new leader and keeps serving.
	other := uint64(rest[0])
	deadline, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		wctx, wcancel := context.WithTimeout(deadline, 500*time.Millisecond)
		_, err := c.node(other).Write(wctx, 1, set("a", "3"))
		wcancel()
		if err == nil {
			break
		}
		if deadline.Err() != nil {
			t.Fatalf("majority never served: %v", err)
		}
	}
	v, ok, err := c.node(other).Get(deadline, 1, testNS, []byte("a"))
	if err != nil || !ok || string(v.Data) != "3" {
		t.Fatalf("majority read: %q %v %v", v.Data, ok, err)
	}
	c.net.Heal()
	// The old leader catches up and serves the new value.
	for {
		rctx, rcancel := context.WithTimeout(deadline, 500*time.Millisecond)
		v, ok, err = c.node(lead).Get(rctx, 1, testNS, []byte("a"))
		rcancel()
		if err == nil {
			break
		}
		if deadline.Err() != nil {
			t.Fatalf("healed node never served: %v", err)
		}
	}
	if !ok || string(v.Data) != "3" {
		t.Fatalf("healed read: %q %v", v.Data, ok)
	}
}

// A follower that falls behind past the compaction point gets a snapshot.
func TestSnapshotCatchUp(t *testing.T) {
	c := newTestCluster(t, 3, 3, 1, func(cfg *Config) { cfg.CompactAfter = 40 })
	lead := c.leader(1, 5*time.Second)
	lagger := lead%3 + 1
	c.net.Isolate(transport.NodeID(lagger))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 300; i++ {
		key := fmt.Sprintf("k%d", i%50)
		if _, err := c.node(lead).Write(ctx, 1, set(key, fmt.Sprint(i))); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	// A key deleted while the lagger was away must be gone after catch-up.
	del := kv.Batch{Ops: []kv.Op{{Kind: kv.OpDelete, Namespace: testNS, Key: []byte("k7")}}}
	if _, err := c.node(lead).Write(ctx, 1, del); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	lagStore := c.nodes[lagger].store
	c.mu.Unlock()
	if _, err := lagStore.Apply(ctx, set("stale-only-here", "x")); err != nil {
		t.Fatal(err)
	}
	c.net.Heal()
	for {
		st, _ := c.node(lagger).Status(1)
		ls, _ := c.node(lead).Status(1)
		if st.Applied >= ls.Commit && ls.Commit > 300 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("lagger never caught up: %+v vs %+v", st, ls)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c.node(lagger).Stats().SnapshotsApplied == 0 {
		t.Fatal("lagger caught up without a snapshot; compaction did not happen")
	}
	for i := 250; i < 300; i++ {
		key := fmt.Sprintf("k%d", i%50)
		v, ok, err := c.node(lagger).Get(ctx, 1, testNS, []byte(key))
		want := fmt.Sprint(i)
		if key == "k7" {
			if ok || err != nil {
				t.Fatalf("deleted key present on lagger: %q %v", v.Data, err)
			}
			continue
		}
		if err != nil || !ok || string(v.Data) != want {
			t.Fatalf("lagger %s: %q %v %v, want %s", key, v.Data, ok, err, want)
		}
	}
	if _, ok, _ := lagStore.Get(ctx, testNS, []byte("stale-only-here")); ok {
		t.Fatal("snapshot did not replace the lagger's shard")
	}
}

func TestLeaderTransferAndDrain(t *testing.T) {
	c := newTestCluster(t, 4, 3, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lead := c.leader(1, 5*time.Second)
	to := lead%3 + 1
	if err := c.node(lead).TransferLeadership(ctx, 1, to); err != nil {
		t.Fatal(err)
	}
	if got := c.leader(1, 5*time.Second); got != to {
		t.Fatalf("leader %d after transfer to %d", got, to)
	}
	c.leader(2, 5*time.Second)
	if err := c.node(to).Drain(ctx); err != nil {
		t.Fatal(err)
	}
	for _, g := range []uint64{1, 2} {
		if st, _ := c.node(to).Status(g); st.Leader == to {
			t.Fatalf("group %d still led by drained node", g)
		}
	}
}

// Restarting every node (clean crash of all: only synced data survives)
// loses no acknowledged write.
func TestRestartAllKeepsAcknowledged(t *testing.T) {
	c := newTestCluster(t, 5, 3, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 50; i++ {
		key := fmt.Sprintf("k%d", i)
		if _, err := c.node(uint64(i%3+1)).Write(ctx, c.groupOf(key), set(key, "v")); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range c.ids {
		c.crash(id)
	}
	for i := 0; i < 50; i++ {
		key := fmt.Sprintf("k%d", i)
		var (
			ok  bool
			err error
		)
		for {
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			_, ok, err = c.node(uint64(i%3+1)).Get(rctx, c.groupOf(key), testNS, []byte(key))
			rcancel()
			if err == nil || ctx.Err() != nil {
				break
			}
		}
		if err != nil || !ok {
			t.Fatalf("%s after restart: %v %v", key, ok, err)
		}
	}
}

// A node added as a learner receives the whole log (or a snapshot) and
// serves linearizable reads, without voting.
func TestAddLearnerCatchesUp(t *testing.T) {
	c := newTestCluster(t, 6, 3, 1, func(cfg *Config) { cfg.CompactAfter = 40 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lead := c.leader(1, 5*time.Second)
	for i := 0; i < 100; i++ {
		if _, err := c.node(lead).Write(ctx, 1, set(fmt.Sprintf("k%d", i%20), fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	// Node 4 starts with the group but no peers: it waits to be added.
	c.specs[0].Peers = nil
	if err := c.start(4, vfs.NewCrashableMem()); err != nil {
		t.Fatal(err)
	}
	if err := c.node(2).AddLearner(ctx, 1, 4); err != nil {
		t.Fatal(err)
	}
	st, _ := c.node(2).Status(1)
	if !slices.Contains(st.Learners, 4) || slices.Contains(st.Voters, 4) {
		t.Fatalf("after AddLearner: voters %v learners %v", st.Voters, st.Learners)
	}
	if _, err := c.node(lead).Write(ctx, 1, set("k0", "last")); err != nil {
		t.Fatal(err)
	}
	v, ok, err := c.node(4).Get(ctx, 1, testNS, []byte("k0"))
	if err != nil || !ok || string(v.Data) != "last" {
		t.Fatalf("learner read: %q %v %v", v.Data, ok, err)
	}
	v, ok, err = c.node(4).Get(ctx, 1, testNS, []byte("k19"))
	if err != nil || !ok || string(v.Data) != "99" {
		t.Fatalf("learner read of an old key: %q %v %v", v.Data, ok, err)
	}
}
