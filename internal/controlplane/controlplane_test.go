package controlplane

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/storage"
)

// directEngine applies meta writes straight to one store: the control
// plane's logic without replication (replication is raftstore's, tested
// there).
type directEngine struct {
	st      *storage.Store
	barrier error
}

func (e *directEngine) Write(ctx context.Context, group uint64, b kv.Batch) ([]kv.Result, error) {
	if group != MetaGroup {
		panic("write outside the meta group")
	}
	return e.st.Apply(ctx, b)
}

func (e *directEngine) ReadBarrier(ctx context.Context, group uint64) error { return e.barrier }

func newTestService(t *testing.T) (*Service, *directEngine) {
	t.Helper()
	st, err := storage.Open(storage.Options{Dir: "/d", FS: vfs.NewMem(), Sync: storage.SyncNone, SweepInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &directEngine{st: st}
	s := New(Config{Engine: e, Store: st, Poll: 10 * time.Millisecond})
	return s, e
}

func TestBootstrapCreatesDefaultOnce(t *testing.T) {
	s, _ := newTestService(t)
	ctx := context.Background()
	var views []*View
	var mu sync.Mutex
	s.Subscribe(func(v *View) { mu.Lock(); views = append(views, v); mu.Unlock() })
	s.Start()
	defer s.Close()
	def := kv.Policy{Consistency: kv.ConsistencyStrong, Replicas: 3, Shards: 8}
	// Two of three members registered: the default namespace waits.
	bctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err := s.Bootstrap(bctx, Member{ID: 1, PeerAddr: "a:1"}, def, 3)
	cancel()
	if err == nil {
		t.Fatal("bootstrap finished with 1 of 3 members")
	}
	if err := s.RegisterMember(ctx, Member{ID: 2, PeerAddr: "a:2"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterMember(ctx, Member{ID: 3, PeerAddr: "a:3"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint64{3, 1, 2} { // every member bootstraps; one wins
		if err := s.Bootstrap(ctx, Member{ID: id, PeerAddr: "a:x"}, def, 3); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Namespace(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if n.Policy != def || len(n.Shards) != 8 || n.Shards[0].Group != 1 || n.Shards[7].Group != 8 {
		t.Fatalf("default: %+v", n)
	}
	leaders := map[uint64]int{}
	for _, sh := range n.Shards {
		if len(sh.Replicas) != 3 {
			t.Fatalf("shard %d replicas %v", sh.Shard, sh.Replicas)
		}
		leaders[sh.Replicas[0]]++
	}
	for id, c := range leaders {
		if c < 2 || c > 3 {
			t.Fatalf("preferred leaders not spread: %v (node %d)", leaders, id)
		}
	}
	// Subscribers saw the namespace.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		ok := len(views) > 0 && len(views[len(views)-1].Namespaces) == 1 && len(views[len(views)-1].Members) == 3
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no view with the default namespace published")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCreateDescribeDrop(t *testing.T) {
	s, e := newTestService(t)
	ctx := context.Background()
	for _, id := range []uint64{1, 2, 3, 4} {
		if err := s.RegisterMember(ctx, Member{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	a, err := s.CreateNamespace(ctx, "orders", kv.Policy{Consistency: kv.ConsistencyStrong, Replicas: 3, Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateNamespace(ctx, "users", kv.Policy{Consistency: kv.ConsistencyStrong, Replicas: 2, Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	if a.Shards[3].Group != 4 || b.Shards[0].Group != 5 {
		t.Fatalf("group ids not from one counter: %d, %d", a.Shards[3].Group, b.Shards[0].Group)
	}
	if _, err := s.CreateNamespace(ctx, "orders", kv.Policy{Consistency: kv.ConsistencyStrong, Replicas: 1, Shards: 1}); kv.CodeOf(err) != kv.CodeConflict {
		t.Fatalf("duplicate: %v", err)
	}
	for _, tc := range []struct {
		name string
		p    kv.Policy
		code kv.Code
	}{
		{"x", kv.Policy{Consistency: "eventual", Replicas: 3, Shards: 4, W: 4}, kv.CodeInvalid},
		{"x", kv.Policy{Consistency: "weak", Replicas: 3, Shards: 4, R: 2}, kv.CodeInvalid},
		{"x", kv.Policy{Consistency: "strong", Replicas: 3, Shards: 4, W: 2}, kv.CodeInvalid},
		{"x", kv.Policy{Consistency: "strong", Replicas: 3, Shards: 4, ReadRepair: "blocking"}, kv.CodeInvalid},
		{"x", kv.Policy{Consistency: "eventual", Replicas: 3, Shards: 4, ReadRepair: "sometimes"}, kv.CodeInvalid},
		{"x", kv.Policy{Consistency: "weak", Replicas: 3, Shards: 4, ReadRepair: "async"}, kv.CodeInvalid},
		{"x", kv.Policy{Consistency: "sometimes", Replicas: 3, Shards: 4}, kv.CodeInvalid},
		{"x", kv.Policy{Consistency: "strong", Replicas: 5, Shards: 4}, kv.CodeInvalid},
		{"x", kv.Policy{Consistency: "strong", Replicas: 3, Shards: 0}, kv.CodeInvalid},
		{"_x", kv.Policy{Consistency: "strong", Replicas: 3, Shards: 4}, kv.CodeInvalid},
		{"bad name", kv.Policy{Consistency: "strong", Replicas: 3, Shards: 4}, kv.CodeInvalid},
	} {
		if _, err := s.CreateNamespace(ctx, tc.name, tc.p); kv.CodeOf(err) != tc.code {
			t.Errorf("create %q %v: %v, want %s", tc.name, tc.p, err, tc.code)
		}
	}
	list, err := s.Namespaces(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "orders" || list[1].Name != "users" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if err := s.DropNamespace(ctx, "users"); err != nil {
		t.Fatal(err)
	}
	if err := s.DropNamespace(ctx, "users"); kv.CodeOf(err) != kv.CodeNotFound {
		t.Fatalf("second drop: %v", err)
	}
	if err := s.DropNamespace(ctx, "default"); kv.CodeOf(err) != kv.CodeInvalid {
		t.Fatalf("drop default: %v", err)
	}
	if _, err := s.Namespace(ctx, "users"); kv.CodeOf(err) != kv.CodeNotFound {
		t.Fatalf("describe dropped: %v", err)
	}
	// Without the meta group's quorum nothing is decided.
	e.barrier = kv.Errorf(kv.CodeUnavailable, "no quorum")
	if _, err := s.CreateNamespace(ctx, "later", kv.Policy{Consistency: kv.ConsistencyStrong, Replicas: 1, Shards: 1}); kv.CodeOf(err) != kv.CodeUnavailable {
		t.Fatalf("create without quorum: %v", err)
	}
	if _, err := s.Namespaces(ctx); kv.CodeOf(err) != kv.CodeUnavailable {
		t.Fatalf("list without quorum: %v", err)
	}
}
