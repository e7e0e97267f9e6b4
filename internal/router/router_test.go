package router

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/placement"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// fakeEngine records writes per group and answers with one result per op.
type fakeEngine struct {
	leader  uint64
	mu      sync.Mutex
	writes  map[uint64][]kv.Batch
	fail    map[uint64]error
	barrier map[uint64]int
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{writes: map[uint64][]kv.Batch{}, fail: map[uint64]error{}, barrier: map[uint64]int{}}
}

func (e *fakeEngine) Write(ctx context.Context, group uint64, b kv.Batch) ([]kv.Result, error) {
	if _, ok := ctx.Deadline(); !ok {
		return nil, errors.New("no deadline")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.fail[group]; err != nil {
		return nil, err
	}
	e.writes[group] = append(e.writes[group], b)
	res := make([]kv.Result, len(b.Ops))
	for i, op := range b.Ops {
		res[i] = kv.Result{Applied: true, Count: 1, Cur: kv.Value{Data: op.Value, Version: group}}
	}
	return res, nil
}

func (e *fakeEngine) Leader(group uint64) uint64 { return e.leader }

func (e *fakeEngine) Replica(group uint64) (uint64, bool) { return 1, true }

func (e *fakeEngine) ReadBarrier(ctx context.Context, group uint64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.barrier[group]++
	return e.fail[group]
}

type fakeStore struct{}

func (fakeStore) Get(ctx context.Context, ns string, key []byte) (kv.Value, bool, error) {
	return kv.Value{Data: key}, true, nil
}
func (fakeStore) Scan(ctx context.Context, req kv.ScanRequest) (kv.ScanResult, error) {
	return kv.ScanResult{}, nil
}
func (fakeStore) Keyspace() []kv.NamespaceStats { return nil }
func (fakeStore) Count(string) int64            { return 0 }

// loopCaller forwards calls to the routers of other fake nodes.
type loopCaller struct {
	routers     map[transport.NodeID]*Router
	unreachable map[transport.NodeID]bool
}

func (c *loopCaller) Call(ctx context.Context, to transport.NodeID, kind transport.Kind, payload []byte) ([]byte, error) {
	if c.unreachable[to] {
		return nil, transport.UnreachableError(to, nil)
	}
	r := c.routers[to]
	if r == nil {
		return nil, transport.ErrUnknownPeer
	}
	reply, err := r.Serve(ctx, 0, kind, payload)
	if err != nil {
		return nil, transport.ReplyError(err)
	}
	return reply, nil
}

func newTestRouter(t *testing.T, self uint64, ns Namespace, e Engine, c Caller) *Router {
	t.Helper()
	r, err := New(Config{Self: self, Engine: e, Store: fakeStore{}, Transport: c, Namespaces: []Namespace{ns}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func keyInShard(ns string, shard, shards int, n int) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("k%d", i)
		if placement.ShardOf(ns, []byte(k), shards) == shard {
			if n == 0 {
				return k
			}
			n--
		}
	}
}

func TestApplySplitsByShardAndMerges(t *testing.T) {
	ns, err := StaticLayout("default", 4, 1, []uint64{1}, 10)
	if err != nil {
		t.Fatal(err)
	}
	e := newFakeEngine()
	r := newTestRouter(t, 1, ns, e, &loopCaller{})
	k0, k1, k0b := keyInShard("default", 0, 4, 0), keyInShard("default", 1, 4, 0), keyInShard("default", 0, 4, 1)
	b := kv.Batch{Ops: []kv.Op{
		{Kind: kv.OpSet, Namespace: "default", Key: []byte(k0), Value: []byte("a")},
		{Kind: kv.OpSet, Namespace: "default", Key: []byte(k1), Value: []byte("b")},
		{Kind: kv.OpSet, Namespace: "default", Key: []byte(k0b), Value: []byte("c")},
		{Kind: kv.OpFlush, Namespace: "default"},
	}}
	res, err := r.Apply(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if string(res[0].Cur.Data) != "a" || res[0].Cur.Version != 10 || string(res[1].Cur.Data) != "b" || res[1].Cur.Version != 11 || string(res[2].Cur.Data) != "c" {
		t.Fatalf("results out of place: %+v", res)
	}
	if res[3].Count != 4 {
		t.Fatalf("flush count %d, want the sum over 4 shards", res[3].Count)
	}
	if len(e.writes[10]) != 1 || len(e.writes[10][0].Ops) != 3 || string(e.writes[10][0].Ops[1].Key) != k0b {
		t.Fatalf("shard 0 batch: %+v", e.writes[10])
	}
}

func TestApplyRefusals(t *testing.T) {
	ns, _ := StaticLayout("default", 4, 1, []uint64{1}, 1)
	e := newFakeEngine()
	r := newTestRouter(t, 1, ns, e, &loopCaller{})
	ctx := context.Background()
	k0, k1 := keyInShard("default", 0, 4, 0), keyInShard("default", 1, 4, 0)
	_, err := r.Apply(ctx, kv.Batch{AllAbsent: true, Ops: []kv.Op{
		{Kind: kv.OpSet, Namespace: "default", Key: []byte(k0)}, {Kind: kv.OpSet, Namespace: "default", Key: []byte(k1)}}})
	if kv.CodeOf(err) != kv.CodeInvalid || len(e.writes) != 0 {
		t.Fatalf("cross-shard MSETNX: %v (writes %d)", err, len(e.writes))
	}
	_, err = r.Apply(ctx, kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "other", Key: []byte("x")}}})
	if kv.CodeOf(err) != kv.CodeNotFound {
		t.Fatalf("unknown namespace: %v", err)
	}
	_, err = r.Apply(ctx, kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "default", Key: []byte(k0)}, {Kind: kv.OpSet, Namespace: "x", Key: []byte(k0)}}})
	if kv.CodeOf(err) != kv.CodeInvalid {
		t.Fatalf("two namespaces: %v", err)
	}
	// One shard fails: the error says the others may have applied.
	e.fail[2] = kv.Errorf(kv.CodeUnavailable, "no quorum")
	_, err = r.Apply(ctx, kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "default", Key: []byte(k0)}, {Kind: kv.OpSet, Namespace: "default", Key: []byte(k1)}}})
	if kv.CodeOf(err) != kv.CodeUnavailable || len(e.writes[1]) != 1 {
		t.Fatalf("partial failure: %v, shard 0 writes %d", err, len(e.writes[1]))
	}
}

