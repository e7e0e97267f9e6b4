package storage

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// Readers racing the applier never see a key's counter go backwards, and
// after the writers stop every reader sees the last write: the row cache
// never serves a row older than Pebble's.
func TestCacheNeverServesStaleRows(t *testing.T) {
	for _, size := range []int64{4096, 0} {
		t.Run(fmt.Sprint("cache", size), func(t *testing.T) {
			clock := newFakeClock()
			s := openTest(t, vfs.NewMem(), clock, func(o *Options) { o.RowCacheSize = size })
			defer s.Close()
			const keys, writes = 8, 400
			ctx := context.Background()
			var wg sync.WaitGroup
			stop := make(chan struct{})
			errs := make(chan error, 16)
			for r := 0; r < 4; r++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					seen := make([]int64, keys)
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						k := i % keys
						v, ok, err := s.Get(ctx, "default", []byte(strconv.Itoa(k)))
						if err != nil {
							errs <- err
							return
						}
						if !ok {
							continue
						}
						n, _ := strconv.ParseInt(string(v.Data), 10, 64)
						if n < seen[k] {
							errs <- fmt.Errorf("key %d went back from %d to %d", k, seen[k], n)
							return
						}
						seen[k] = n
					}
				}()
			}
			for i := 0; i < writes; i++ {
				var ops []kv.Op
				for k := 0; k < keys; k++ {
					ops = append(ops, kv.Op{Kind: kv.OpIncrBy, Namespace: "default", Key: []byte(strconv.Itoa(k)), Delta: 1})
				}
				if _, err := s.Apply(ctx, kv.Batch{Ops: ops}); err != nil {
					t.Fatal(err)
				}
			}
			close(stop)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			for k := 0; k < keys; k++ {
				if v, ok := get(t, s, strconv.Itoa(k)); !ok || v != strconv.Itoa(writes) {
					t.Fatalf("key %d: got %q, want %d", k, v, writes)
				}
			}
		})
	}
}

// The cache keeps its byte budget.
func TestCacheBounded(t *testing.T) {
	c := newRowCache(64 * 1024)
	for i := 0; i < 10_000; i++ {
		overlay := map[string]*cacheEntry{fmt.Sprint("k", i): {rec: record{Value: kv.Value{Data: make([]byte, 100)}}, exists: true}}
		c.end(c.begin(overlay, false), true)
	}
	var total int64
	for i := range c.shards {
		if c.shards[i].bytes > c.maxBytes {
			t.Fatalf("shard %d holds %d bytes, budget %d", i, c.shards[i].bytes, c.maxBytes)
		}
		total += c.shards[i].bytes
	}
	if total == 0 {
		t.Fatal("cache kept nothing")
	}
}
