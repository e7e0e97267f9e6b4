package resp

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// replicaStore is a node's store seen through a cluster router holding a
// replication=primary namespace: reads answer a fixed ReadMeta and record
// the replica-read bound and R their context and call carried.
type replicaStore struct {
	Store
	meta kv.ReadMeta

	mu    sync.Mutex
	reads []string // per read: "bound r", bound "-" for none (the primary answers)
}

func (s *replicaStore) GetMeta(ctx context.Context, ns string, key []byte, r int) (kv.ReadMeta, error) {
	bound := "-"
	if d, ok := kv.ReplicaReadsFrom(ctx); ok {
		bound = d.String()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads = append(s.reads, fmt.Sprintf("%s %d", bound, r))
	return s.meta, nil
}

func (s *replicaStore) lastRead() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reads) == 0 {
		return ""
	}
	return s.reads[len(s.reads)-1]
}

// doer is a client or one of its connections.
type doer interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// TestGetMetaReplicaReads: FULCRUM.GETMETA's READONLY and MAXSTALENESS
// set this one read's replica-read bound, over the connection's READONLY
// mode; bad options are refused precisely; the answer reports the role,
// epoch and lag.
func TestGetMetaReplicaReads(t *testing.T) {
	st := &replicaStore{meta: kv.ReadMeta{Found: true, Value: []byte("v"), Consistency: "primary-async",
		Role: "replica", Epoch: 3, LagEntries: 2, Lag: 1500 * time.Millisecond}}
	ts := startServer(t, func(o *Options) {
		st.Store = o.Store
		o.Store = st
	})
	r3 := ts.client(t, 3)
	cn := r3.Conn() // READONLY is connection state
	t.Cleanup(func() { cn.Close() })
	read := func(c doer, want string, args ...any) {
		t.Helper()
		got, err := c.Do(ctx, append([]any{"FULCRUM.GETMETA", "k"}, args...)...).Result()
		m, _ := got.(map[any]any)
		if err != nil || m["value"] != "v" || m["role"] != "replica" || m["epoch"] != int64(3) ||
			m["lag_entries"] != int64(2) || m["lag_ms"] != int64(1500) || len(m) != 12 {
			t.Fatalf("GETMETA k %v: %v %v", args, got, err)
		}
		if got := st.lastRead(); got != want {
			t.Fatalf("GETMETA k %v: the store read with bound and R %q, want %q", args, got, want)
		}
	}
	read(cn, "- 0")
	read(cn, "-1ns 0", "READONLY")
	read(cn, "-1ns 0", "readonly")
	read(cn, "250ms 0", "MAXSTALENESS", "250")
	read(cn, "0s 0", "READONLY", "MAXSTALENESS", "0")
	read(cn, "1h0m0s 0", "maxstaleness", "3600000", "readonly")
	read(cn, "5ms 2", "R", "2", "MAXSTALENESS", "5")
	read(cn, "- 2", "R", "2")
	// The connection's mode holds where the request says nothing, and a
	// request's own bound replaces it for that read only.
	if err := cn.Do(ctx, "READONLY", "MAXSTALENESS", "100").Err(); err != nil {
		t.Fatal(err)
	}
	read(cn, "100ms 0")
	read(cn, "-1ns 0", "READONLY")
	read(cn, "7ms 0", "MAXSTALENESS", "7")
	read(cn, "100ms 0")
	if err := cn.Do(ctx, "READWRITE").Err(); err != nil {
		t.Fatal(err)
	}
	read(cn, "- 0")

	// RESP2: the same fields, flat.
	arr, err := ts.client(t, 2).Do(ctx, "FULCRUM.GETMETA", "k", "READONLY").Slice()
	if err != nil || len(arr) != 24 || arr[16] != "role" || arr[17] != "replica" || arr[22] != "lag_ms" || arr[23] != int64(1500) {
		t.Fatalf("RESP2 GETMETA READONLY: %v %v", arr, err)
	}

	const usage = "usage: FULCRUM.GETMETA key [R replicas] [READONLY] [MAXSTALENESS ms]"
	for _, tc := range []struct {
		args []any
		want string
	}{
		{[]any{"MAXSTALENESS", "abc"}, `INVALID MAXSTALENESS "abc": want milliseconds from 0 to 3600000`},
		{[]any{"MAXSTALENESS", "-1"}, `INVALID MAXSTALENESS "-1": want milliseconds from 0 to 3600000`},
		{[]any{"MAXSTALENESS", "3600001"}, `INVALID MAXSTALENESS "3600001": want milliseconds from 0 to 3600000`},
		{[]any{"READONLY", "MAXSTALENESS"}, "INVALID MAXSTALENESS needs a value: " + usage},
		{[]any{"R"}, "INVALID R needs a value: " + usage},
		{[]any{"R", "0"}, `INVALID R "0": want a number of replicas from 1`},
		{[]any{"READONLY", "readonly"}, "INVALID READONLY given twice: " + usage},
		{[]any{"MAXSTALENESS", "1", "MAXSTALENESS", "2"}, "INVALID MAXSTALENESS given twice: " + usage},
		{[]any{"R", "1", "R", "2"}, "INVALID R given twice: " + usage},
		{[]any{"STALE", "5"}, `INVALID unknown option "STALE": ` + usage},
		{[]any{"5"}, `INVALID unknown option "5": ` + usage},
	} {
		if err := cn.Do(ctx, append([]any{"FULCRUM.GETMETA", "k"}, tc.args...)...).Err(); err == nil || err.Error() != tc.want {
			t.Errorf("GETMETA k %v: %v, want %q", tc.args, err, tc.want)
		}
	}
	// READONLY's own MAXSTALENESS check is the same.
	checkErr(t, r3, `INVALID MAXSTALENESS "x": want milliseconds from 0 to 3600000`, "READONLY", "MAXSTALENESS", "x")
}

