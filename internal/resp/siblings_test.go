package resp

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// siblingStore is a node's store seen through a cluster router: reads
// answer a fixed ReadMeta, and writes record the causal context they
// carried.
type siblingStore struct {
	Store
	meta kv.ReadMeta

	mu       sync.Mutex
	contexts []string // per applied batch: its causal context, "-" for none
}

func (s *siblingStore) GetMeta(ctx context.Context, ns string, key []byte, r int) (kv.ReadMeta, error) {
	return s.meta, nil
}

func (s *siblingStore) Apply(ctx context.Context, b kv.Batch) ([]kv.Result, error) {
	cc, ok := kv.CausalContextFrom(ctx)
	s.mu.Lock()
	if ok {
		s.contexts = append(s.contexts, string(cc))
	} else {
		s.contexts = append(s.contexts, "-")
	}
	s.mu.Unlock()
	return s.Store.Apply(ctx, b)
}

func (s *siblingStore) lastContext() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.contexts) == 0 {
		return ""
	}
	return s.contexts[len(s.contexts)-1]
}

// fakeAdmin creates namespaces with the policy it is given, defaulted.
type fakeAdmin struct{}

func (fakeAdmin) CreateNamespace(ctx context.Context, name string, p kv.Policy) (kv.NamespaceInfo, error) {
	p = p.WithDefaults()
	if err := p.Validate(3); err != nil {
		return kv.NamespaceInfo{}, err
	}
	return kv.NamespaceInfo{Name: name, Policy: p, Shards: []kv.ShardInfo{{Shard: 0, Group: 7, Replicas: []uint64{1, 2, 3}}}}, nil
}
func (fakeAdmin) DropNamespace(ctx context.Context, name string) error { return nil }
func (fakeAdmin) Namespace(ctx context.Context, name string) (kv.NamespaceInfo, error) {
	return kv.NamespaceInfo{Name: name, Policy: kv.Policy{Consistency: kv.ConsistencyEventual, Replicas: 3, Shards: 1, W: 1, R: 1, ReadRepair: kv.ReadRepairAsync}}, nil
}
func (fakeAdmin) Namespaces(ctx context.Context) ([]kv.NamespaceInfo, error) { return nil, nil }

