package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fulcrumdb/fulcrum/internal/config"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	lnode "github.com/fulcrumdb/fulcrum/internal/leaderless/node"
	"github.com/fulcrumdb/fulcrum/internal/versionvec"
)

// nsClient is a one-connection client of s with namespace ns selected.
func nsClient(t *testing.T, s *Server, ns string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.RESPAddr(), MaxRetries: -1, PoolSize: 1,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "NAMESPACE", ns).Err() }})
	t.Cleanup(func() { c.Close() })
	return c
}

// readMeta is a FULCRUM.GETMETA answer of an eventual key.
type readMeta struct {
	value    any // string, or nil when absent
	siblings []string
	context  string
	answered int64
	agreed   int64
}

func getMeta(ctx context.Context, c *redis.Client, key string, r int) (readMeta, error) {
	args := []any{"FULCRUM.GETMETA", key}
	if r > 0 {
		args = append(args, "R", r)
	}
	got, err := c.Do(ctx, args...).Result()
	if err != nil {
		return readMeta{}, err
	}
	m, ok := got.(map[any]any)
	if !ok {
		return readMeta{}, fmt.Errorf("GETMETA %s: %v is not a map", key, got)
	}
	rm := readMeta{value: m["value"]}
	rm.context, _ = m["context"].(string)
	rm.answered, _ = m["answered"].(int64)
	rm.agreed, _ = m["agreed"].(int64)
	sibs, ok := m["siblings"].([]any)
	if !ok || rm.context == "" {
		return readMeta{}, fmt.Errorf("GETMETA %s has no siblings or context: %v", key, got)
	}
	for _, s := range sibs {
		rm.siblings = append(rm.siblings, fmt.Sprint(s))
	}
	return rm, nil
}

// waitSiblings polls GETMETA key R r on c until it shows exactly the
// values want (in any order) with every one of the r replicas agreeing,
// and returns it.
func waitSiblings(t *testing.T, c *redis.Client, key string, r int, want ...string) readMeta {
	t.Helper()
	var m readMeta
	retry(t, 10*time.Second, func() error {
		var err error
		if m, err = getMeta(context.Background(), c, key, r); err != nil {
			return err
		}
		got := slices.Sorted(slices.Values(m.siblings))
		if !slices.Equal(got, slices.Sorted(slices.Values(want))) || m.agreed != int64(r) {
			return fmt.Errorf("GETMETA %s R %d: siblings %q agreed %d, want %q agreed %d", key, r, m.siblings, m.agreed, want, r)
		}
		if len(m.siblings) > 0 && m.value != m.siblings[0] {
			return fmt.Errorf("GETMETA %s: value %v is not the first sibling %q", key, m.value, m.siblings[0])
		}
		return nil
	})
	return m
}

// liveOn returns the live values of key in ns in node s's own replica.
func liveOn(ctx context.Context, s *Server, ns, key string) ([]string, error) {
	raw, ok, err := lnode.NewStorageStore(s.cluster.store).Get(ctx, ns, []byte(key))
	if err != nil || !ok {
		return nil, fmt.Errorf("%s/%s not on node %d: %v", ns, key, s.cluster.id, err)
	}
	st, err := versionvec.DecodeSiblings(raw)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, sib := range st.Live() {
		out = append(out, string(sib.Value))
	}
	slices.Sort(out)
	return out, nil
}

func siblingsCluster(t *testing.T) ([]config.Config, []*Server, []func() error) {
	t.Helper()
	cfgs := clusterConfigs(t, 3)
	for i := range cfgs {
		cfgs[i].Cluster.AntiEntropy = config.Duration(200 * time.Millisecond)
	}
	nodes, stops := startCluster(t, cfgs)
	ctx := context.Background()
	c1 := respClient(t, nodes[0])
	retry(t, 10*time.Second, func() error { return c1.Set(ctx, "strong", "1", 0).Err() })
	return cfgs, nodes, stops
}

