package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fulcrumdb/fulcrum/internal/config"
	"github.com/fulcrumdb/fulcrum/internal/controlplane"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	lnode "github.com/fulcrumdb/fulcrum/internal/leaderless/node"
	"github.com/fulcrumdb/fulcrum/internal/versionvec"
)

// freePorts reserves n loopback ports by binding and releasing them. The
// peer list must be written before any node starts, so the kernel cannot
// pick them at bind time as it does for the client listeners.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	// Below the ephemeral range (32768 up), so outgoing connections of
	// this or another test cannot take a port between its release here
	// and the node's bind; random, so parallel test binaries rarely try
	// the same one (a taken port is skipped).
	var out []string
	var lns []net.Listener
	for tries := 0; len(out) < n; tries++ {
		if tries > 1000 {
			t.Fatalf("no %d free ports below 32768", n)
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000)))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

func clusterConfigs(t *testing.T, n int) []config.Config {
	peers := freePorts(t, n)
	var list []string
	for i, a := range peers {
		list = append(list, fmt.Sprintf("%d=%s", i+1, a))
	}
	var cfgs []config.Config
	for i := range peers {
		cfg := testConfig(t)
		cfg.Cluster.ID = uint64(i + 1)
		cfg.Cluster.PeerAddr = peers[i]
		cfg.Cluster.Peers = list
		cfg.Cluster.Shards = 4
		cfg.Cluster.Tick = config.Duration(20 * time.Millisecond)
		cfg.Cluster.RequestTimeout = config.Duration(time.Second)
		cfgs = append(cfgs, cfg)
	}
	return cfgs
}

// startCluster runs a node per config until the test ends and returns
// them with their stop functions.
func startCluster(t *testing.T, cfgs []config.Config) ([]*Server, []func() error) {
	t.Helper()
	var nodes []*Server
	var stops []func() error
	for _, cfg := range cfgs {
		s, stop := startNode(t, cfg)
		nodes = append(nodes, s)
		stops = append(stops, stop)
	}
	return nodes, stops
}