func TestForwardOneHopAndFailover(t *testing.T) {
	// 3 nodes, 2 replicas per shard: one node lacks each shard and forwards.
	ns, _ := StaticLayout("default", 3, 2, []uint64{1, 2, 3}, 1)
	caller := &loopCaller{routers: map[transport.NodeID]*Router{}, unreachable: map[transport.NodeID]bool{}}
	engines := map[uint64]*fakeEngine{}
	for _, id := range []uint64{1, 2, 3} {
		engines[id] = newFakeEngine()
		caller.routers[transport.NodeID(id)] = newTestRouter(t, id, ns, engines[id], caller)
	}
	ctx := context.Background()
	for s := 0; s < 3; s++ {
		key := keyInShard("default", s, 3, 0)
		// Ask a node without a replica of s.
		var asker uint64
		for _, id := range []uint64{1, 2, 3} {
			if !slices.Contains(ns.Replicas[s], id) {
				asker = id
			}
		}
		r := caller.routers[transport.NodeID(asker)]
		res, err := r.Apply(ctx, kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "default", Key: []byte(key), Value: []byte("v")}}})
		if err != nil || string(res[0].Cur.Data) != "v" {
			t.Fatalf("shard %d forwarded write: %+v %v", s, res, err)
		}
		first := ns.Replicas[s][0]
		if len(engines[first].writes[ns.Groups[s]]) != 1 {
			t.Fatalf("shard %d: write did not reach the first replica %d", s, first)
		}
		v, ok, err := r.Get(ctx, "default", []byte(key))
		if err != nil || !ok || string(v.Data) != key {
			t.Fatalf("forwarded get: %q %v %v", v.Data, ok, err)
		}
		// First replica unreachable: the second serves.
		caller.unreachable[transport.NodeID(first)] = true
		if _, err := r.Apply(ctx, kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "default", Key: []byte(key)}}}); err != nil {
			t.Fatalf("failover to second replica: %v", err)
		}
		caller.unreachable[transport.NodeID(first)] = false
		// A coded error from the replica is final, not retried elsewhere.
		engines[first].fail[ns.Groups[s]] = kv.Errorf(kv.CodeTimeout, "outcome unknown")
		second := ns.Replicas[s][1]
		before := len(engines[second].writes[ns.Groups[s]])
		_, err = r.Apply(ctx, kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "default", Key: []byte(key)}}})
		if kv.CodeOf(err) != kv.CodeTimeout || len(engines[second].writes[ns.Groups[s]]) != before {
			t.Fatalf("timeout was retried elsewhere or lost its code: %v", err)
		}
		engines[first].fail[ns.Groups[s]] = nil
	}
}

func TestServeRejectsGarbage(t *testing.T) {
	ns, _ := StaticLayout("default", 1, 1, []uint64{1}, 1)
	r := newTestRouter(t, 1, ns, newFakeEngine(), &loopCaller{})
	for _, req := range [][]byte{nil, {9}, {opWrite}, {opWrite, 1, 0xff}, {opGet, 1, 50}} {
		if _, err := r.Serve(context.Background(), 2, transport.KindForward, req); kv.CodeOf(err) != kv.CodeInvalid {
			t.Errorf("Serve(%v) = %v, want INVALID", req, err)
		}
	}
}

