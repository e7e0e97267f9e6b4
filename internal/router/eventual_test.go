package router

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/leaderless/node"
	"github.com/fulcrumdb/fulcrum/internal/transport"
	"github.com/fulcrumdb/fulcrum/internal/versionvec"
)

// fakeLeaderless records the writes it coordinates and answers reads with
// a fixed result.
type fakeLeaderless struct {
	mu     sync.Mutex
	writes []fakeWrite
	read   node.ReadResult
	reads  []node.ReadOptions
}

type fakeWrite struct {
	ns, key, value string
	del            bool
	opts           node.WriteOptions
}

func (f *fakeLeaderless) Put(ctx context.Context, ns string, key, value []byte, o node.WriteOptions) (node.WriteResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes = append(f.writes, fakeWrite{ns: ns, key: string(key), value: string(value), opts: o})
	return node.WriteResult{}, nil
}

func (f *fakeLeaderless) Delete(ctx context.Context, ns string, key []byte, o node.WriteOptions) (node.WriteResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes = append(f.writes, fakeWrite{ns: ns, key: string(key), del: true, opts: o})
	return node.WriteResult{}, nil
}

func (f *fakeLeaderless) Get(ctx context.Context, ns string, key []byte, o node.ReadOptions) (node.ReadResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads = append(f.reads, o)
	return f.read, nil
}

func (f *fakeLeaderless) last(t *testing.T) fakeWrite {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.writes) == 0 {
		t.Fatal("no write reached the coordinator")
	}
	return f.writes[len(f.writes)-1]
}

// siblingsRouters are two routers over one table: namespace "carts"
// (eventual, conflicts=siblings), "cache" (eventual, lww) and "default"
// (strong), every shard on node 2, so node 1 forwards.
func siblingsRouters(t *testing.T) (*Router, *fakeLeaderless) {
	t.Helper()
	var table []Namespace
	for i, p := range []kv.Policy{
		{Consistency: kv.ConsistencyEventual, Conflicts: kv.ConflictsSiblings, Replicas: 1, Shards: 1, W: 1, R: 1},
		{Consistency: kv.ConsistencyEventual, Conflicts: kv.ConflictsLWW, Replicas: 1, Shards: 1, W: 1, R: 1},
		{Consistency: kv.ConsistencyStrong, Replicas: 1, Shards: 1},
	} {
		name := []string{"carts", "cache", "default"}[i]
		ns, err := StaticLayout(name, 1, 1, []uint64{2}, uint64(10*(i+1)))
		if err != nil {
			t.Fatal(err)
		}
		ns.Policy = p
		table = append(table, ns)
	}
	caller := &loopCaller{routers: map[transport.NodeID]*Router{}}
	remote := &fakeLeaderless{}
	for id, l := range map[uint64]*fakeLeaderless{1: {}, 2: remote} {
		r, err := New(Config{Self: id, Engine: newFakeEngine(), Store: fakeStore{}, Transport: caller, Namespaces: table, Leaderless: l})
		if err != nil {
			t.Fatal(err)
		}
		caller.routers[transport.NodeID(id)] = r
	}
	return caller.routers[1], remote
}

// TestEventualCausalContextForwarded: a write's causal context travels
// with the forwarded write to the coordinator, which writes with it in
// siblings mode; a write without one stays blind.
func TestEventualCausalContextForwarded(t *testing.T) {
	r, remote := siblingsRouters(t)
	vec := versionvec.Vector{1: 7, 2: 1_000_000}
	cc := vec.Encode()
	set := func(ns, key, value string) kv.Batch {
		return kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: ns, Key: []byte(key), Value: []byte(value)}}}
	}
	ctx := context.Background()
	if _, err := r.Apply(kv.WithCausalContext(ctx, cc), set("carts", "k", "v")); err != nil {
		t.Fatal(err)
	}
	w := remote.last(t)
	if w.key != "k" || w.value != "v" || w.del || !w.opts.KeepSiblings || versionvec.Compare(w.opts.Context, vec) != versionvec.Equal {
		t.Fatalf("forwarded write with context: got %+v, want k=v KeepSiblings context %v", w, vec)
	}
	del := kv.Batch{Ops: []kv.Op{{Kind: kv.OpDelete, Namespace: "carts", Key: []byte("k")}}}
	if _, err := r.Apply(kv.WithCausalContext(ctx, cc), del); err != nil {
		t.Fatal(err)
	}
	if w := remote.last(t); !w.del || versionvec.Compare(w.opts.Context, vec) != versionvec.Equal {
		t.Fatalf("forwarded delete with context: got %+v", w)
	}
	if _, err := r.Apply(ctx, set("carts", "k", "blind")); err != nil {
		t.Fatal(err)
	}
	if w := remote.last(t); w.value != "blind" || w.opts.Context != nil || !w.opts.KeepSiblings {
		t.Fatalf("blind write: got %+v, want no context", w)
	}
	// An lww namespace takes a context too (the write then replaces what
	// the read saw), without keeping siblings.
	if _, err := r.Apply(kv.WithCausalContext(ctx, cc), set("cache", "k", "v")); err != nil {
		t.Fatal(err)
	}
	if w := remote.last(t); w.opts.KeepSiblings || versionvec.Compare(w.opts.Context, vec) != versionvec.Equal {
		t.Fatalf("lww write with context: got %+v", w)
	}

	for _, tc := range []struct {
		name string
		cc   []byte
		b    kv.Batch
		want string
	}{
		{"malformed", []byte{5, 1}, set("carts", "k", "v"), "causal context is not one a read returned"},
		{"trailing bytes", append(vec.Encode(), 0), set("carts", "k", "v"), "causal context is not one a read returned"},
		{"forged counter", versionvec.Vector{2: math.MaxUint64}.Encode(), set("carts", "k", "v"), "counter 18446744073709551615 of node 2 is out of range"},
		{"two keys", cc, kv.Batch{Ops: append(set("carts", "a", "1").Ops, set("carts", "b", "2").Ops...)}, "write one key with it, not 2"},
		{"strong namespace", cc, set("default", "k", "v"), `namespace "default" is not eventual or weak`},
	} {
		if _, err := r.Apply(kv.WithCausalContext(ctx, tc.cc), tc.b); kv.CodeOf(err) != kv.CodeInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Apply = %v, want INVALID %q", tc.name, err, tc.want)
		}
	}
}

