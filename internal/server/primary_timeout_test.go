package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/primary"
)

// createNamespaceHTTP creates a namespace through PUT /v1/namespaces/NAME
// with a JSON policy and returns the answer's body.
func createNamespaceHTTP(t *testing.T, s *Server, name, policy string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+s.HTTPAddr()+"/v1/namespaces/"+name, strings.NewReader(policy))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("create %s over HTTP: got %s %s, want 201", name, res.Status, body)
	}
	return string(body)
}

// TestClusterPrimaryFailoverTimeout: two primary namespaces, one with a
// 300 ms failover timeout and one with the cluster's (1 s). Each shard's
// replicas run with its namespace's bounds, the control plane grants its
// leases for its namespace's duration, /v1/cluster reports the timeout,
// and the short one fails over when its primary stops. Timings are
// measured by the benchmarks; this only bounds them generously.
func TestClusterPrimaryFailoverTimeout(t *testing.T) {
	cfgs := clusterConfigs(t, 3)
	nodes, stops := startCluster(t, cfgs)
	ctx := context.Background()
	c1 := respClient(t, nodes[0])
	retry(t, 15*time.Second, func() error { return c1.Set(ctx, "strong", "1", 0).Err() })
	if body := createNamespaceHTTP(t, nodes[0], "fast", `{"replication":"primary","ack":"sync","shards":2,"failover_timeout_ms":300}`); !strings.Contains(body, `"failover_timeout_ms":300`) {
		t.Fatalf("create fast: the answer lacks the failover timeout: %s", body)
	}
	createNamespaceHTTP(t, nodes[0], "slow", `{"replication":"primary","ack":"sync","shards":2}`)
	want := map[string]time.Duration{"fast": 300 * time.Millisecond, "slow": time.Duration(cfgs[0].Cluster.FailoverTimeout)}
	clients := map[string][]*redis.Client{}
	for ns := range want {
		for _, n := range nodes {
			clients[ns] = append(clients[ns], nsClient(t, n, ns))
		}
		retry(t, 15*time.Second, func() error { return clients[ns][1].Set(ctx, "k", "v", 0).Err() })
	}

	// The bounds reach every replica, and the primaries hold leases of
	// their namespace's duration from the control plane.
	for ns, timeout := range want {
		fc := failover.ConfigFor(timeout)
		groups := nodes[0].cluster.meta.View().Namespaces[ns].Shards
		for _, sh := range groups {
			retry(t, 10*time.Second, func() error {
				leased := false
				for i, n := range nodes {
					st, err := n.cluster.primary.Status(int(sh.Group))
					if err != nil {
						return fmt.Errorf("%s shard %d on node %d: %w", ns, sh.Shard, i+1, err)
					}
					if st.Failover != fc {
						t.Fatalf("%s shard %d on node %d: got failover bounds %+v, want %+v", ns, sh.Shard, i+1, st.Failover, fc)
					}
					if st.Role == primary.Primary && st.Lease.Duration != 0 {
						if st.Lease.Duration != fc.LeaseDuration {
							t.Fatalf("%s shard %d: node %d holds a lease of %v, want %v", ns, sh.Shard, i+1, st.Lease.Duration, fc.LeaseDuration)
						}
						leased = true
					}
				}
				if !leased {
					return fmt.Errorf("%s shard %d: no primary holding a lease yet", ns, sh.Shard)
				}
				return nil
			})
		}
		for i, n := range nodes {
			var status ClusterStatus
			getJSONT(t, "http://"+n.HTTPAddr()+"/v1/cluster", &status)
			rows := 0
			for _, p := range status.Primaries {
				if p.Namespace != ns {
					continue
				}
				rows++
				if p.FailoverTimeoutMs != timeout.Milliseconds() {
					t.Fatalf("node %d /v1/cluster: %s shard %d: got failover_timeout_ms %d, want %d", i+1, ns, p.Shard, p.FailoverTimeoutMs, timeout.Milliseconds())
				}
			}
			if rows != len(groups) {
				t.Fatalf("node %d /v1/cluster: got %d rows of %s, want %d", i+1, rows, ns, len(groups))
			}
		}
	}

	// Stop the primary of the fast namespace's first shard; the
	// survivors take writes again.
	var old uint64
	retry(t, 5*time.Second, func() error {
		if old = primaryLayout(t, c1, "fast")[0]; old == 0 {
			return errors.New("fast shard 0 has no primary")
		}
		return nil
	})
	if err := stops[old-1](); err != nil {
		t.Fatal(err)
	}
	survivor := 0
	if old == 1 {
		survivor = 1
	}
	start := time.Now()
	retry(t, 20*time.Second, func() error { return clients["fast"][survivor].Set(ctx, "after", "v", 0).Err() })
	t.Logf("fast (300 ms) took writes again %v after node %d stopped", time.Since(start).Round(time.Millisecond), old)
	retry(t, 10*time.Second, func() error {
		var status ClusterStatus
		getJSONT(t, "http://"+nodes[survivor].HTTPAddr()+"/v1/cluster", &status)
		for _, p := range status.Primaries {
			if p.Namespace == "fast" && p.Shard == 0 && (p.Primary == old || p.Failovers < 1) {
				return fmt.Errorf("fast shard 0: primary %d after %d failovers, want another node than %d", p.Primary, p.Failovers, old)
			}
		}
		return nil
	})
	if got, err := clients["fast"][survivor].Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("fast k after the failover: got %q, %v; want v (a sync-acknowledged write)", got, err)
	}
}