// A follower replica hands writes to the leader it knows; if the leader is
// unreachable it proposes itself.
func TestWriteGoesToKnownLeader(t *testing.T) {
	ns, _ := StaticLayout("default", 1, 3, []uint64{1, 2, 3}, 1)
	caller := &loopCaller{routers: map[transport.NodeID]*Router{}, unreachable: map[transport.NodeID]bool{}}
	engines := map[uint64]*fakeEngine{}
	for _, id := range []uint64{1, 2, 3} {
		engines[id] = newFakeEngine()
		engines[id].leader = 2
		caller.routers[transport.NodeID(id)] = newTestRouter(t, id, ns, engines[id], caller)
	}
	b := kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "default", Key: []byte("k"), Value: []byte("v")}}}
	if _, err := caller.routers[1].Apply(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if len(engines[2].writes[1]) != 1 || len(engines[1].writes[1]) != 0 {
		t.Fatalf("write not handed to the leader: leader %d, local %d", len(engines[2].writes[1]), len(engines[1].writes[1]))
	}
	caller.unreachable[2] = true
	if _, err := caller.routers[1].Apply(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if len(engines[1].writes[1]) != 1 {
		t.Fatal("with the leader unreachable the follower did not propose itself")
	}
}

// With ReadsToLeader a follower replica's reads go to the leader (which
// may answer from its lease); without it they stay local.
func TestReadsToLeader(t *testing.T) {
	ns, _ := StaticLayout("default", 1, 3, []uint64{1, 2, 3}, 1)
	for _, toLeader := range []bool{false, true} {
		caller := &loopCaller{routers: map[transport.NodeID]*Router{}, unreachable: map[transport.NodeID]bool{}}
		engines := map[uint64]*fakeEngine{}
		for _, id := range []uint64{1, 2, 3} {
			engines[id] = newFakeEngine()
			engines[id].leader = 2
			r, err := New(Config{Self: id, Engine: engines[id], Store: fakeStore{}, Transport: caller, Namespaces: []Namespace{ns}, ReadsToLeader: toLeader})
			if err != nil {
				t.Fatal(err)
			}
			caller.routers[transport.NodeID(id)] = r
		}
		if _, _, err := caller.routers[1].Get(context.Background(), "default", []byte("k")); err != nil {
			t.Fatal(err)
		}
		if got := engines[2].barrier[1] == 1 && engines[1].barrier[1] == 0; got != toLeader {
			t.Fatalf("ReadsToLeader %v: barrier on leader %d, on follower %d", toLeader, engines[2].barrier[1], engines[1].barrier[1])
		}
	}
}

func TestScanCodec(t *testing.T) {
	req := kv.ScanRequest{Namespace: "ns", Prefix: []byte("p"), After: []byte{}, Limit: 50, KeysOnly: true, Now: -7, Shards: 16, ShardSet: []int{0, 7, 15}}
	got, err := decodeScanRequest(appendScanRequest(nil, req))
	if err != nil || got.Namespace != "ns" || string(got.Prefix) != "p" || got.After == nil || len(got.After) != 0 || got.Limit != 50 || !got.KeysOnly || got.Now != -7 ||
		got.Shards != 16 || !slices.Equal(got.ShardSet, req.ShardSet) {
		t.Fatalf("request round trip: %+v %v", got, err)
	}
	for _, bad := range []kv.ScanRequest{
		{Namespace: "ns", Shards: 4, ShardSet: []int{4}},    // beyond the shard count
		{Namespace: "ns", Shards: 4},                        // no shard named
		{Namespace: "ns", Shards: 1, ShardSet: []int{0, 0}}, // more shards than there are
	} {
		if _, err := decodeScanRequest(appendScanRequest(nil, bad)); err == nil {
			t.Fatalf("decoded a bad shard set %v of %d", bad.ShardSet, bad.Shards)
		}
	}
	req.After = nil
	if got, _ := decodeScanRequest(appendScanRequest(nil, req)); got.After != nil {
		t.Fatal("nil After became non-nil: the scan would not start at the beginning")
	}
	res := kv.ScanResult{Entries: []kv.KeyValue{{Key: []byte("a"), Value: kv.Value{Data: []byte("1"), Version: 3}}, {Key: []byte("b")}}, Next: []byte("b")}
	enc := appendScanResult(nil, res)
	back, err := decodeScanResult(enc)
	if err != nil || len(back.Entries) != 2 || string(back.Entries[0].Key) != "a" || back.Entries[0].Value.Version != 3 || string(back.Next) != "b" {
		t.Fatalf("result round trip: %+v %v", back, err)
	}
	for i := 0; i < len(enc); i++ {
		if _, err := decodeScanResult(enc[:i]); err == nil {
			t.Fatalf("truncated reply of %d bytes decoded", i)
		}
	}
	msg := appendScanRequest(nil, req)
	for i := 0; i < len(msg); i++ {
		if _, err := decodeScanRequest(msg[:i]); err == nil {
			t.Fatalf("truncated request of %d bytes decoded", i)
		}
	}
}
