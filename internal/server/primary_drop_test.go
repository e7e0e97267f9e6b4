package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/primary"
)

// TestClusterPrimaryDrop: dropping a primary namespace stops its shards'
// replicas on every node (the engine no longer knows them, /v1/cluster
// no longer lists them), and a namespace created again under the name
// starts empty on new shards.
func TestClusterPrimaryDrop(t *testing.T) {
	nodes, _ := startCluster(t, clusterConfigs(t, 3))
	ctx := context.Background()
	c1 := respClient(t, nodes[0])
	retry(t, 15*time.Second, func() error { return c1.Set(ctx, "strong", "1", 0).Err() })
	createNamespaceHTTP(t, nodes[0], "temp", `{"replication":"primary","ack":"async","shards":2}`)
	tc := nsClient(t, nodes[1], "temp")
	retry(t, 15*time.Second, func() error { return tc.Set(ctx, "k", "old", 0).Err() })
	shards := nodes[0].cluster.meta.View().Namespaces["temp"].Shards
	for i, n := range nodes {
		for _, sh := range shards {
			if _, err := n.cluster.primary.Status(int(sh.Group)); err != nil {
				t.Fatalf("node %d, group %d before the drop: %v", i+1, sh.Group, err)
			}
		}
	}

	req, _ := http.NewRequest(http.MethodDelete, "http://"+nodes[0].HTTPAddr()+"/v1/namespaces/temp", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("drop temp: got %s, want 204", res.Status)
	}
	retry(t, 10*time.Second, func() error {
		for i, n := range nodes {
			for _, sh := range shards {
				if _, err := n.cluster.primary.Status(int(sh.Group)); !errors.Is(err, primary.ErrUnknownShard) {
					return fmt.Errorf("node %d still runs group %d of the dropped namespace (status error %v)", i+1, sh.Group, err)
				}
			}
		}
		return nil
	})
	for i, n := range nodes {
		var status ClusterStatus
		getJSONT(t, "http://"+n.HTTPAddr()+"/v1/cluster", &status)
		for _, p := range status.Primaries {
			if p.Namespace == "temp" {
				t.Fatalf("node %d /v1/cluster still lists a replica of the dropped namespace: %+v", i+1, p)
			}
		}
	}

	// Created again: new shards, none of the old rows.
	createNamespaceHTTP(t, nodes[0], "temp", `{"replication":"primary","ack":"async","shards":2}`)
	retry(t, 15*time.Second, func() error { return tc.Set(ctx, "k2", "new", 0).Err() })
	if got, err := tc.Exists(ctx, "k").Result(); err != nil || got != 0 {
		t.Fatalf("k in the recreated namespace: got %d, %v; want absent", got, err)
	}
	for _, sh := range nodes[0].cluster.meta.View().Namespaces["temp"].Shards {
		for _, old := range shards {
			if sh.Group == old.Group {
				t.Fatalf("recreated namespace reuses group %d", sh.Group)
			}
		}
	}
}
