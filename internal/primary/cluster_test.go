package primary

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/storage"
	"github.com/fulcrumdb/fulcrum/internal/transport"
	"github.com/fulcrumdb/fulcrum/internal/transport/simnet"
)

// cpNode is the control plane's place in the simulated network: a node
// partitioned from it can neither report nor renew.
const cpNode transport.NodeID = 1000

const (
	testShard = 0
	testNS    = "t"
)

// memAuthority is the control plane of the tests: one instance applying
// failover's rules (Decide, Renew, ISRRecord.Apply) under a mutex, so
// each decision is made exactly once, as the real control plane's Raft
// group would. Decide runs on every report.
type memAuthority struct {
	cfg   failover.Config
	clock func() int64
	net   *simnet.Network

	mu struct {
		sync.Mutex
		shard      failover.Shard
		rec        failover.ISRRecord
		reps       map[failover.NodeID]*reported
		promotions []promotion
	}
}

type reported struct {
	st    ReplicaStatus
	heard int64
}

type promotion struct {
	Epoch failover.Epoch
	Node  failover.NodeID
	At    int64
}

func newMemAuthority(cfg failover.Config, policy failover.AckPolicy, clock func() int64, net *simnet.Network) *memAuthority {
	a := &memAuthority{cfg: cfg, clock: clock, net: net}
	a.mu.shard.Policy = policy
	a.mu.reps = make(map[failover.NodeID]*reported)
	return a
}

func (a *memAuthority) report(st ReplicaStatus) Assignment {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clock()
	a.mu.reps[st.Node] = &reported{st: st, heard: now}
	var reps []failover.Replica
	for id, r := range a.mu.reps {
		reps = append(reps, failover.Replica{ID: id, Applied: r.st.Applied, LastEpoch: r.st.LastEpoch,
			InSync: a.mu.rec.Epoch == a.mu.shard.Epoch && slices.Contains(a.mu.rec.Members, id),
			Alive:  now-r.heard < int64(a.cfg.LeaseDuration)})
	}
	slices.SortFunc(reps, func(x, y failover.Replica) int { return int(x.ID) - int(y.ID) })
	s := a.mu.shard
	if s.Epoch == 0 {
		// Bootstrap: no one holds anything yet, so no one can lose it.
		s.Policy.Mode = failover.AckAsync
	}
	if d := failover.Decide(s, reps, now, a.cfg); d.Action == failover.Promote {
		a.mu.shard.Epoch, a.mu.shard.Primary, a.mu.shard.Lease = d.Epoch, d.Node, d.Lease
		a.mu.rec = d.ISR
		a.mu.promotions = append(a.mu.promotions, promotion{Epoch: d.Epoch, Node: d.Node, At: now})
	}
	return Assignment{Epoch: a.mu.shard.Epoch, Primary: a.mu.shard.Primary, ISR: a.mu.rec}
}

func (a *memAuthority) renew(holder failover.NodeID, epoch failover.Epoch) (failover.Lease, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, err := failover.Renew(a.mu.shard.Lease, holder, epoch, a.clock(), a.cfg.LeaseDuration)
	if err == nil {
		a.mu.shard.Lease = l
	}
	return l, err
}

func (a *memAuthority) propose(p failover.ISRProposal) (failover.ISRRecord, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec, err := a.mu.rec.Apply(p)
	if err == nil {
		a.mu.rec = rec
	}
	return rec, err
}

// current returns the epoch and primary.
func (a *memAuthority) current() (failover.Epoch, failover.NodeID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mu.shard.Epoch, a.mu.shard.Primary
}

func (a *memAuthority) record() failover.ISRRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mu.rec
}

func (a *memAuthority) promotions() []promotion {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.mu.promotions)
}

// authClient is one node's link to the memAuthority: it fails like a
// network call when the node is cut off from cpNode or killed.
type authClient struct {
	a    *memAuthority
	node failover.NodeID
	down atomic.Bool
	// loseISRReplies applies in-sync proposals but answers as the real
	// wiring does to a write whose outcome is unknown, or to a resend
	// refused as a conflict: an error and no record.
	loseISRReplies atomic.Bool
}

var _ Authority = (*authClient)(nil)

func (c *authClient) reach() error {
	n := transport.NodeID(c.node)
	if c.down.Load() || !c.a.net.Reachable(n, cpNode) || !c.a.net.Reachable(cpNode, n) {
		return kv.Errorf(kv.CodeUnavailable, "control plane unreachable from node %d", c.node)
	}
	return nil
}