// TestSiblingsCommands: GETMETA lists an eventual key's siblings and
// context; FULCRUM.PUT and FULCRUM.DEL pass a context to the store, and
// refuse a malformed one.
func TestSiblingsCommands(t *testing.T) {
	cc := []byte{2, 1, 7, 2, 9}
	text := kv.FormatCausalContext(cc)
	st := &siblingStore{meta: kv.ReadMeta{Found: true, Value: []byte("b"), Consistency: kv.ConsistencyEventual, Answered: 1, Agreed: 1, Required: 1,
		Siblings: []kv.Sibling{{Value: []byte("b"), Timestamp: 20, Writer: 2}, {Value: []byte("a"), Timestamp: 10, Writer: 1}}, Context: cc}}
	ts := startServer(t, func(o *Options) {
		st.Store = o.Store
		o.Store = st
		o.Namespaces = fakeAdmin{}
	})
	r3, r2 := ts.client(t, 3), ts.client(t, 2)
	got, err := r3.Do(ctx, "FULCRUM.GETMETA", "k").Result()
	m, _ := got.(map[any]any)
	if err != nil || m["value"] != "b" || m["context"] != text || len(m) != 10 {
		t.Fatalf("RESP3 GETMETA: %v %v", got, err)
	}
	if sibs, _ := m["siblings"].([]any); len(sibs) != 2 || sibs[0] != "b" || sibs[1] != "a" {
		t.Fatalf("GETMETA siblings: %v, want [b a]", m["siblings"])
	}
	arr, err := r2.Do(ctx, "FULCRUM.GETMETA", "k").Slice()
	if err != nil || len(arr) != 20 || arr[16] != "siblings" || arr[18] != "context" || arr[19] != text {
		t.Fatalf("RESP2 GETMETA: %v %v", arr, err)
	}

	check(t, r3, "OK", "FULCRUM.PUT", "k", "c", "CONTEXT", text)
	if got := st.lastContext(); got != string(cc) {
		t.Fatalf("FULCRUM.PUT CONTEXT: the store got context %x, want %x", got, cc)
	}
	check(t, r3, "c", "GET", "k")
	check(t, r3, "OK", "FULCRUM.PUT", "k", "d")
	if got := st.lastContext(); got != "-" {
		t.Fatalf("FULCRUM.PUT without a context: the store got %x, want none", got)
	}
	check(t, r3, 1, "fulcrum.del", "k", "context", text)
	if got := st.lastContext(); got != string(cc) {
		t.Fatalf("FULCRUM.DEL CONTEXT: the store got context %x, want %x", got, cc)
	}
	checkNil(t, r3, "GET", "k")
	for _, tc := range []struct {
		args []any
		want string
	}{
		{[]any{"FULCRUM.PUT", "k", "v", "CONTEXT", "!!"}, "INVALID causal context"},
		{[]any{"FULCRUM.PUT", "k", "v", "CONTEXT", ""}, "INVALID causal context"},
		{[]any{"FULCRUM.PUT", "k", "v", "TTL", "5"}, `INVALID unknown option "TTL": usage: FULCRUM.PUT`},
		{[]any{"FULCRUM.PUT", "k", "v", "CONTEXT"}, "INVALID usage: FULCRUM.PUT key value [CONTEXT context]"},
		{[]any{"FULCRUM.PUT", "k"}, "ERR wrong number of arguments for 'fulcrum.put' command"},
		{[]any{"FULCRUM.DEL", "k", "CONTEXT"}, "INVALID usage: FULCRUM.DEL key [CONTEXT context]"},
		{[]any{"FULCRUM.DEL", "k", "CONTEXT", "A"}, "INVALID causal context"},
	} {
		if _, err := do(r3, tc.args...); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}

	// CONFLICTS at creation, shown for eventual namespaces.
	got, err = r3.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "carts", "CONSISTENCY", "eventual", "CONFLICTS", "Siblings").Result()
	if m, _ := got.(map[any]any); err != nil || m["conflicts"] != "siblings" || m["read_repair"] != "async" {
		t.Fatalf("CREATE CONFLICTS siblings: %v %v", got, err)
	}
	if err := r3.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "x", "CONFLICTS", "siblings").Err(); err == nil || !strings.Contains(err.Error(), "INVALID conflicts applies to eventual namespaces") {
		t.Fatalf("strong with CONFLICTS siblings: %v", err)
	}
	if err := r3.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "x", "CONSISTENCY", "weak", "CONFLICTS", "siblings").Err(); err == nil || !strings.Contains(err.Error(), "INVALID conflicts \"siblings\": a weak namespace") {
		t.Fatalf("weak with CONFLICTS siblings: %v", err)
	}
	got, err = r3.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "plain").Result()
	if m, _ := got.(map[any]any); err != nil || m["consistency"] != "strong" || m["conflicts"] != nil {
		t.Fatalf("strong namespace shows no conflicts: %v %v", got, err)
	}
	// One created before conflict modes existed is lww.
	got, err = r3.Do(ctx, "FULCRUM.NAMESPACE", "DESCRIBE", "old").Result()
	if m, _ := got.(map[any]any); err != nil || m["conflicts"] != "lww" || len(m) != 9 {
		t.Fatalf("DESCRIBE of an eventual namespace without a conflict mode: %v %v", got, err)
	}
	if arr, err := r2.Do(ctx, "FULCRUM.NAMESPACE", "DESCRIBE", "old").Slice(); err != nil || len(arr) != 18 {
		t.Fatalf("RESP2 DESCRIBE: %v %v", arr, err)
	}
}

// TestSiblingsCommandsAlone: a node that runs alone takes FULCRUM.PUT and
// FULCRUM.DEL as SET and DEL, and refuses a context (it has no siblings).
func TestSiblingsCommandsAlone(t *testing.T) {
	ts := startServer(t, nil)
	r := ts.client(t, 3)
	check(t, r, "OK", "FULCRUM.PUT", "k", "v")
	check(t, r, "v", "GET", "k")
	if err := r.Do(ctx, "FULCRUM.PUT", "k", "w", "CONTEXT", "AA").Err(); err == nil || !strings.Contains(err.Error(), "INVALID this node runs alone") {
		t.Fatalf("FULCRUM.PUT CONTEXT alone: %v", err)
	}
	check(t, r, "v", "GET", "k")
	got, err := r.Do(ctx, "FULCRUM.GETMETA", "k").Result()
	if m, _ := got.(map[any]any); err != nil || len(m) != 8 || m["context"] != nil {
		t.Fatalf("GETMETA alone keeps its shape: %v %v", got, err)
	}
	check(t, r, 1, "FULCRUM.DEL", "k")
	checkNil(t, r, "GET", "k")
}
