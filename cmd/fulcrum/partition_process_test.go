//go:build linux

package main_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fulcrumdb/fulcrum/internal/config"
	"github.com/fulcrumdb/fulcrum/internal/placement"
)

// TestProcessPartitionMinorityUnavailable cuts a real member off with the
// kernel's firewall (nftables), not with a simulated network: member 3
// talks to its peers from 127.0.0.3, and a rule drops every packet from or
// to that address. Its clients (on 127.0.0.1) still reach it. The minority
// must refuse reads and writes within the request deadline; the majority
// must keep serving; after the heal member 3 serves the majority's writes.
//
// It needs root and nft; it is skipped otherwise. The rules live in a table
// of their own, removed when the test ends, and match only 127.0.0.3.
func TestProcessPartitionMinorityUnavailable(t *testing.T) {
	const timeout = time.Second
	members, nft, table := partitionableCluster(t, timeout)

	// Use a key whose shard member 3 leads, if it leads one, so the
	// majority must elect a new leader to go on.
	key := "k"
	if st, err := members[2].status(); err == nil {
		for i := 0; i < 1000 && key == "k"; i++ {
			k := fmt.Sprintf("k%d", i)
			for _, sh := range st.Shards {
				if sh.Namespace == "default" && sh.Leader == 3 && sh.Shard == placement.ShardOf("default", []byte(k), clusterShards) {
					key = k
				}
			}
		}
	}
	t.Logf("key %q", key)

	ctx := context.Background()
	clients := make([]*redis.Client, 3)
	for i, m := range members {
		clients[i] = redis.NewClient(&redis.Options{Addr: m.respAddr, MaxRetries: -1, ReadTimeout: 5 * time.Second})
		defer clients[i].Close()
	}
	eventually(t, 10*time.Second, "first write", func() error { return clients[0].Set(ctx, key, "before", 0).Err() })
	eventually(t, 10*time.Second, "member 3 has the first write", func() error {
		got, err := clients[2].Get(ctx, key).Result()
		if err != nil || got != "before" {
			return fmt.Errorf("%q %v", got, err)
		}
		return nil
	})

	cutOff(t, nft, table)
	cut := time.Now()

	// The majority keeps serving (a new leader is elected there if member
	// 3 led the key's shard).
	var served time.Duration
	eventually(t, 10*time.Second, "majority write", func() error {
		if err := clients[0].Set(ctx, key, "after", 0).Err(); err != nil {
			return err
		}
		served = time.Since(cut)
		return nil
	})
	if got, err := clients[1].Get(ctx, key).Result(); err != nil || got != "after" {
		t.Fatalf("majority read: %q %v", got, err)
	}
	t.Logf("majority served a write %v after the partition", served.Round(time.Millisecond))

	// The minority refuses, within the deadline, every time.
	for i := 0; i < 5; i++ {
		start := time.Now()
		err := clients[2].Get(ctx, key).Err()
		took := time.Since(start)
		if err == nil || !strings.HasPrefix(err.Error(), "UNAVAILABLE") {
			t.Fatalf("minority read %d: %v, want UNAVAILABLE", i, err)
		}
		if took > timeout+500*time.Millisecond {
			t.Fatalf("minority read took %v, deadline %v", took, timeout)
		}
		start = time.Now()
		err = clients[2].Set(ctx, key, "minority", 0).Err()
		took = time.Since(start)
		if err == nil || !(strings.HasPrefix(err.Error(), "UNAVAILABLE") || strings.HasPrefix(err.Error(), "TIMEOUT")) {
			t.Fatalf("minority write %d: %v, want UNAVAILABLE or TIMEOUT", i, err)
		}
		if took > timeout+500*time.Millisecond {
			t.Fatalf("minority write took %v, deadline %v", took, timeout)
		}
		if i == 0 {
			t.Logf("minority answers: read %q, write %q", clients[2].Get(ctx, key).Err(), err)
		}
	}
	// Heal: member 3 catches up and serves the majority's value, never
	// the minority's refused one.
	heal(t, nft, table)
	healed := time.Now()
	eventually(t, 15*time.Second, "member 3 after the heal", func() error {
		got, err := clients[2].Get(ctx, key).Result()
		if err != nil {
			return err
		}
		if got != "after" {
			t.Fatalf("member 3 read %q after the heal, want %q", got, "after")
		}
		return nil
	})
	t.Logf("member 3 served again %v after the heal", time.Since(healed).Round(time.Millisecond))
}