func (c *authClient) Report(_ context.Context, _ int, st ReplicaStatus) (Assignment, error) {
	if err := c.reach(); err != nil {
		return Assignment{}, err
	}
	return c.a.report(st), nil
}

func (c *authClient) Renew(_ context.Context, _ int, holder failover.NodeID, epoch failover.Epoch) (failover.Lease, error) {
	if err := c.reach(); err != nil {
		return failover.Lease{}, err
	}
	return c.a.renew(holder, epoch)
}

func (c *authClient) ProposeISR(_ context.Context, _ int, p failover.ISRProposal) (failover.ISRRecord, error) {
	if err := c.reach(); err != nil {
		return failover.ISRRecord{}, err
	}
	rec, err := c.a.propose(p)
	if c.loseISRReplies.Load() {
		if err == nil {
			err = kv.Errorf(kv.CodeTimeout, "in-sync proposal: outcome unknown")
		}
		return failover.ISRRecord{}, err
	}
	return rec, err
}

// testConfig is fast: a 300ms lease, so a failover takes about 400ms.
func testConfig(id failover.NodeID, clock func() int64) Config {
	cfg := DefaultConfig()
	cfg.NodeID = id
	cfg.Clock = clock
	cfg.Failover = failover.Config{LeaseDuration: 300 * time.Millisecond, RenewInterval: 50 * time.Millisecond,
		MaxDrift: 30 * time.Millisecond, Margin: 30 * time.Millisecond, MaxLagLSN: 10_000, MaxLagTime: 150 * time.Millisecond}
	cfg.ReportInterval = 25 * time.Millisecond
	cfg.HeartbeatInterval = 20 * time.Millisecond
	cfg.RPCTimeout = 100 * time.Millisecond
	cfg.SnapshotTimeout = 2 * time.Second
	cfg.MaxInflight = 1024
	cfg.TailEntries = 4096
	return cfg
}

type testNode struct {
	id     failover.NodeID
	ep     transport.Endpoint
	st     *storage.Store
	eng    *Engine
	client *authClient
	killed bool
}

type cluster struct {
	t     *testing.T
	seed  int64
	net   *simnet.Network
	auth  *memAuthority
	clock func() int64
	nodes map[failover.NodeID]*testNode
	ids   []failover.NodeID
}

// newCluster starts n nodes (ids 1..n) holding testShard with policy.
func newCluster(t *testing.T, seed int64, n int, policy failover.AckPolicy, mutate func(*Config)) *cluster {
	t.Helper()
	start := time.Now()
	clock := func() int64 { return int64(time.Since(start)) }
	net := simnet.New(seed)
	c := &cluster{t: t, seed: seed, net: net, clock: clock, nodes: map[failover.NodeID]*testNode{}}
	c.auth = newMemAuthority(testConfig(1, clock).Failover, policy, clock, net)
	for i := 1; i <= n; i++ {
		c.ids = append(c.ids, failover.NodeID(i))
	}
	t.Cleanup(c.close)
	for _, id := range c.ids {
		st, err := storage.Open(storage.Options{Dir: "/data", FS: vfs.NewMem(), Sync: storage.SyncNone, SweepInterval: time.Hour})
		if err != nil {
			t.Fatalf("seed %d: node %d: storage: %v", seed, id, err)
		}
		ep := net.Endpoint(transport.NodeID(id))
		cfg := testConfig(id, clock)
		if mutate != nil {
			mutate(&cfg)
		}
		client := &authClient{a: c.auth, node: id}
		eng, err := New(cfg, ep, st, client)
		if err != nil {
			t.Fatalf("seed %d: node %d: %v", seed, id, err)
		}
		c.nodes[id] = &testNode{id: id, ep: ep, st: st, eng: eng, client: client}
		if err := eng.AddShard(testShard, ShardConfig{Policy: policy, Members: c.ids}); err != nil {
			t.Fatalf("seed %d: node %d: %v", seed, id, err)
		}
	}
	return c
}

func (c *cluster) close() {
	for _, id := range c.ids {
		c.kill(id)
	}
	c.net.Close()
	for _, n := range c.nodes {
		n.st.Close()
	}
}