// TestEventualServeRefusesCorruptContext: a forwarded write whose context
// is cut short or malformed is refused, not written blind.
func TestEventualServeRefusesCorruptContext(t *testing.T) {
	r, remote := siblingsRouters(t)
	op := kv.Op{Kind: kv.OpSet, Key: []byte("k"), Value: []byte("v")}
	good := appendEventualWrite(nil, "carts", op, 1, versionvec.Vector{1: 1}.Encode())
	for _, msg := range [][]byte{good[:len(good)-1], appendEventualWrite(nil, "carts", op, 1, []byte{9})} {
		if _, err := remote2(r).Serve(context.Background(), 1, transport.KindForward, msg); kv.CodeOf(err) != kv.CodeInvalid {
			t.Errorf("Serve(%x) = %v, want INVALID", msg, err)
		}
	}
	if len(remote.writes) != 0 {
		t.Fatalf("a corrupt forwarded write was applied: %+v", remote.writes)
	}
	if _, err := remote2(r).Serve(context.Background(), 1, transport.KindForward, good); err != nil {
		t.Fatal(err)
	}
	if w := remote.last(t); versionvec.Compare(w.opts.Context, versionvec.Vector{1: 1}) != versionvec.Equal {
		t.Fatalf("served write: %+v", w)
	}
}

// remote2 is node 2's router in siblingsRouters' table.
func remote2(r *Router) *Router {
	return r.cfg.Transport.(*loopCaller).routers[2]
}

// TestEventualReadSiblings: a read lists the live siblings newest first
// (the value GET returns first) with the encoded context, asks the engine
// for siblings only in a siblings namespace, and hands out the empty
// context for a key never written.
func TestEventualReadSiblings(t *testing.T) {
	r, _ := siblingsRouters(t)
	local := r.cfg.Leaderless.(*fakeLeaderless)
	sib := func(node, counter uint64, wall int64, logical uint32, v string) versionvec.Sibling {
		return versionvec.Sibling{Dot: versionvec.Dot{Node: node, Counter: counter}, Value: []byte(v), Timestamp: hlc.Timestamp{WallNanos: wall, Logical: logical}}
	}
	vec := versionvec.Vector{1: 4, 2: 9, 3: 2}
	local.read = node.ReadResult{Found: true, Value: []byte("c"), Timestamp: hlc.Timestamp{WallNanos: 300}, Dot: versionvec.Dot{Node: 3, Counter: 2},
		// In dot order, as the engine lists them.
		Siblings: []versionvec.Sibling{sib(1, 4, 200, 0, "a"), sib(2, 9, 200, 1, "b"), sib(3, 2, 300, 0, "c")},
		Context:  vec, Answered: 1, Agreed: 1, Required: 1}
	m, err := r.GetMeta(context.Background(), "carts", []byte("k"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range m.Siblings {
		got = append(got, fmt.Sprintf("%s@%d.%d/%d", s.Value, s.Timestamp, s.Logical, s.Writer))
	}
	if want := "[c@300.0/3 b@200.1/2 a@200.0/1]"; fmt.Sprint(got) != want {
		t.Fatalf("siblings %v, want %s", got, want)
	}
	if dec, err := versionvec.Decode(m.Context); err != nil || versionvec.Compare(dec, vec) != versionvec.Equal || string(m.Value) != "c" {
		t.Fatalf("context %x (%v), value %q; want %v, c", m.Context, err, m.Value, vec)
	}
	if o := local.reads[len(local.reads)-1]; !o.KeepSiblings {
		t.Fatalf("siblings namespace read with %+v, want KeepSiblings", o)
	}
	if _, err := r.GetMeta(context.Background(), "cache", []byte("k"), 0); err != nil {
		t.Fatal(err)
	}
	if o := local.reads[len(local.reads)-1]; o.KeepSiblings {
		t.Fatalf("lww namespace read with %+v, want no siblings", o)
	}
	local.read = node.ReadResult{}
	m, err = r.GetMeta(context.Background(), "carts", []byte("nope"), 0)
	if err != nil || m.Found || len(m.Siblings) != 0 || string(m.Context) != "\x00" {
		t.Fatalf("missing key: %+v %v, want not found with the empty context", m, err)
	}
}