// respClient is a go-redis client of s that never retries on its own (the
// tests retry explicitly), closed when the test ends.
func respClient(t *testing.T, s *Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.RESPAddr(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

// retry runs f until it succeeds or the deadline passes (elections take a
// few ticks after start and after a node stops).
func retry(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestClusterServesFromEveryNode(t *testing.T) {
	nodes, stops := startCluster(t, clusterConfigs(t, 3))
	ctx := context.Background()
	clients := make([]*redis.Client, 3)
	for i, s := range nodes {
		clients[i] = respClient(t, s)
	}
	retry(t, 10*time.Second, func() error { return clients[0].Set(ctx, "k", "v1", 0).Err() })
	for i := 1; i < 3; i++ {
		if got, err := clients[i].Get(ctx, "k").Result(); err != nil || got != "v1" {
			t.Fatalf("node %d read %q, %v", i+1, got, err)
		}
	}
	// Keys spread over every shard, written anywhere, read everywhere.
	for i := 0; i < 40; i++ {
		if err := clients[i%3].Set(ctx, fmt.Sprintf("key%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := clients[2].Exists(ctx, "key0", "key13", "key39").Result(); err != nil || n != 3 {
		t.Fatalf("exists: %d %v", n, err)
	}
	if keys, err := clients[1].Keys(ctx, "key*").Result(); err != nil || len(keys) != 40 {
		t.Fatalf("keys: %d %v", len(keys), err)
	}
	// A multi-shard MSETNX is refused, whole.
	err := clients[0].MSetNX(ctx, "m1", "a", "m2", "b", "m3", "c", "m4", "d").Err()
	if err == nil || !strings.Contains(err.Error(), "shards") {
		t.Fatalf("cross-shard MSETNX: %v", err)
	}

	// The cluster view says who leads what.
	resp, err := http.Get("http://" + nodes[0].HTTPAddr() + "/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	var st ClusterStatus
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Node != 1 || len(st.Shards) != 5 { // 4 of default, 1 of the control plane
		t.Fatalf("cluster status: %+v %v", st, err)
	}
	info, err := clients[0].Info(ctx, "cluster").Result()
	if err != nil || !strings.Contains(info, "cluster_enabled:1") {
		t.Fatalf("INFO cluster: %q %v", info, err)
	}

	// Namespaces: created on one node, used through another at once,
	// described over HTTP, dropped.
	created, err := clients[1].Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "orders", "REPLICAS", "3", "SHARDS", "2").Result()
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Logf("created: %v", created)
	orders := respClient(t, nodes[2])
	if err := orders.Do(ctx, "NAMESPACE", "orders").Err(); err != nil {
		t.Fatal(err)
	}
	retry(t, 5*time.Second, func() error { return orders.Set(ctx, "o1", "paid", 0).Err() })
	if got, err := orders.Get(ctx, "o1").Result(); err != nil || got != "paid" {
		t.Fatalf("orders get: %q %v", got, err)
	}
	if err := clients[0].Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "orders").Err(); err == nil || !strings.HasPrefix(err.Error(), "CONFLICT") {
		t.Fatalf("duplicate create: %v", err)
	}
	if err := clients[0].Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "x", "CONSISTENCY", "eventual", "R", "4").Err(); err == nil || !strings.HasPrefix(err.Error(), "INVALID r 4") {
		t.Fatalf("eventual with R above replicas: %v", err)
	}
	resp, err = http.Get("http://" + nodes[0].HTTPAddr() + "/v1/namespaces/orders")
	if err != nil {
		t.Fatal(err)
	}
	var desc kv.NamespaceInfo
	err = json.NewDecoder(resp.Body).Decode(&desc)
	resp.Body.Close()
	if err != nil || desc.Policy.Shards != 2 || len(desc.Shards) != 2 || len(desc.Shards[0].Replicas) != 3 {
		t.Fatalf("describe: %+v %v", desc, err)
	}
	if names, err := clients[0].Do(ctx, "FULCRUM.NAMESPACE", "LIST").StringSlice(); err != nil || fmt.Sprint(names) != "[default orders]" {
		t.Fatalf("list: %v %v", names, err)
	}
	if err := clients[0].Do(ctx, "FULCRUM.NAMESPACE", "DROP", "orders").Err(); err != nil {
		t.Fatal(err)
	}
	retry(t, 5*time.Second, func() error {
		err := orders.Get(ctx, "o1").Err()
		if err != nil && strings.HasPrefix(err.Error(), "NOT_FOUND") {
			return nil
		}
		return fmt.Errorf("after drop: %v", err)
	})

	// Stop node 1 (gracefully: it hands its leaderships over); the other
	// two keep serving reads and writes.
	if err := stops[0](); err != nil {
		t.Fatal(err)
	}
	retry(t, 10*time.Second, func() error { return clients[1].Set(ctx, "k", "v2", 0).Err() })
	if got, err := clients[2].Get(ctx, "k").Result(); err != nil || got != "v2" {
		t.Fatalf("after stop: %q %v", got, err)
	}
	// Stop node 2 too: node 3 alone is a minority and must refuse.
	if err := stops[1](); err != nil {
		t.Fatal(err)
	}
	err = clients[2].Get(ctx, "k").Err()
	if err == nil || !strings.HasPrefix(err.Error(), "UNAVAILABLE") || !strings.Contains(err.Error(), "no quorum") {
		t.Fatalf("minority read: %v, want UNAVAILABLE ... no quorum", err)
	}
	err = clients[2].Set(ctx, "k", "v3", 0).Err()
	if err == nil || !(strings.HasPrefix(err.Error(), "UNAVAILABLE") || strings.HasPrefix(err.Error(), "TIMEOUT")) {
		t.Fatalf("minority write: %v, want UNAVAILABLE or TIMEOUT", err)
	}
	t.Logf("minority answers: %v", err)
}

// With more nodes than replicas some nodes hold no replica of a key's
// shard: they forward in one hop, and clients see no difference.
func TestClusterForwardsToReplicas(t *testing.T) {
	nodes, _ := startCluster(t, clusterConfigs(t, 4))
	ctx := context.Background()
	clients := make([]*redis.Client, len(nodes))
	for i, s := range nodes {
		clients[i] = respClient(t, s)
	}
	forwarded := false
	for _, n := range nodes {
		if len(n.cluster.node.Groups()) < 4 {
			forwarded = true
		}
	}
	if !forwarded {
		t.Fatal("every node holds every shard; the test would not forward")
	}
	retry(t, 10*time.Second, func() error { return clients[0].Set(ctx, "warmup", "x", 0).Err() })
	for i := 0; i < 40; i++ {
		key := fmt.Sprintf("f%d", i)
		retry(t, 5*time.Second, func() error { return clients[i%4].Set(ctx, key, i, 0).Err() })
		for j := range clients {
			got, err := clients[j].Get(ctx, key).Int()
			if err != nil || got != i {
				t.Fatalf("node %d get %s: %d %v", j+1, key, got, err)
			}
		}
	}
	// Four initial members: three vote in the control plane, the fourth
	// follows it as a learner.
	retry(t, 5*time.Second, func() error {
		st, _ := nodes[0].cluster.node.Status(controlplane.MetaGroup)
		if fmt.Sprint(st.Voters) != "[1 2 3]" || fmt.Sprint(st.Learners) != "[4]" {
			return fmt.Errorf("control plane voters %v learners %v", st.Voters, st.Learners)
		}
		return nil
	})
	// A multi-key write spanning local and remote shards.
	if err := clients[3].MSet(ctx, "f1", "a", "f2", "b", "f3", "c", "f4", "d").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := clients[0].MGet(ctx, "f1", "f2", "f3", "f4").Result(); err != nil || fmt.Sprint(got) != "[a b c d]" {
		t.Fatalf("mget: %v %v", got, err)
	}
}

// A node that stops and comes back gets its preferred leaderships back,
// and serves its data from disk.
func TestClusterRestartRebalancesLeaders(t *testing.T) {
	cfgs := clusterConfigs(t, 3)
	nodes, stops := startCluster(t, cfgs)
	ctx := context.Background()
	c := respClient(t, nodes[1])
	retry(t, 10*time.Second, func() error { return c.Set(ctx, "k", "before", 0).Err() })
	leads := func(s *Server) int {
		n := 0
		for _, g := range s.cluster.node.Groups() {
			if g.Leader == s.cluster.id {
				n++
			}
		}
		return n
	}
	retry(t, 10*time.Second, func() error {
		if n := leads(nodes[0]); n == 0 {
			return fmt.Errorf("node 1 leads nothing yet")
		}
		return nil
	})
	if err := stops[0](); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "k", "while-down", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Same configuration, same data directory.
	again, _ := startNode(t, cfgs[0])
	retry(t, 15*time.Second, func() error {
		if n := leads(again); n < 2 {
			return fmt.Errorf("restarted node leads %d groups", n)
		}
		return nil
	})
	c1 := respClient(t, again)
	if got, err := c1.Get(ctx, "k").Result(); err != nil || got != "while-down" {
		t.Fatalf("restarted node read %q %v", got, err)
	}
}

// A node joins a running cluster through any member's HTTP address: it
// gets an id, learns the metadata, serves every request by forwarding, and
// keeps its id across a restart.
func TestClusterJoin(t *testing.T) {
	cfgs := clusterConfigs(t, 3)
	nodes, _ := startCluster(t, cfgs)
	ctx := context.Background()
	c1 := respClient(t, nodes[0])
	retry(t, 10*time.Second, func() error { return c1.Set(ctx, "j", "1", 0).Err() })

	jcfg := testConfig(t)
	jcfg.Cluster.Join = nodes[1].HTTPAddr()
	jcfg.Cluster.PeerAddr = freePorts(t, 1)[0]
	jcfg.Cluster.Tick = cfgs[0].Cluster.Tick
	jcfg.Cluster.RequestTimeout = cfgs[0].Cluster.RequestTimeout
	joined, stop := startNode(t, jcfg)
	if joined.cluster.id != 4 {
		t.Fatalf("joined node got id %d, want 4", joined.cluster.id)
	}
	cj := respClient(t, joined)
	retry(t, 10*time.Second, func() error {
		got, err := cj.Get(ctx, "j").Result()
		if err != nil || got != "1" {
			return fmt.Errorf("read through the joined node: %q %v", got, err)
		}
		return cj.Set(ctx, "j", "2", 0).Err()
	})
	if got, err := c1.Get(ctx, "j").Result(); err != nil || got != "2" {
		t.Fatalf("write through the joined node not seen: %q %v", got, err)
	}
	st := nodes[0].cluster.status()
	if len(st.Members) != 4 {
		t.Fatalf("members after join: %+v", st.Members)
	}
	// Restart: same id, no second join.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	again, _ := startNode(t, jcfg)
	if again.cluster.id != 4 {
		t.Fatalf("restarted joined node has id %d", again.cluster.id)
	}
	ca := respClient(t, again)
	retry(t, 10*time.Second, func() error {
		got, err := ca.Get(ctx, "j").Result()
		if err != nil || got != "2" {
			return fmt.Errorf("after restart: %q %v", got, err)
		}
		return nil
	})
	if n := len(nodes[0].cluster.status().Members); n != 4 {
		t.Fatalf("restart registered a new member: %d members", n)
	}
}

// TestClusterMovesReplicasOnJoinAndRemove: a joined node takes its share
// of the replicas, a removed node hands all of its away (data, control
// plane vote and all), a removed dead node's replicas are replaced, and
// the cluster keeps every acknowledged write and keeps serving once the
// removed node is stopped.
func TestClusterMovesReplicasOnJoinAndRemove(t *testing.T) {
	cfgs := clusterConfigs(t, 3)
	nodes, stops := startCluster(t, cfgs)
	ctx := context.Background()
	c1 := respClient(t, nodes[0])
	const keys = 200
	for i := 0; i < keys; i++ {
		retry(t, 10*time.Second, func() error { return c1.Set(ctx, fmt.Sprintf("k%d", i), fmt.Sprint(i), 0).Err() })
	}
	jcfg := testConfig(t)
	jcfg.Cluster.Join = nodes[1].HTTPAddr()
	jcfg.Cluster.PeerAddr = freePorts(t, 1)[0]
	jcfg.Cluster.Tick = cfgs[0].Cluster.Tick
	jcfg.Cluster.RequestTimeout = cfgs[0].Cluster.RequestTimeout
	joined, _ := startNode(t, jcfg)
	all := append(slices.Clone(nodes), joined)

	// 4 shards x 3 replicas over 4 nodes: 3 each, every group with 3
	// voters and no learner left.
	voterCount := func(s *Server) (int, error) {
		n := 0
		for _, g := range s.cluster.node.Groups() {
			if g.ID == controlplane.MetaGroup {
				continue
			}
			if !slices.Contains(g.Voters, s.cluster.id) {
				return 0, fmt.Errorf("node %d: replica of group %d is not a voter (voters %v)", s.cluster.id, g.ID, g.Voters)
			}
			if len(g.Voters) != 3 || len(g.Learners) != 0 {
				return 0, fmt.Errorf("node %d: group %d voters %v learners %v", s.cluster.id, g.ID, g.Voters, g.Learners)
			}
			n++
		}
		return n, nil
	}
	retry(t, 30*time.Second, func() error {
		for _, s := range all {
			n, err := voterCount(s)
			if err != nil {
				return err
			}
			if n != 3 {
				return fmt.Errorf("node %d holds %d replicas, want 3", s.cluster.id, n)
			}
		}
		return nil
	})
	cj := respClient(t, joined)
	for i := 0; i < keys; i++ {
		got, err := cj.Get(ctx, fmt.Sprintf("k%d", i)).Result()
		if err != nil || got != fmt.Sprint(i) {
			t.Fatalf("after the join, k%d = %q, %v", i, got, err)
		}
	}

	// No node has every shard now: scans merge pages from several nodes,
	// and paging with a small COUNT sees every key exactly once.
	for _, s := range all {
		c := respClient(t, s)
		keysAll, err := c.Keys(ctx, "*").Result()
		if err != nil || len(keysAll) != keys {
			t.Fatalf("KEYS * via node %d: %d keys, %v; want %d", s.cluster.id, len(keysAll), err, keys)
		}
		seen := map[string]bool{}
		var cursor uint64
		for pages := 0; ; pages++ {
			page, next, err := c.Scan(ctx, cursor, "k1*", 7).Result()
			if err != nil || pages > keys {
				t.Fatalf("SCAN via node %d: %v after %d pages", s.cluster.id, err, pages)
			}
			for _, k := range page {
				if seen[k] || !strings.HasPrefix(k, "k1") {
					t.Fatalf("SCAN via node %d: %q twice or unmatched", s.cluster.id, k)
				}
				seen[k] = true
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
		if len(seen) != 111 { // k1, k10-k19, k100-k199
			t.Fatalf("SCAN MATCH k1* via node %d saw %d keys, want 111", s.cluster.id, len(seen))
		}
	}

	// A fifth node joins, takes replicas, and dies.
	j5 := jcfg
	j5.Data.Dir = t.TempDir()
	j5.Cluster.PeerAddr = freePorts(t, 1)[0]
	fifth, stopFifth := startNode(t, j5)
	retry(t, 30*time.Second, func() error {
		if n, err := voterCount(fifth); err != nil || n < 2 {
			return fmt.Errorf("node 5 holds %d replicas (%v)", n, err)
		}
		return nil
	})
	if err := stopFifth(); err != nil {
		t.Fatal(err)
	}

	// Remove node 2 (alive, a control-plane voter) and node 5 (dead).
	for _, id := range []string{"2", "5"} {
		req, _ := http.NewRequest(http.MethodDelete, "http://"+nodes[0].HTTPAddr()+"/v1/cluster/members/"+id, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("DELETE member %s: %s %s", id, resp.Status, body)
		}
	}
	retry(t, 60*time.Second, func() error {
		for _, id := range []uint64{2, 5} {
			if st := nodes[0].cluster.meta.View().Members[id].State; st != controlplane.StateRemoved {
				return fmt.Errorf("node %d state %q", id, st)
			}
		}
		if n := len(nodes[1].cluster.node.Groups()); n > 1 {
			return fmt.Errorf("node 2 still runs %d groups", n)
		}
		for _, s := range []*Server{nodes[0], nodes[2], joined} {
			n, err := voterCount(s)
			if err != nil {
				return err
			}
			if n != 4 {
				return fmt.Errorf("node %d holds %d replicas, want 4", s.cluster.id, n)
			}
		}
		st, ok := nodes[0].cluster.node.Status(controlplane.MetaGroup)
		if !ok || slices.Contains(st.Voters, 2) || len(st.Voters) != 3 || slices.Contains(st.Learners, 2) || slices.Contains(st.Learners, 5) {
			return fmt.Errorf("control plane voters %v learners %v", st.Voters, st.Learners)
		}
		return nil
	})
	// Without node 2 the cluster serves and has everything.
	if err := stops[1](); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < keys; i++ {
		var got string
		retry(t, 10*time.Second, func() error {
			var err error
			got, err = cj.Get(ctx, fmt.Sprintf("k%d", i)).Result()
			return err
		})
		if got != fmt.Sprint(i) {
			t.Fatalf("after the removal, k%d = %q", i, got)
		}
	}
	retry(t, 10*time.Second, func() error { return cj.Set(ctx, "after", "removal", 0).Err() })
	if _, err := nodes[0].cluster.meta.Namespaces(ctx); err != nil {
		t.Fatalf("control plane without node 2: %v", err)
	}
}

// TestClusterEventualNamespace: an eventual namespace stays available on
// a lone node (where the strong default namespace refuses), and the
// replicas that missed writes converge once they are back.
func TestClusterEventualNamespace(t *testing.T) {
	cfgs := clusterConfigs(t, 3)
	for i := range cfgs {
		cfgs[i].Cluster.AntiEntropy = config.Duration(200 * time.Millisecond)
	}
	nodes, stops := startCluster(t, cfgs)
	ctx := context.Background()
	c1 := respClient(t, nodes[0])
	retry(t, 10*time.Second, func() error { return c1.Set(ctx, "strong", "1", 0).Err() })
	if err := c1.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "cache", "CONSISTENCY", "eventual", "REPLICAS", "3", "SHARDS", "4").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c1.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "bad", "CONSISTENCY", "weak", "W", "2").Err(); err == nil || !strings.Contains(err.Error(), "INVALID") {
		t.Fatalf("weak with W 2: %v, want INVALID", err)
	}
	// A client of a namespace: one connection, so NAMESPACE sticks.
	nsClient := func(s *Server) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: s.RESPAddr(), MaxRetries: -1, PoolSize: 1,
			OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "NAMESPACE", "cache").Err() }})
		t.Cleanup(func() { c.Close() })
		return c
	}
	e1, e3 := nsClient(nodes[0]), nsClient(nodes[2])
	retry(t, 10*time.Second, func() error { return e1.Set(ctx, "k0", "v0", 0).Err() })
	for i := 1; i < 20; i++ {
		if err := e1.Set(ctx, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	retry(t, 5*time.Second, func() error {
		got, err := e3.Get(ctx, "k7").Result()
		if err != nil || got != "v7" {
			return fmt.Errorf("k7 via node 3: %q %v", got, err)
		}
		return nil
	})
	if err := e1.SetNX(ctx, "k1", "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOT_SUPPORTED") {
		t.Fatalf("SETNX on an eventual namespace: %v, want NOT_SUPPORTED", err)
	}

	// Node 1 alone: the eventual namespace answers, the strong one cannot.
	for _, stop := range stops[1:] {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 20; i++ {
		if err := e1.Set(ctx, fmt.Sprintf("k%d", i), fmt.Sprintf("alone%d", i), 0).Err(); err != nil {
			t.Fatalf("eventual write on a lone node: %v", err)
		}
	}
	if got, err := e1.Get(ctx, "k3").Result(); err != nil || got != "alone3" {
		t.Fatalf("eventual read on a lone node: %q %v", got, err)
	}
	if err := e1.Del(ctx, "k19").Err(); err != nil {
		t.Fatal(err)
	}
	var resp *http.Response
	// Per connection (RESP) and per request (HTTP), W and R can be raised:
	// alone, a node cannot gather two replicas, and says so.
	if got, err := e1.Do(ctx, "FULCRUM.CONSISTENCY", "W", "2", "R", "2").Result(); err != nil || fmt.Sprint(got) != "map[r:2 w:2]" {
		t.Fatalf("FULCRUM.CONSISTENCY W 2 R 2: %v %v", got, err)
	}
	// Refused, but not rolled back: the coordinator's own replica keeps
	// it (indeterminate), and it spreads once the others are back.
	if err := e1.Set(ctx, "wq", "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "only 1 of 2 required replicas answered") || !strings.Contains(err.Error(), "indeterminate") {
		t.Fatalf("W 2 on a lone node: %v", err)
	}
	if err := e1.Get(ctx, "k1").Err(); err == nil || !strings.Contains(err.Error(), "UNAVAILABLE") {
		t.Fatalf("R 2 on a lone node: %v", err)
	}
	if err := e1.Do(ctx, "FULCRUM.CONSISTENCY", "W", "4").Err(); err != nil {
		t.Fatal(err)
	}
	if err := e1.Set(ctx, "wq", "y", 0).Err(); err == nil || !strings.Contains(err.Error(), "INVALID w 4") {
		t.Fatalf("W 4 of 3 replicas: %v", err)
	}
	if err := e1.Do(ctx, "FULCRUM.CONSISTENCY", "RESET").Err(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, query string
		status        int
	}{{http.MethodPut, "?w=2", http.StatusServiceUnavailable}, {http.MethodPut, "?w=9", http.StatusBadRequest},
		{http.MethodPut, "?w=1", http.StatusOK}, {http.MethodDelete, "", http.StatusOK}} {
		req, _ := http.NewRequest(tc.method, "http://"+nodes[0].HTTPAddr()+"/v1/namespaces/cache/keys/h1"+tc.query, strings.NewReader("v"))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.status && !(tc.status == http.StatusOK && res.StatusCode == http.StatusCreated) {
			t.Fatalf("%s h1%s: %s %s, want %d", tc.method, tc.query, res.Status, body, tc.status)
		}
	}

	// The answer says what it is: one replica of three answered.
	meta, err := e1.Do(ctx, "FULCRUM.GETMETA", "k3").Result()
	if err != nil {
		t.Fatal(err)
	}
	m, _ := meta.(map[any]any)
	if m["value"] != "alone3" || m["consistency"] != "eventual" || m["answered"] != int64(1) || m["agreed"] != int64(1) || m["required"] != int64(1) {
		t.Fatalf("GETMETA k3 on a lone node: %v", meta)
	}
	resp, err = http.Get("http://" + nodes[0].HTTPAddr() + "/v1/namespaces/cache/keys/k3")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if h := resp.Header; h.Get("Fulcrum-Consistency") != "eventual" || h.Get("Fulcrum-Replicas-Answered") != "1" || h.Get("Fulcrum-Replicas-Agreed") != "1" || h.Get("Fulcrum-Timestamp") == "" {
		t.Fatalf("HTTP read headers: %v", h)
	}
	if err := c1.Set(ctx, "strong", "2", 0).Err(); err == nil || !strings.Contains(err.Error(), "UNAVAILABLE") && !strings.Contains(err.Error(), "TIMEOUT") {
		t.Fatalf("strong write on a lone node: %v, want UNAVAILABLE or TIMEOUT", err)
	}

	// The others come back and catch up (anti-entropy): node 3's own
	// replica ends up with every write it missed, the delete included.
	again := []*Server{}
	for _, cfg := range cfgs[1:] {
		s, _ := startNode(t, cfg)
		again = append(again, s)
	}
	local := lnode.NewStorageStore(again[1].cluster.store)
	retry(t, 20*time.Second, func() error {
		for i := 0; i < 19; i++ {
			raw, ok, err := local.Get(ctx, "cache", []byte(fmt.Sprintf("k%d", i)))
			if err != nil || !ok {
				return fmt.Errorf("k%d not on node 3: %v", i, err)
			}
			st, err := versionvec.DecodeSiblings(raw)
			if err != nil {
				return err
			}
			w, ok := st.Winner()
			if !ok || string(w.Value) != fmt.Sprintf("alone%d", i) {
				return fmt.Errorf("k%d on node 3: %q", i, w.Value)
			}
		}
		if raw, ok, err := local.Get(ctx, "cache", []byte("wq")); err != nil || !ok {
			return fmt.Errorf("the indeterminate write wq is not on node 3: %v", err)
		} else if st, err := versionvec.DecodeSiblings(raw); err != nil {
			return err
		} else if w, _ := st.Winner(); string(w.Value) != "x" {
			return fmt.Errorf("wq on node 3: %q, want the indeterminate write's x", w.Value)
		}
		raw, ok, err := local.Get(ctx, "cache", []byte("k19"))
		if err != nil || !ok {
			return fmt.Errorf("k19's tombstone not on node 3: %v", err)
		}
		if st, err := versionvec.DecodeSiblings(raw); err != nil || !st.Absent() {
			return fmt.Errorf("k19 on node 3 is not deleted: %v", err)
		}
		return nil
	})
	// The repair shows: INFO counts the states exchanged (node 3 pulled
	// them, or the others pushed them to it).
	exchanged := 0
	for _, s := range []*Server{nodes[0], again[0], again[1]} {
		info, err := respClient(t, s).Info(ctx, "cluster").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			for _, f := range []string{"fulcrum_leaderless_anti_entropy_pulled:", "fulcrum_leaderless_anti_entropy_pushed:"} {
				if v, ok := strings.CutPrefix(line, f); ok {
					n, _ := strconv.Atoi(v)
					exchanged += n
				}
			}
		}
	}
	if exchanged == 0 {
		t.Fatal("INFO cluster counts no anti-entropy exchange after the repair")
	}
	resp, err = http.Get("http://" + again[1].HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `fulcrum_leaderless_anti_entropy_states_total{direction="pulled"}`) || !strings.Contains(string(body), "fulcrum_leaderless_hints_pending") {
		t.Fatalf("metrics lack the leaderless engine's")
	}

	// Dropped, the namespace's rows go from every node; created again
	// under the same name, it starts empty.
	// (A first attempt right after the restarts can time out: a proposal
	// forwarded to a node that no longer leads the control plane is lost,
	// not re-proposed — see docs/cluster.md.)
	admin := redis.NewClient(&redis.Options{Addr: again[1].RESPAddr(), MaxRetries: -1, ReadTimeout: 15 * time.Second})
	defer admin.Close()
	retry(t, 25*time.Second, func() error {
		err := admin.Do(ctx, "FULCRUM.NAMESPACE", "DROP", "cache").Err()
		if err != nil && strings.HasPrefix(err.Error(), "NOT_FOUND") {
			return nil // an earlier attempt that timed out did it
		}
		return err
	})
	retry(t, 10*time.Second, func() error {
		if n := again[1].cluster.store.Count("cache"); n != 0 {
			return fmt.Errorf("node 3 still holds %d rows of the dropped namespace", n)
		}
		return nil
	})
	desc, err := admin.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "cache", "CONSISTENCY", "eventual", "READREPAIR", "blocking").Result()
	if d, _ := desc.(map[any]any); err != nil || d["read_repair"] != "blocking" || d["w"] != int64(1) {
		t.Fatalf("re-create with blocking read repair: %v %v", desc, err)
	}
	e3b := nsClient(again[1])
	if err := e3b.Get(ctx, "k0").Err(); err != redis.Nil {
		t.Fatalf("k0 in the re-created namespace: %v, want nil", err)
	}
}