// TestGetMetaReplicaReadsAlone: a node that runs alone takes the options
// (checked as anywhere) and answers from its one copy.
func TestGetMetaReplicaReadsAlone(t *testing.T) {
	ts := startServer(t, nil)
	r := ts.client(t, 3)
	check(t, r, "OK", "SET", "k", "v")
	got, err := r.Do(ctx, "FULCRUM.GETMETA", "k", "READONLY", "MAXSTALENESS", "10").Result()
	if m, _ := got.(map[any]any); err != nil || m["value"] != "v" || m["consistency"] != "local" || len(m) != 8 {
		t.Fatalf("GETMETA READONLY alone: %v %v", got, err)
	}
	checkErr(t, r, `INVALID MAXSTALENESS "-5": want milliseconds from 0 to 3600000`, "FULCRUM.GETMETA", "k", "MAXSTALENESS", "-5")
}

// TestNamespaceCreateFailoverTimeout: FAILOVERTIMEOUT ms at creation of a
// primary namespace, shown by DESCRIBE when set; a non-number and an
// out-of-range or misplaced value are refused.
func TestNamespaceCreateFailoverTimeout(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Namespaces = fakeAdmin{} })
	r3, r2 := ts.client(t, 3), ts.client(t, 2)
	got, err := r3.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "orders", "REPLICATION", "primary", "ACK", "async", "FAILOVERTIMEOUT", "2500").Result()
	if m, _ := got.(map[any]any); err != nil || m["failover_timeout_ms"] != int64(2500) || m["ack"] != "async" || len(m) != 10 {
		t.Fatalf("CREATE FAILOVERTIMEOUT 2500: %v %v", got, err)
	}
	arr, err := r2.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "orders", "REPLICATION", "primary", "failovertimeout", "100").Slice()
	if err != nil || len(arr) != 20 || arr[12] != "failover_timeout_ms" || arr[13] != int64(100) {
		t.Fatalf("RESP2 CREATE FAILOVERTIMEOUT 100: %v %v", arr, err)
	}
	// 0 (or none): the cluster's timeout, not shown.
	for _, args := range [][]any{{}, {"FAILOVERTIMEOUT", "0"}} {
		got, err = r3.Do(ctx, append([]any{"FULCRUM.NAMESPACE", "CREATE", "orders", "REPLICATION", "primary"}, args...)...).Result()
		if m, _ := got.(map[any]any); err != nil || m["failover_timeout_ms"] != nil || len(m) != 9 {
			t.Fatalf("CREATE %v: %v %v", args, got, err)
		}
	}
	for _, tc := range []struct {
		args []any
		want string
	}{
		{[]any{"REPLICATION", "primary", "FAILOVERTIMEOUT", "1s"}, `INVALID FAILOVERTIMEOUT "1s": want milliseconds (0: the cluster's cluster.failover_timeout)`},
		{[]any{"REPLICATION", "primary", "FAILOVERTIMEOUT", "50"}, "INVALID failover_timeout 50 ms: want 100 to 60000"},
		{[]any{"REPLICATION", "primary", "FAILOVERTIMEOUT", "60001"}, "INVALID failover_timeout 60001 ms: want 100 to 60000"},
		{[]any{"FAILOVERTIMEOUT", "1000"}, "INVALID ack, ack_replicas, allow_degrade, availability and failover_timeout apply to replication=primary namespaces"},
		{[]any{"REPLICATION", "primary", "FAILOVERTIMEOUT"}, "INVALID options come in pairs: " + namespaceUsage},
	} {
		err := r3.Do(ctx, append([]any{"FULCRUM.NAMESPACE", "CREATE", "x"}, tc.args...)...).Err()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("CREATE %v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
