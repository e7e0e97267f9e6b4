package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// primaryLayout returns each shard's primary, from DESCRIBE's layout
// ("leader N" is the recorded primary), 0 where there is none yet.
func primaryLayout(t *testing.T, c *redis.Client, ns string) []uint64 {
	t.Helper()
	res, err := c.Do(context.Background(), "FULCRUM.NAMESPACE", "DESCRIBE", ns).Result()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := res.(map[any]any)
	if !ok {
		t.Fatalf("DESCRIBE %s: %T %v", ns, res, res)
	}
	lines, _ := m["layout"].([]any)
	re := regexp.MustCompile(`leader (\d+)`)
	var out []uint64
	for _, l := range lines {
		var id uint64
		if sm := re.FindStringSubmatch(fmt.Sprint(l)); sm != nil {
			id, _ = strconv.ParseUint(sm[1], 10, 64)
		}
		out = append(out, id)
	}
	return out
}

// TestClusterPrimaryFailover: a replication=primary namespace with sync
// acks on 3 real nodes. Active-passive puts every shard's primary on one
// node; killing it promotes another within seconds, every acknowledged
// write survives, and the old primary returns as a replica.
func TestClusterPrimaryFailover(t *testing.T) {
	cfgs := clusterConfigs(t, 3)
	nodes, stops := startCluster(t, cfgs)
	ctx := context.Background()
	c2 := respClient(t, nodes[1])
	retry(t, 15*time.Second, func() error { return c2.Set(ctx, "strong", "1", 0).Err() })
	for _, bad := range [][]any{
		{"REPLICATION", "primary", "ACK", "sync", "ACKREPLICAS", "3"},
		{"REPLICATION", "primary", "CONSISTENCY", "eventual"},
		{"REPLICATION", "primary", "ACK", "sometimes"},
		{"ACK", "async"},
	} {
		args := append([]any{"FULCRUM.NAMESPACE", "CREATE", "bad"}, bad...)
		if err := c2.Do(ctx, args...).Err(); err == nil || !strings.Contains(err.Error(), "INVALID") {
			t.Fatalf("%v: %v, want INVALID", bad, err)
		}
	}
	if err := c2.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "orders", "REPLICATION", "primary", "ACK", "sync", "SHARDS", "3").Err(); err != nil {
		t.Fatal(err)
	}
	nsClient := func(s *Server, readonly bool) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: s.RESPAddr(), MaxRetries: -1, PoolSize: 1,
			OnConnect: func(ctx context.Context, cn *redis.Conn) error {
				if readonly {
					if err := cn.Do(ctx, "READONLY").Err(); err != nil {
						return err
					}
				}
				return cn.Do(ctx, "NAMESPACE", "orders").Err()
			}})
		t.Cleanup(func() { c.Close() })
		return c
	}
	o2, o1ro := nsClient(nodes[1], false), nsClient(nodes[0], true)
	retry(t, 15*time.Second, func() error { return o2.Set(ctx, "k0", "v0", 0).Err() })
	const keys = 60
	for i := 1; i < keys; i++ {
		// Under load a replica can drop out of the in-sync set for a
		// moment; sync then refuses writes (UNAVAILABLE), by design.
		retry(t, 10*time.Second, func() error { return o2.Set(ctx, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i), 0).Err() })
	}
	retry(t, 10*time.Second, func() error {
		// Only a refusal is retried: a timed-out INCR may have counted.
		err := o2.Incr(ctx, "counter").Err()
		if err != nil && !strings.Contains(err.Error(), "not enough in-sync") {
			t.Fatalf("INCR: %v", err)
		}
		return err
	})
	// Active-passive: every shard's primary is the highest id.
	retry(t, 5*time.Second, func() error {
		if got := primaryLayout(t, c2, "orders"); !slices.Equal(got, []uint64{3, 3, 3}) {
			return fmt.Errorf("primaries %v, want node 3 for every shard", got)
		}
		return nil
	})
	// A replica read (READONLY) reports its role and lag; sync acks mean
	// the replica already has every acknowledged write.
	meta, err := o1ro.Do(ctx, "FULCRUM.GETMETA", "k7").Result()
	if err != nil {
		t.Fatal(err)
	}
	mm := meta.(map[any]any)
	if mm["value"] != "v7" || mm["role"] != "replica" || mm["epoch"] != int64(1) {
		t.Fatalf("replica read: %v", mm)
	}
	if meta, err := o2.Do(ctx, "FULCRUM.GETMETA", "k7").Result(); err != nil || meta.(map[any]any)["role"] != "primary" {
		t.Fatalf("primary read: %v %v", meta, err)
	}
	// Scans: from the primaries (node 2 holds none), or from the local
	// replicas with READONLY; SCAN pages through every key once.
	for name, c := range map[string]*redis.Client{"primaries": o2, "replicas": o1ro} {
		ks, err := c.Keys(ctx, "*").Result()
		if err != nil || len(ks) != keys+1 {
			t.Fatalf("KEYS * from the %s: %d keys, %v; want %d", name, len(ks), err, keys+1)
		}
		seen := map[string]bool{}
		var cursor uint64
		for {
			page, next, err := c.Scan(ctx, cursor, "k*", 7).Result()
			if err != nil {
				t.Fatalf("SCAN from the %s: %v", name, err)
			}
			for _, k := range page {
				if seen[k] {
					t.Fatalf("SCAN from the %s returned %s twice", name, k)
				}
				seen[k] = true
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
		if len(seen) != keys {
			t.Fatalf("SCAN k* from the %s: %d keys, want %d", name, len(seen), keys)
		}
	}

	// Stop the primary, node 3 (not the control plane's leader, which
	// prefers node 1).
	if err := stops[2](); err != nil {
		t.Fatal(err)
	}
	failover := func(key string) time.Duration {
		t.Helper()
		start := time.Now()
		retry(t, 20*time.Second, func() error {
			if err := o2.Set(ctx, key, "failover", 0).Err(); err != nil {
				var recs []string
				for _, r := range nodes[1].cluster.meta.View().Primaries {
					recs = append(recs, fmt.Sprintf("%+v", r))
				}
				return fmt.Errorf("%w (records: %s)", err, strings.Join(recs, "; "))
			}
			return nil
		})
		return time.Since(start)
	}
	t.Logf("writes resumed %v after the primary stopped", failover("after").Round(time.Millisecond))
	checkAll := func() {
		t.Helper()
		for i := 0; i < keys; i++ {
			got, err := o2.Get(ctx, fmt.Sprintf("k%d", i)).Result()
			if err != nil || got != fmt.Sprintf("v%d", i) {
				t.Fatalf("k%d after failover: %q %v (a sync-acknowledged write was lost)", i, got, err)
			}
		}
	}
	checkAll()
	if n, err := o2.Incr(ctx, "counter").Result(); err != nil || n != 2 {
		t.Fatalf("counter after failover: %d %v", n, err)
	}
	after := primaryLayout(t, c2, "orders")
	for _, p := range after {
		if p != 1 && p != 2 {
			t.Fatalf("primaries after failover %v: want nodes 1 or 2", after)
		}
	}
	// The failover is visible: INFO, /v1/cluster and the metrics.
	retry(t, 5*time.Second, func() error {
		info, err := c2.Info(ctx, "cluster").Result()
		if err != nil {
			return err
		}
		for _, want := range []string{"fulcrum_primary_shards_local:3", "fulcrum_primary_failovers:3", "fulcrum_primary_lost_writes:0"} {
			if !strings.Contains(info, want+"\r\n") {
				return fmt.Errorf("INFO cluster lacks %q:\n%s", want, info)
			}
		}
		return nil
	})
	// The new primary saw the other survivor join its in-sync set.
	retry(t, 5*time.Second, func() error {
		var st ClusterStatus
		getJSONT(t, "http://"+nodes[after[0]-1].HTTPAddr()+"/v1/cluster", &st)
		for _, p := range st.Primaries {
			if p.Shard == 0 && p.ISRJoined == 0 {
				return fmt.Errorf("node %d, primary of shard 0, counts no replica joining its in-sync set: %+v", after[0], p)
			}
		}
		return nil
	})
	var status ClusterStatus
	getJSONT(t, "http://"+nodes[1].HTTPAddr()+"/v1/cluster", &status)
	if len(status.Primaries) != 3 || status.Primaries[0].Epoch != 2 || status.Primaries[0].Failovers != 1 || len(status.Primaries[0].Recorded) == 0 {
		t.Fatalf("/v1/cluster primaries: %+v", status.Primaries)
	}
	metrics := httpGetT(t, "http://"+nodes[1].HTTPAddr()+"/metrics")
	if !strings.Contains(metrics, `fulcrum_primary_epoch{namespace="orders",shard="0"} 2`) || !strings.Contains(metrics, `fulcrum_primary_failovers_total{namespace="orders",shard="2"} 1`) {
		t.Fatalf("metrics lack the primary shards':\n%s", metrics)
	}

	// Node 3 returns as a replica and catches up; the primaries stay.
	n3, _ := startNode(t, cfgs[2])
	o3ro := nsClient(n3, true)
	retry(t, 15*time.Second, func() error {
		got, err := o3ro.Get(ctx, "after").Result()
		if err != nil || got != "failover" {
			return fmt.Errorf("node 3 replica read: %q %v", got, err)
		}
		return nil
	})
	if got := primaryLayout(t, c2, "orders"); !slices.Equal(got, after) {
		t.Fatalf("primaries moved when node 3 returned: %v, were %v", got, after)
	}

	// Now node 1, the control plane's leader (and a primary if it took
	// over): its successor takes office before the failover can start.
	if err := stops[0](); err != nil {
		t.Fatal(err)
	}
	t.Logf("writes resumed %v after the control plane's leader stopped", failover("after2").Round(time.Millisecond))
	checkAll()
}

func httpGetT(t *testing.T, url string) string {
	t.Helper()
	r, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func getJSONT(t *testing.T, url string, out any) {
	t.Helper()
	if err := json.Unmarshal([]byte(httpGetT(t, url)), out); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// TestClusterPrimaryActiveActive: an active-active namespace spreads its
// primaries over the nodes and serves reads from every replica; a node's
// death fails over only its own shards.
func TestClusterPrimaryActiveActive(t *testing.T) {
	cfgs := clusterConfigs(t, 3)
	nodes, stops := startCluster(t, cfgs)
	ctx := context.Background()
	c1 := respClient(t, nodes[0])
	retry(t, 15*time.Second, func() error { return c1.Set(ctx, "strong", "1", 0).Err() })
	if err := c1.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "events", "REPLICATION", "primary", "ACK", "semi", "ACKREPLICAS", "1",
		"AVAILABILITY", "active-active", "SHARDS", "6").Err(); err != nil {
		t.Fatal(err)
	}
	nsClient := func(s *Server) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: s.RESPAddr(), MaxRetries: -1, PoolSize: 1,
			OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "NAMESPACE", "events").Err() }})
		t.Cleanup(func() { c.Close() })
		return c
	}
	e1, e2 := nsClient(nodes[0]), nsClient(nodes[1])
	retry(t, 15*time.Second, func() error {
		for i := 0; i < 30; i++ {
			if err := e1.Set(ctx, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i), 0).Err(); err != nil {
				return err
			}
		}
		return nil
	})
	var before []uint64
	retry(t, 5*time.Second, func() error {
		before = primaryLayout(t, c1, "events")
		spread := map[uint64]bool{}
		for _, p := range before {
			if p == 0 {
				return fmt.Errorf("primaries %v: some shard has none", before)
			}
			spread[p] = true
		}
		if len(spread) != 3 {
			return fmt.Errorf("primaries %v: want all three nodes", before)
		}
		return nil
	})
	// Reads are served by the local replica, which reports its role.
	retry(t, 5*time.Second, func() error {
		roles := map[string]int{}
		for i := 0; i < 30; i++ {
			m, err := e2.Do(ctx, "FULCRUM.GETMETA", fmt.Sprintf("k%d", i)).Result()
			if err != nil {
				return err
			}
			mm := m.(map[any]any)
			if mm["value"] != fmt.Sprintf("v%d", i) {
				return fmt.Errorf("k%d on node 2: %v (semi acks: a replica may lag)", i, mm)
			}
			roles[fmt.Sprint(mm["role"])]++
		}
		if roles["primary"] == 0 || roles["replica"] == 0 {
			return fmt.Errorf("node 2 answered as %v: want both its primaries and its replicas", roles)
		}
		return nil
	})

	if err := stops[2](); err != nil {
		t.Fatal(err)
	}
	retry(t, 20*time.Second, func() error {
		for i := 0; i < 30; i++ {
			if err := e1.Set(ctx, fmt.Sprintf("k%d", i), "after", 0).Err(); err != nil {
				return err
			}
		}
		return nil
	})
	after := primaryLayout(t, c1, "events")
	for s := range after {
		switch {
		case after[s] == 3:
			t.Fatalf("shard %d still has the dead node 3 as primary: %v", s, after)
		case before[s] != 3 && after[s] != before[s]:
			t.Fatalf("shard %d moved from node %d though only node 3 died: %v -> %v", s, before[s], before, after)
		}
	}
}