// TestEventualConvergenceTime measures (it asserts nothing about time) how
// long a replica that missed FULCRUM_CONVERGE_KEYS writes while it was
// down takes to hold all of them once it is back, with the default
// anti-entropy period (cluster.anti_entropy). Run with
// FULCRUM_CONVERGE_KEYS=10000.
func TestEventualConvergenceTime(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FULCRUM_CONVERGE_KEYS"))
	if n <= 0 {
		t.Skip("set FULCRUM_CONVERGE_KEYS to measure")
	}
	cfgs := clusterConfigs(t, 3)
	nodes, stops := startCluster(t, cfgs)
	ctx := context.Background()
	c1 := respClient(t, nodes[0])
	retry(t, 10*time.Second, func() error { return c1.Set(ctx, "x", "1", 0).Err() })
	if err := c1.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "cache", "CONSISTENCY", "eventual", "REPLICAS", "3", "SHARDS", "16").Err(); err != nil {
		t.Fatal(err)
	}
	if err := stops[2](); err != nil {
		t.Fatal(err)
	}
	e1 := redis.NewClient(&redis.Options{Addr: nodes[0].RESPAddr(), PoolSize: 32, MaxRetries: -1,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "NAMESPACE", "cache").Err() }})
	defer e1.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 32 {
				if err := e1.Set(ctx, fmt.Sprintf("key%06d", i), "diverged", 0).Err(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	start := time.Now()
	back, _ := startNode(t, cfgs[2])
	missing := n
	for deadline := time.Now().Add(2 * time.Minute); missing > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d keys still missing on node 3 after 2 minutes", missing, n)
		}
		res, err := back.cluster.store.Scan(ctx, kv.ScanRequest{Namespace: "cache", Limit: n + 1, KeysOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		missing = n - len(res.Entries)
	}
	ic := respClient(t, back)
	info, err := ic.Info(ctx, "cluster").Result()
	if err != nil || !strings.Contains(info, "fulcrum_leaderless_anti_entropy_pulled:") {
		t.Fatalf("INFO cluster: %v\n%s", err, info)
	}
	t.Logf("%d diverged keys: node 3 holds them all %v after it started (anti-entropy every %v)", n, time.Since(start).Round(time.Millisecond), time.Duration(cfgs[2].Cluster.AntiEntropy))
}