// partitionableCluster starts three members whose peer traffic leaves
// from 127.0.0.1, .2 and .3, and returns them with the nft binary and a
// table of this test's own (removed when the test ends). It skips the
// test without root or nft.
func partitionableCluster(t *testing.T, timeout time.Duration) ([]*member, string, string) {
	if testing.Short() {
		t.Skip("process test")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for nftables")
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Skip("nft not installed")
	}
	table := fmt.Sprintf("fulcrum_partition_%d", os.Getpid())
	if out, err := exec.Command(nft, "add", "table", "ip", table).CombinedOutput(); err != nil {
		t.Skipf("nftables not usable here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command(nft, "delete", "table", "ip", table).Run() })

	bin := binary(t)
	dir := t.TempDir()
	addrs := freeAddrs(t, 9)
	port := func(a string) string { _, p, _ := net.SplitHostPort(a); return p }
	var peers []string
	for i := 0; i < 3; i++ {
		peers = append(peers, fmt.Sprintf("%d=127.0.0.%d:%s", i+1, i+1, port(addrs[3*i+2])))
	}
	var members []*member
	for i := 0; i < 3; i++ {
		cfg := config.Default()
		cfg.Data.Dir = filepath.Join(dir, fmt.Sprintf("m%d", i+1))
		cfg.RESP.Addr, cfg.HTTP.Addr = addrs[3*i], addrs[3*i+1]
		cfg.Cluster.ID = uint64(i + 1)
		cfg.Cluster.PeerAddr = fmt.Sprintf("127.0.0.%d:%s", i+1, port(addrs[3*i+2]))
		cfg.Cluster.Peers = peers
		cfg.Cluster.Shards = clusterShards
		cfg.Cluster.Tick = config.Duration(clusterTick)
		cfg.Cluster.RequestTimeout = config.Duration(timeout)
		path := filepath.Join(dir, fmt.Sprintf("m%d.toml", i+1))
		if err := os.WriteFile(path, []byte(cfg.TOML()), 0o600); err != nil {
			t.Fatal(err)
		}
		m := &member{id: uint64(i + 1), configPath: path, peerAddr: cfg.Cluster.PeerAddr}
		m.node = launchNode(t, bin, cfg.Data.Dir, cfg.RESP.Addr, cfg.HTTP.Addr, []string{"server", "--config", path})
		members = append(members, m)
	}
	for _, m := range members {
		if err := m.waitReady(); err != nil {
			t.Fatalf("member %d: %v\n%s", m.id, err, m.output)
		}
	}
	waitLeaders(t, members)
	return members, nft, table
}

// cutOff drops every packet from or to 127.0.0.3 (member 3's peer
// traffic) until heal.
func cutOff(t *testing.T, nft, table string) {
	t.Helper()
	rules := fmt.Sprintf(`
table ip %[1]s {
	chain in { type filter hook input priority 0; ip saddr 127.0.0.3 drop; ip daddr 127.0.0.3 drop; }
	chain out { type filter hook output priority 0; ip saddr 127.0.0.3 drop; ip daddr 127.0.0.3 drop; }
}`, table)
	cmd := exec.Command(nft, "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}
}

// heal removes the table, and with it the partition.
func heal(t *testing.T, nft, table string) {
	t.Helper()
	if out, err := exec.Command(nft, "delete", "table", "ip", table).CombinedOutput(); err != nil {
		t.Fatalf("nft delete: %v %s", err, out)
	}
}