// kill stops a node as a crash would, but keeps its storage for
// inspection: its engine stops, its endpoint closes, and it no longer
// reaches the control plane.
func (c *cluster) kill(id failover.NodeID) {
	n := c.nodes[id]
	if n.killed {
		return
	}
	n.killed = true
	n.client.down.Store(true)
	n.ep.Close()
	n.eng.Close()
}

func (c *cluster) fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("seed %d: %s", c.seed, fmt.Sprintf(format, args...))
}

// waitFor polls cond until it holds or the deadline passes.
func (c *cluster) waitFor(what string, timeout time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.dump()
			c.fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond) // polling interval, not a wait for state
	}
}

// primary waits for a primary that takes writes and returns it.
func (c *cluster) primary(timeout time.Duration) failover.NodeID {
	c.t.Helper()
	var p failover.NodeID
	c.waitFor("a primary taking writes", timeout, func() bool {
		_, id := c.auth.current()
		n := c.nodes[id]
		if id == 0 || n.killed {
			return false
		}
		if _, err := c.write(id, "probe", "x"); err != nil {
			return false
		}
		p = id
		return true
	})
	return p
}

func (c *cluster) write(id failover.NodeID, key, val string) ([]kv.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	return c.nodes[id].eng.Write(ctx, testShard, kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: testNS, Key: []byte(key), Value: []byte(val)}}})
}

func (c *cluster) read(id failover.NodeID, key string, maxStaleness time.Duration) (ReadResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.nodes[id].eng.Read(ctx, testShard, testNS, []byte(key), maxStaleness)
}

func (c *cluster) status(id failover.NodeID) Status {
	c.t.Helper()
	st, err := c.nodes[id].eng.Status(testShard)
	if err != nil {
		c.fatalf("status of node %d: %v", id, err)
	}
	return st
}

// op is one client write of the history.
type op struct {
	key, val    string
	node        failover.NodeID
	start, done int64
	err         error
}

// writer writes unique keys to whichever node target names until stop is
// closed, recording every call.
type writer struct {
	c      *cluster
	target func() failover.NodeID
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	ops    []op
}

func (c *cluster) startWriter(prefix string, target func() failover.NodeID) *writer {
	w := &writer{c: c, target: target, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			id := target()
			if id == 0 {
				time.Sleep(time.Millisecond)
				continue
			}
			o := op{key: fmt.Sprintf("%s%05d", prefix, i), val: fmt.Sprintf("v%d", i), node: id, start: c.clock()}
			_, o.err = c.write(id, o.key, o.val)
			o.done = c.clock()
			w.mu.Lock()
			w.ops = append(w.ops, o)
			w.mu.Unlock()
			if o.err != nil {
				time.Sleep(time.Millisecond) // pace retries against a refusing node
			}
		}
	}()
	return w
}

func (w *writer) halt() []op {
	close(w.stop)
	<-w.done
	return w.snapshot()
}

func (w *writer) snapshot() []op {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.ops)
}

func (w *writer) acked() int {
	n := 0
	for _, o := range w.snapshot() {
		if o.err == nil {
			n++
		}
	}
	return n
}

func transportID(id failover.NodeID) transport.NodeID { return transport.NodeID(id) }

// dump logs every node's status and the control plane's state.
func (c *cluster) dump() {
	c.t.Helper()
	c.auth.mu.Lock()
	c.t.Logf("control plane: shard %+v record %+v promotions %+v", c.auth.mu.shard, c.auth.mu.rec, c.auth.mu.promotions)
	c.auth.mu.Unlock()
	for _, id := range c.ids {
		if st, err := c.nodes[id].eng.Status(testShard); err == nil {
			c.t.Logf("node %d (killed %v): %+v", id, c.nodes[id].killed, st)
		}
	}
}

// restart starts a killed node again on its storage, as after a crash
// with every write synced (the store is not reopened).
func (c *cluster) restart(id failover.NodeID, policy failover.AckPolicy) {
	c.t.Helper()
	n := c.nodes[id]
	ep := c.net.Endpoint(transportID(id))
	client := &authClient{a: c.auth, node: id}
	eng, err := New(testConfig(id, c.clock), ep, n.st, client)
	if err != nil {
		c.fatalf("restart node %d: %v", id, err)
	}
	if err := eng.AddShard(testShard, ShardConfig{Policy: policy, Members: c.ids}); err != nil {
		c.fatalf("restart node %d: %v", id, err)
	}
	c.nodes[id] = &testNode{id: id, ep: ep, st: n.st, eng: eng, client: client}
}