// TestClusterSiblings: in a conflicts=siblings namespace two blind writes
// (no causal context: concurrent with everything stored) are both kept;
// GETMETA and HTTP show them with a context; a write passing the context
// replaces them, on every replica, including one that was down and
// catches up through anti-entropy. The same writes to an lww namespace
// leave one value.
func TestClusterSiblings(t *testing.T) {
	cfgs, nodes, stops := siblingsCluster(t)
	ctx := context.Background()
	base := "http://" + nodes[0].HTTPAddr()

	// Created over HTTP with the JSON field, and over RESP.
	req, _ := http.NewRequest(http.MethodPut, base+"/v1/namespaces/carts", strings.NewReader(`{"consistency":"eventual","replicas":3,"shards":2,"conflicts":"siblings"}`))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"conflicts":"siblings"`) {
		t.Fatalf("create carts over HTTP: %s %s", res.Status, body)
	}
	c1 := respClient(t, nodes[0])
	if err := c1.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "cache", "CONSISTENCY", "eventual", "REPLICAS", "3", "SHARDS", "2").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := c1.Do(ctx, "FULCRUM.NAMESPACE", "DESCRIBE", "carts").Result(); err != nil || got.(map[any]any)["conflicts"] != "siblings" {
		t.Fatalf("DESCRIBE carts: %v %v", got, err)
	}
	if got, err := c1.Do(ctx, "FULCRUM.NAMESPACE", "DESCRIBE", "cache").Result(); err != nil || got.(map[any]any)["conflicts"] != "lww" {
		t.Fatalf("DESCRIBE cache: %v %v", got, err)
	}
	if err := c1.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "bad", "CONSISTENCY", "weak", "CONFLICTS", "siblings").Err(); err == nil || !strings.HasPrefix(err.Error(), "INVALID") {
		t.Fatalf("weak with siblings: %v, want INVALID", err)
	}

	s1, s2, s3 := nsClient(t, nodes[0], "carts"), nsClient(t, nodes[1], "carts"), nsClient(t, nodes[2], "carts")
	retry(t, 10*time.Second, func() error { return s1.Set(ctx, "k", "a", 0).Err() })
	if err := s2.Set(ctx, "k", "b", 0).Err(); err != nil {
		t.Fatal(err)
	}
	m := waitSiblings(t, s3, "k", 3, "a", "b")
	// A plain GET answers the last writer, so redis-cli keeps working.
	if got, err := s3.Get(ctx, "k").Result(); err != nil || got != m.siblings[0] {
		t.Fatalf("GET k: %q %v, want the last writer %q", got, err, m.siblings[0])
	}
	// Over HTTP: 300 with both, and the context in a header.
	res, err = http.Get("http://" + nodes[1].HTTPAddr() + "/v1/namespaces/carts/keys/k?r=3")
	if err != nil {
		t.Fatal(err)
	}
	var sibs struct {
		Siblings []struct {
			Value string `json:"value"`
		} `json:"siblings"`
		Context string `json:"context"`
	}
	err = json.NewDecoder(res.Body).Decode(&sibs)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusMultipleChoices || len(sibs.Siblings) != 2 || sibs.Context == "" || res.Header.Get("Fulcrum-Context") != sibs.Context {
		t.Fatalf("HTTP GET of two siblings: %s %+v %v %v", res.Status, sibs, res.Header, err)
	}

	// A write with the context resolves them, on every replica.
	if err := s3.Do(ctx, "FULCRUM.PUT", "k", "ab", "CONTEXT", m.context).Err(); err != nil {
		t.Fatal(err)
	}
	waitSiblings(t, s1, "k", 3, "ab")
	res, err = http.Get(base + "/v1/namespaces/carts/keys/k")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || string(body) != "ab" || res.Header.Get("Fulcrum-Context") == "" {
		t.Fatalf("HTTP GET after the resolution: %s %q %v", res.Status, body, res.Header)
	}
	// HTTP resolves too: two siblings again, then a PUT with the header.
	if err := s1.Set(ctx, "k", "c", 0).Err(); err != nil {
		t.Fatal(err)
	}
	m = waitSiblings(t, s2, "k", 3, "ab", "c")
	req, _ = http.NewRequest(http.MethodPut, base+"/v1/namespaces/carts/keys/k", strings.NewReader("abc"))
	req.Header.Set("Fulcrum-Context", m.context)
	if res, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		t.Fatalf("HTTP PUT with the context: %s", res.Status)
	}
	waitSiblings(t, s3, "k", 3, "abc")
	// A malformed context is refused.
	if err := s1.Do(ctx, "FULCRUM.PUT", "k", "x", "CONTEXT", "AQ").Err(); err == nil || !strings.HasPrefix(err.Error(), "INVALID") {
		t.Fatalf("FULCRUM.PUT with a bad context: %v, want INVALID", err)
	}
	// A forged one whose counters would overflow the next dot too (it
	// would panic the coordinator).
	forged := kv.FormatCausalContext(versionvec.Vector{1: math.MaxUint64, 2: math.MaxUint64, 3: math.MaxUint64}.Encode())
	if err := s1.Do(ctx, "FULCRUM.PUT", "k", "x", "CONTEXT", forged).Err(); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("FULCRUM.PUT with a forged context: %v, want INVALID", err)
	}
	if err := respClient(t, nodes[0]).Do(ctx, "FULCRUM.PUT", "strong", "x", "CONTEXT", m.context).Err(); err == nil || !strings.Contains(err.Error(), "INVALID") {
		t.Fatalf("FULCRUM.PUT with a context on a strong namespace: %v, want INVALID", err)
	}

	// A plain DEL is blind too: its tombstone joins the values, which
	// stay readable until a delete with the context.
	if err := s1.Del(ctx, "k").Err(); err != nil {
		t.Fatal(err)
	}
	m = waitSiblings(t, s2, "k", 3, "abc")
	if got, err := s2.Get(ctx, "k").Result(); err != nil || got != "abc" {
		t.Fatalf("GET after a blind DEL: %q %v, want abc", got, err)
	}
	if err := s2.Do(ctx, "FULCRUM.DEL", "k", "CONTEXT", m.context).Err(); err != nil {
		t.Fatal(err)
	}
	waitSiblings(t, s3, "k", 3)

	// The same blind writes to an lww namespace leave the last writer.
	l1, l2 := nsClient(t, nodes[0], "cache"), nsClient(t, nodes[1], "cache")
	if err := l1.Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := l2.Set(ctx, "k", "b", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitSiblings(t, nsClient(t, nodes[2], "cache"), "k", 3, "b")

	// Siblings on every replica; node 3 goes down; k2 is resolved by a
	// write and k3 by a delete, both with their context; node 3 comes
	// back and anti-entropy brings it both resolutions.
	for _, k := range []string{"k2", "k3"} {
		if err := s1.Set(ctx, k, "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := s2.Set(ctx, k, "y", 0).Err(); err != nil {
			t.Fatal(err)
		}
		waitSiblings(t, s1, k, 3, "x", "y")
	}
	if err := stops[2](); err != nil {
		t.Fatal(err)
	}
	m2, err := getMeta(ctx, s1, "k2", 2)
	if err != nil {
		t.Fatal(err)
	}
	m3, err := getMeta(ctx, s2, "k3", 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Do(ctx, "FULCRUM.PUT", "k2", "z", "CONTEXT", m2.context).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := s2.Do(ctx, "FULCRUM.DEL", "k3", "CONTEXT", m3.context).Int(); err != nil || n != 1 {
		t.Fatalf("FULCRUM.DEL k3: %d %v", n, err)
	}
	n3, _ := startNode(t, cfgs[2])
	retry(t, 20*time.Second, func() error {
		if got, err := liveOn(ctx, n3, "carts", "k2"); err != nil || !slices.Equal(got, []string{"z"}) {
			return fmt.Errorf("k2 on node 3: %q %v, want [z]", got, err)
		}
		if got, err := liveOn(ctx, n3, "carts", "k3"); err != nil || len(got) != 0 {
			return fmt.Errorf("k3 on node 3: %q %v, want deleted", got, err)
		}
		return nil
	})
	waitSiblings(t, nsClient(t, n3, "carts"), "k2", 3, "z")
	waitSiblings(t, s1, "k3", 3)
	if err := nsClient(t, n3, "carts").Get(ctx, "k3").Err(); err != redis.Nil {
		t.Fatalf("GET k3 after the delete: %v, want nil", err)
	}
}

// TestClusterSiblingsSurviveAntiEntropy: siblings written while a replica
// is down reach it through anti-entropy as siblings: the pull must merge
// in siblings mode, not collapse the state to its last writer (which would
// then spread and drop the other write everywhere).
func TestClusterSiblingsSurviveAntiEntropy(t *testing.T) {
	cfgs, nodes, stops := siblingsCluster(t)
	ctx := context.Background()
	c1 := respClient(t, nodes[0])
	if err := c1.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "carts", "CONSISTENCY", "eventual", "REPLICAS", "3", "SHARDS", "2", "CONFLICTS", "siblings").Err(); err != nil {
		t.Fatal(err)
	}
	s1, s2 := nsClient(t, nodes[0], "carts"), nsClient(t, nodes[1], "carts")
	retry(t, 10*time.Second, func() error { return s1.Set(ctx, "warm", "1", 0).Err() })
	if err := stops[2](); err != nil {
		t.Fatal(err)
	}
	if err := s1.Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s2.Set(ctx, "k", "b", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitSiblings(t, s1, "k", 2, "a", "b")
	n3, _ := startNode(t, cfgs[2])
	retry(t, 20*time.Second, func() error {
		got, err := liveOn(ctx, n3, "carts", "k")
		if err != nil {
			return err
		}
		if !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("k reached node 3 through anti-entropy as %q, want both siblings [a b]", got)
		}
		return nil
	})
	waitSiblings(t, nsClient(t, n3, "carts"), "k", 3, "a", "b")
}
