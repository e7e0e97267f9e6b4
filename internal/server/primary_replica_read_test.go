package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// replicaReadAnswer is an HTTP key read: its status, body and the headers
// that say who answered.
type replicaReadAnswer struct {
	status                         int
	body                           string
	role, epoch, lagEntries, lagMs string
	consistency                    string
}

func httpKeyRead(client *http.Client, url string) (replicaReadAnswer, error) {
	res, err := client.Get(url)
	if err != nil {
		return replicaReadAnswer{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return replicaReadAnswer{}, err
	}
	h := res.Header
	return replicaReadAnswer{status: res.StatusCode, body: string(b), role: h.Get("Fulcrum-Role"), epoch: h.Get("Fulcrum-Epoch"),
		lagEntries: h.Get("Fulcrum-Lag-Entries"), lagMs: h.Get("Fulcrum-Lag-Ms"), consistency: h.Get("Fulcrum-Consistency")}, nil
}

// TestClusterPrimaryReplicaReadHTTP: on 3 real nodes, a replication=primary
// ack=async namespace's key written through its primary is read over HTTP
// from a replica with ?replica=1, whose answer says it is a replica and
// how far behind it may be; ?max_staleness=0 is answered by the primary
// unless the replica can show no lag at all (the router's rule: a replica
// beyond the bound refuses and the primary answers); FULCRUM.GETMETA
// READONLY reads a replica for one request.
func TestClusterPrimaryReplicaReadHTTP(t *testing.T) {
	cfgs := clusterConfigs(t, 3)
	nodes, _ := startCluster(t, cfgs)
	ctx := context.Background()
	c1 := respClient(t, nodes[0])
	retry(t, 15*time.Second, func() error { return c1.Set(ctx, "strong", "1", 0).Err() })
	if err := c1.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "sessions", "REPLICATION", "primary", "ACK", "async", "SHARDS", "1").Err(); err != nil {
		t.Fatal(err)
	}
	var p uint64
	retry(t, 15*time.Second, func() error {
		if l := primaryLayout(t, c1, "sessions"); len(l) != 1 || l[0] == 0 {
			return fmt.Errorf("primaries %v: want one", l)
		}
		p = primaryLayout(t, c1, "sessions")[0]
		return nil
	})
	primary := nodes[p-1]
	replica := nodes[p%3] // every node holds a replica of the one shard
	client := &http.Client{Timeout: 5 * time.Second}
	key := "/v1/namespaces/sessions/keys/s1"

	retry(t, 15*time.Second, func() error {
		req, err := http.NewRequest(http.MethodPut, "http://"+primary.HTTPAddr()+key, strings.NewReader("alice"))
		if err != nil {
			return err
		}
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK {
			return fmt.Errorf("PUT through the primary, node %d: %d %s", p, res.StatusCode, b)
		}
		return nil
	})

	// The replica may not have the write yet (async acks): poll.
	base := "http://" + replica.HTTPAddr() + key
	retry(t, 10*time.Second, func() error {
		a, err := httpKeyRead(client, base+"?replica=1")
		if err != nil {
			return err
		}
		if a.status != http.StatusOK || a.body != "alice" {
			return fmt.Errorf("replica read: %d %q", a.status, a.body)
		}
		if a.role != "replica" || a.consistency != "primary-async" {
			t.Fatalf("replica read through node %d (primary: node %d): role %q, consistency %q; want replica, primary-async", p%3+1, p, a.role, a.consistency)
		}
		for name, v := range map[string]string{"Fulcrum-Epoch": a.epoch, "Fulcrum-Lag-Entries": a.lagEntries, "Fulcrum-Lag-Ms": a.lagMs} {
			if _, err := strconv.ParseUint(v, 10, 64); err != nil {
				t.Fatalf("replica read: %s %q, want a number", name, v)
			}
		}
		if a.epoch == "0" {
			t.Fatalf("replica read: epoch 0, want the primary's (from 1)")
		}
		return nil
	})

	// Without ?replica the primary answers, whichever node is asked.
	a, err := httpKeyRead(client, base)
	if err != nil || a.status != http.StatusOK || a.body != "alice" || a.role != "primary" || a.lagMs != "0" || a.lagEntries != "0" {
		t.Fatalf("primary read through node %d: %+v %v", p%3+1, a, err)
	}

	// max_staleness=0: a replica serves only with no lag at all; else the
	// primary answers, with none.
	retry(t, 10*time.Second, func() error {
		a, err := httpKeyRead(client, base+"?max_staleness=0")
		if err != nil {
			return err
		}
		if a.status != http.StatusOK || a.body != "alice" {
			return fmt.Errorf("max_staleness=0 read: %d %q", a.status, a.body)
		}
		switch {
		case a.role == "primary" && a.lagMs == "0" && a.lagEntries == "0":
		case a.role == "replica" && a.lagMs == "0":
		default:
			t.Fatalf("max_staleness=0 read: role %q, lag %s ms %s entries; want the primary, or a replica with no lag", a.role, a.lagMs, a.lagEntries)
		}
		return nil
	})
	// A generous bound: the replica serves, within it.
	retry(t, 10*time.Second, func() error {
		a, err := httpKeyRead(client, base+"?max_staleness=60000")
		if err != nil {
			return err
		}
		if a.status != http.StatusOK || a.body != "alice" || a.role != "replica" {
			return fmt.Errorf("max_staleness=60000 read: %+v", a)
		}
		if ms, err := strconv.ParseInt(a.lagMs, 10, 64); err != nil || ms > 60000 {
			t.Fatalf("max_staleness=60000 read answered with lag %q ms", a.lagMs)
		}
		return nil
	})
	a, err = httpKeyRead(client, base+"?max_staleness=soon")
	if err != nil || a.status != http.StatusBadRequest || !strings.Contains(a.body, `max_staleness=\"soon\": want milliseconds from 0 to 3600000`) {
		t.Fatalf("bad max_staleness: %+v %v", a, err)
	}

	// RESP: READONLY for one GETMETA, on a connection that reads the
	// primary otherwise.
	rc := redis.NewClient(&redis.Options{Addr: replica.RESPAddr(), MaxRetries: -1, PoolSize: 1,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "NAMESPACE", "sessions").Err() }})
	t.Cleanup(func() { rc.Close() })
	m, err := rc.Do(ctx, "FULCRUM.GETMETA", "s1", "READONLY").Result()
	if mm, _ := m.(map[any]any); err != nil || mm["value"] != "alice" || mm["role"] != "replica" {
		t.Fatalf("GETMETA READONLY through node %d: %v %v", p%3+1, m, err)
	}
	m, err = rc.Do(ctx, "FULCRUM.GETMETA", "s1").Result()
	if mm, _ := m.(map[any]any); err != nil || mm["value"] != "alice" || mm["role"] != "primary" {
		t.Fatalf("GETMETA through node %d: %v %v", p%3+1, m, err)
	}
}
