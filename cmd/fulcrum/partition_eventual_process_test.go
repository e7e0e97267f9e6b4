//go:build linux

package main_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestProcessPartitionEventualBothSidesServe is the AP side of the
// partition test: an eventual namespace (W=1, R=1) on three real
// processes, member 3 cut off by nftables. Both sides take writes and
// reads; member 3's reads report that only one replica answered; after
// the heal every replica converges to the last writer (checked by reading
// all three replicas of each key, R 3), the minority's writes included.
func TestProcessPartitionEventualBothSidesServe(t *testing.T) {
	members, nft, table := partitionableCluster(t, time.Second)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: members[0].respAddr, MaxRetries: -1})
	defer admin.Close()
	eventually(t, 10*time.Second, "create the namespace", func() error {
		return admin.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", "cache", "CONSISTENCY", "eventual", "REPLICAS", "3", "SHARDS", "4").Err()
	})
	clients := make([]*redis.Client, 3)
	for i, m := range members {
		clients[i] = redis.NewClient(&redis.Options{Addr: m.respAddr, MaxRetries: -1, PoolSize: 1, ReadTimeout: 5 * time.Second,
			OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "NAMESPACE", "cache").Err() }})
		defer clients[i].Close()
	}
	eventually(t, 10*time.Second, "first write", func() error { return clients[0].Set(ctx, "k", "before", 0).Err() })
	eventually(t, 10*time.Second, "member 3 sees it", func() error {
		got, err := clients[2].Get(ctx, "k").Result()
		if err != nil || got != "before" {
			return fmt.Errorf("%q %v", got, err)
		}
		return nil
	})

	cutOff(t, nft, table)
	// Both sides write and read: the majority first, then the minority,
	// so the minority's write is the later one (last writer wins).
	for i := 0; i < 20; i++ {
		if err := clients[0].Set(ctx, fmt.Sprintf("m%d", i), "majority", 0).Err(); err != nil {
			t.Fatalf("majority write %d: %v", i, err)
		}
	}
	if err := clients[0].Set(ctx, "k", "majority", 0).Err(); err != nil {
		t.Fatalf("majority write: %v", err)
	}
	time.Sleep(5 * time.Millisecond) // a later wall clock for the minority's write, not a wait for state
	for i := 0; i < 20; i++ {
		if err := clients[2].Set(ctx, fmt.Sprintf("n%d", i), "minority", 0).Err(); err != nil {
			t.Fatalf("minority write %d: %v", i, err)
		}
	}
	if err := clients[2].Set(ctx, "k", "minority", 0).Err(); err != nil {
		t.Fatalf("minority write: %v", err)
	}
	if got, err := clients[1].Get(ctx, "k").Result(); err != nil || got != "majority" {
		t.Fatalf("majority read during the partition: %q %v", got, err)
	}
	meta, err := clients[2].Do(ctx, "FULCRUM.GETMETA", "k").Result()
	m, _ := meta.(map[any]any)
	if err != nil || m["value"] != "minority" || m["answered"] != int64(1) {
		t.Fatalf("minority GETMETA during the partition: %v %v", meta, err)
	}
	t.Logf("during the partition, member 3 answers %v", meta)
	if err := clients[2].Do(ctx, "FULCRUM.GETMETA", "k", "R", "3").Err(); err == nil {
		t.Fatal("a read of 3 replicas succeeded on the minority side")
	}

	heal(t, nft, table)
	healed := time.Now()
	agreed := func(c *redis.Client, key, want string) error {
		meta, err := c.Do(ctx, "FULCRUM.GETMETA", key, "R", "3").Result()
		if err != nil {
			return err
		}
		m, _ := meta.(map[any]any)
		if m["value"] != want || m["agreed"] != int64(3) {
			return fmt.Errorf("%s: %v, want %q on all 3 replicas", key, meta, want)
		}
		return nil
	}
	eventually(t, 20*time.Second, "replicas converge", func() error {
		if err := agreed(clients[0], "k", "minority"); err != nil {
			return err
		}
		for i := 0; i < 20; i++ {
			if err := agreed(clients[i%3], fmt.Sprintf("m%d", i), "majority"); err != nil {
				return err
			}
			if err := agreed(clients[(i+1)%3], fmt.Sprintf("n%d", i), "minority"); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("all replicas of 41 keys agree %v after the heal (writes sent during the cut arrive by TCP retransmission; anti-entropy and the checking reads repair the rest)", time.Since(healed).Round(time.Millisecond))
}
