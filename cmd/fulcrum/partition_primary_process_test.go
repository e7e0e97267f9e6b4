//go:build unix

package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestProcessPartitionPrimaryFencing cuts the primary of two
// replication=primary namespaces, one ack=async and one ack=sync (member
// 3: active-passive puts them on the highest id), off from the other
// members with nftables, while a client stays attached to it and keeps
// writing to both. The old primary must stop acknowledging before the new
// one acknowledges anything (no split brain). After the heal, no sync
// acknowledged write may be missing, and the async acknowledged writes
// that the new history lacks must be exactly as many as the old primary
// reports it moved aside.
func TestProcessPartitionPrimaryFencing(t *testing.T) {
	members, nft, table := partitionableCluster(t, time.Second)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: members[0].respAddr, MaxRetries: -1})
	defer admin.Close()
	modes := []string{"async", "sync"}
	for _, mode := range modes {
		eventually(t, 10*time.Second, "create the namespace", func() error {
			return admin.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", mode, "REPLICATION", "primary", "ACK", mode, "SHARDS", "1").Err()
		})
	}
	nsClient := func(m *member, ns string) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: m.respAddr, MaxRetries: -1, PoolSize: 1, ReadTimeout: 3 * time.Second,
			OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "NAMESPACE", ns).Err() }})
		t.Cleanup(func() { c.Close() })
		return c
	}
	type ack struct {
		key string
		at  time.Time
	}
	type writer struct {
		old, cur *redis.Client // on member 3, on member 1
		mu       sync.Mutex
		acked    []ack
	}
	ws := map[string]*writer{}
	for _, mode := range modes {
		w := &writer{old: nsClient(members[2], mode), cur: nsClient(members[0], mode)}
		ws[mode] = w
		eventually(t, 10*time.Second, mode+": first write", func() error { return w.old.Set(ctx, "first", "1", 0).Err() })
	}
	if st, err := members[2].status(); err != nil || len(st.Primaries) != 2 || st.Primaries[0].Role != "primary" || st.Primaries[1].Role != "primary" {
		t.Fatalf("member 3 should be both shards' primary: %+v %v", st.Primaries, err)
	}

	// Writers on the old primary, recording acknowledged keys with when.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { // owned by the test: stopped by close(stop)
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d", i)
				if err := w.old.Set(ctx, key, "v", 0).Err(); err == nil {
					w.mu.Lock()
					w.acked = append(w.acked, ack{key, time.Now()})
					w.mu.Unlock()
				} else {
					time.Sleep(5 * time.Millisecond) // refused: pace the retries
				}
			}
		}()
	}
	stopped := false
	stopWriters := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopWriters()
	for mode, w := range ws {
		eventually(t, 10*time.Second, mode+": writes on member 3", func() error {
			w.mu.Lock()
			defer w.mu.Unlock()
			if len(w.acked) < 50 {
				return fmt.Errorf("%d acknowledged", len(w.acked))
			}
			return nil
		})
	}

	cutOff(t, nft, table)
	cut := time.Now()
	firstNew := map[string]time.Time{}
	for _, mode := range modes {
		eventually(t, 20*time.Second, mode+": a write through member 1 (a new primary)", func() error {
			if err := ws[mode].cur.Set(ctx, "new", "1", 0).Err(); err != nil {
				return err
			}
			firstNew[mode] = time.Now()
			return nil
		})
		t.Logf("%s: the majority acknowledged a write %v after the cut", mode, firstNew[mode].Sub(cut).Round(time.Millisecond))
	}
	// The old primary's client keeps trying for a while after the
	// promotions.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		if err := ws["async"].cur.Set(ctx, fmt.Sprintf("n%d", time.Now().UnixNano()), "1", 0).Err(); err != nil {
			t.Fatalf("write on the new primary: %v", err)
		}
	}
	stopWriters()
	for _, mode := range modes {
		w := ws[mode]
		afterCut, lastOld := 0, time.Time{}
		for _, a := range w.acked {
			if a.at.After(cut) {
				afterCut++
			}
			lastOld = a.at
		}
		if !lastOld.Before(firstNew[mode]) {
			t.Fatalf("%s: split brain: the old primary acknowledged a write at +%v, after the new one's first at +%v",
				mode, lastOld.Sub(cut), firstNew[mode].Sub(cut))
		}
		t.Logf("%s: the old primary acknowledged %d writes after the cut, the last %v after it; the new primary's first came %v later",
			mode, afterCut, lastOld.Sub(cut).Round(time.Millisecond), firstNew[mode].Sub(lastOld).Round(time.Millisecond))
	}

	heal(t, nft, table)
	reported := map[string]uint64{}
	eventually(t, 20*time.Second, "member 3 follows the new primaries", func() error {
		st, err := members[2].status()
		if err != nil {
			return err
		}
		for _, p := range st.Primaries {
			if p.Role != "replica" || p.Epoch < 2 || p.LagEntries != 0 || p.LagMillis < 0 {
				return fmt.Errorf("member 3: %+v", p)
			}
			reported[p.Namespace] = p.Lost
		}
		return nil
	})
	// The writes moved aside can be read back from member 3.
	var set struct {
		Writes []struct {
			Namespace string `json:"namespace"`
			Ops       []struct {
				Op  string `json:"op"`
				Key []byte `json:"key"`
			} `json:"ops"`
		} `json:"writes"`
	}
	resp, err := statusClient.Get("http://" + members[2].httpAddr + "/v1/cluster/lost-writes")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&set)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	asideKeys := map[string]map[string]bool{}
	for _, lw := range set.Writes {
		if asideKeys[lw.Namespace] == nil {
			asideKeys[lw.Namespace] = map[string]bool{}
		}
		for _, op := range lw.Ops {
			asideKeys[lw.Namespace][string(op.Key)] = true
		}
	}
	for _, mode := range modes {
		w := ws[mode]
		lost := 0
		for _, a := range w.acked {
			err := w.cur.Get(ctx, a.key).Err()
			switch {
			case err == redis.Nil:
				lost++
				if !asideKeys[mode][a.key] {
					t.Fatalf("%s: %s was acknowledged and lost, but member 3's lost writes lack it", mode, a.key)
				}
			case err != nil:
				t.Fatalf("%s: GET %s: %v", mode, a.key, err)
			}
		}
		t.Logf("%s: acknowledged %d; missing after the failover %d; moved aside and reported by member 3: %d", mode, len(w.acked), lost, reported[mode])
		switch {
		case mode == "sync" && lost != 0:
			t.Fatalf("sync: %d acknowledged writes lost", lost)
		case mode == "async" && uint64(lost) != reported[mode]:
			t.Fatalf("async: member 3 reports %d lost writes; %d acknowledged writes are missing", reported[mode], lost)
		}
	}
}
