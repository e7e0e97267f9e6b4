//go:build linux

package main_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fulcrumdb/fulcrum/internal/config"
)

// TestProcessVIPFollowsActive runs three members, each in its own network
// namespace on a bridge, with cluster.vip set. A client that only knows
// the service address writes to an active-passive replication=primary
// namespace; the active member is killed with SIGKILL; the address moves
// to the new active (its gratuitous ARP updates this host's neighbour
// cache) and the same client, still dialling the same address, writes
// again and reads every acknowledged write.
func TestProcessVIPFollowsActive(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces (.ci/run runs it as root)")
	}
	ipTool, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("needs iproute2's ip")
	}
	ip := func(args ...string) error {
		out, err := exec.Command(ipTool, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	id := fmt.Sprintf("%05x", r.Uint32()&0xfffff)
	subnet := fmt.Sprintf("10.%d.%d", 16+r.IntN(224), r.IntN(256))
	// The members' links meet on a bridge in a namespace of its own (the
	// host's firewall may drop bridged traffic); this host reaches it
	// through one more link, as a client on the same LAN.
	nsName := func(i int) string { return fmt.Sprintf("fv%s%d", id, i) }
	lan := nsName(0)
	if err := ip("netns", "add", lan); err != nil {
		t.Skipf("cannot create network namespaces here: %v", err)
	}
	t.Cleanup(func() { ip("netns", "del", lan) })
	hostLink := fmt.Sprintf("fv%sh", id)
	for _, args := range [][]string{
		{"-n", lan, "link", "add", "br0", "type", "bridge"},
		{"-n", lan, "link", "set", "br0", "up"},
		{"link", "add", hostLink, "type", "veth", "peer", "name", "up0", "netns", lan},
		{"-n", lan, "link", "set", "up0", "master", "br0"},
		{"-n", lan, "link", "set", "up0", "up"},
		{"addr", "add", subnet + ".254/24", "dev", hostLink},
		{"link", "set", hostLink, "up"},
	} {
		if err := ip(args...); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { ip("link", "del", hostLink) })
	for i := 1; i <= 3; i++ {
		ns, port := nsName(i), fmt.Sprintf("m%d", i)
		if err := ip("netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ip("netns", "del", ns) })
		for _, args := range [][]string{
			{"-n", lan, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"-n", lan, "link", "set", port, "master", "br0"},
			{"-n", lan, "link", "set", port, "up"},
			{"-n", ns, "addr", "add", fmt.Sprintf("%s.%d/24", subnet, i), "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "link", "set", "lo", "up"},
		} {
			if err := ip(args...); err != nil {
				t.Fatal(err)
			}
		}
	}

	bin := binary(t)
	dir := t.TempDir()
	vipAddr := subnet + ".100"
	var peers []string
	for i := 1; i <= 3; i++ {
		peers = append(peers, fmt.Sprintf("%d=%s.%d:7000", i, subnet, i))
	}
	var members []*member
	for i := 1; i <= 3; i++ {
		cfg := config.Default()
		cfg.Data.Dir = filepath.Join(dir, fmt.Sprintf("m%d", i))
		// RESP on every address, so the service address reaches it too.
		cfg.RESP.Addr = "0.0.0.0:6379"
		cfg.HTTP.Addr = fmt.Sprintf("%s.%d:8080", subnet, i)
		cfg.Cluster.ID = uint64(i)
		cfg.Cluster.PeerAddr = fmt.Sprintf("%s.%d:7000", subnet, i)
		cfg.Cluster.Peers = peers
		cfg.Cluster.Shards = clusterShards
		cfg.Cluster.Tick = config.Duration(clusterTick)
		cfg.Cluster.VIP, cfg.Cluster.VIPInterface = vipAddr+"/24", "eth0"
		path := filepath.Join(dir, fmt.Sprintf("m%d.toml", i))
		if err := os.WriteFile(path, []byte(cfg.TOML()), 0o600); err != nil {
			t.Fatal(err)
		}
		m := &member{id: uint64(i), configPath: path, peerAddr: cfg.Cluster.PeerAddr}
		m.node = launchNode(t, ipTool, cfg.Data.Dir, fmt.Sprintf("%s.%d:6379", subnet, i), cfg.HTTP.Addr,
			[]string{"netns", "exec", nsName(i), bin, "server", "--config", path})
		members = append(members, m)
	}
	for _, m := range members {
		if err := m.waitReady(); err != nil {
			t.Fatalf("member %d: %v\n%s", m.id, err, m.output)
		}
	}
	waitLeaders(t, members)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: members[0].respAddr, MaxRetries: -1})
	defer admin.Close()
	eventually(t, 10*time.Second, "create the namespace", func() error {
		return admin.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "orders", "REPLICATION", "primary", "ACK", "sync", "SHARDS", "2").Err()
	})
	holder := func() (int, error) {
		found := 0
		for i := 1; i <= 3; i++ {
			// A link that is down answers nobody: it does not count.
			out, err := exec.Command(ipTool, "-n", nsName(i), "-4", "addr", "show", "dev", "eth0", "up").CombinedOutput()
			if err != nil {
				return 0, fmt.Errorf("%v: %s", err, out)
			}
			if strings.Contains(string(out), " "+vipAddr+"/") {
				if found != 0 {
					return 0, fmt.Errorf("members %d and %d both carry %s", found, i, vipAddr)
				}
				found = i
			}
		}
		return found, nil
	}
	eventually(t, 15*time.Second, "member 3 (the active) carries the service address", func() error {
		h, err := holder()
		if err == nil && h != 3 {
			err = fmt.Errorf("carried by member %d", h)
		}
		return err
	})
	// The client knows only the service address.
	client := redis.NewClient(&redis.Options{Addr: vipAddr + ":6379", MaxRetries: -1, PoolSize: 1, DialTimeout: time.Second, ReadTimeout: 3 * time.Second,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "NAMESPACE", "orders").Err() }})
	defer client.Close()
	eventually(t, 15*time.Second, "a write through the service address", func() error { return client.Set(ctx, "k0", "v0", 0).Err() })
	const keys = 30
	for i := 1; i < keys; i++ {
		// Sync refuses writes while a loaded replica is out of the
		// in-sync set for a moment.
		eventually(t, 10*time.Second, "a write", func() error { return client.Set(ctx, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i), 0).Err() })
	}
	if got, err := client.Do(ctx, "INFO", "cluster").Text(); err != nil || !strings.Contains(got, "fulcrum_node_id:3\r\n") {
		t.Fatalf("the service address should reach member 3: %v\n%s", err, got)
	}

	// Member 3's machine fails: the process dies and its link goes down
	// (a killed process leaves the address on the interface, and a live
	// host would still answer ARP for it).
	members[2].kill9()
	if err := ip("-n", nsName(3), "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	eventually(t, 20*time.Second, "a write through the service address after the kill", func() error { return client.Set(ctx, "after", "kill", 0).Err() })
	t.Logf("writes through the service address resumed %v after SIGKILL of the active member", time.Since(killed).Round(time.Millisecond))
	h, err := holder()
	if err != nil || (h != 1 && h != 2) {
		t.Fatalf("the service address after the failover: member %d %v", h, err)
	}
	for i := 0; i < keys; i++ {
		if got, err := client.Get(ctx, fmt.Sprintf("k%d", i)).Result(); err != nil || got != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%d through the service address after the failover: %q %v", i, got, err)
		}
	}
	if got, err := client.Do(ctx, "INFO", "cluster").Text(); err != nil || !strings.Contains(got, fmt.Sprintf("fulcrum_node_id:%d\r\n", h)) {
		t.Fatalf("the service address should reach member %d: %v", h, err)
	}

	// Member 3's machine returns with the stale address still on its
	// interface; the restarted member drops it, as it is not the active.
	if err := ip("-n", nsName(3), "link", "set", "eth0", "up"); err != nil {
		t.Fatal(err)
	}
	members[2].node = launchNode(t, ipTool, members[2].dataDir, members[2].respAddr, members[2].httpAddr,
		[]string{"netns", "exec", nsName(3), bin, "server", "--config", members[2].configPath})
	if err := members[2].waitReady(); err != nil {
		t.Fatalf("member 3 again: %v\n%s", err, members[2].output)
	}
	eventually(t, 10*time.Second, "only the active carries the service address", func() error {
		now, err := holder()
		if err == nil && now != h {
			err = fmt.Errorf("carried by member %d, want %d", now, h)
		}
		return err
	})
	if err := client.Set(ctx, "last", "1", 0).Err(); err != nil {
		t.Fatalf("a write through the service address after member 3 returned: %v", err)
	}
}
