package storage

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// A request that cannot be applied (here: a corrupt row) is answered at
// once, and the other requests of its group are still applied.
func TestCorruptRowFailsOnlyItsRequest(t *testing.T) {
	s := openTest(t, vfs.NewMem(), newFakeClock())
	defer s.Close()
	if err := s.db.Set(dataKey(nil, "default", []byte("bad")), []byte{9, 9}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := "good" + strconv.Itoa(i)
			if i == 0 {
				key = "bad"
			}
			_, errs[i] = s.Apply(ctx, kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "default", Key: []byte(key), Value: []byte("x")}}})
		}()
	}
	wg.Wait()
	if !errors.Is(errs[0], kv.ErrInternal) {
		t.Fatalf("corrupt row: got %v, want INTERNAL", errs[0])
	}
	for i := 1; i < len(errs); i++ {
		if errs[i] != nil {
			t.Fatalf("request %d in the same group: got %v, want applied", i, errs[i])
		}
		if _, ok := get(t, s, "good"+strconv.Itoa(i)); !ok {
			t.Fatalf("good%d not applied", i)
		}
	}
}

// A reader never gets an older value than a read that completed before it,
// including a Scan (which reads Pebble) followed by a Get (row cache).
func TestReadsNeverGoBack(t *testing.T) {
	for _, size := range []int64{0, -1} {
		t.Run(fmt.Sprint("cache", size), func(t *testing.T) {
			s := openTest(t, vfs.NewMem(), newFakeClock(), func(o *Options) { o.RowCacheSize = size })
			defer s.Close()
			ctx := context.Background()
			var stop atomic.Bool
			var wg sync.WaitGroup
			var bad atomic.Value
			for r := 0; r < 4; r++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !stop.Load() {
						res, err := s.Scan(ctx, kv.ScanRequest{Namespace: "default", Limit: 10})
						if err != nil || len(res.Entries) == 0 {
							continue
						}
						n1, _ := strconv.Atoi(string(res.Entries[0].Value.Data))
						v, _, _ := s.Get(ctx, "default", []byte("k"))
						if n2, _ := strconv.Atoi(string(v.Data)); n2 < n1 {
							bad.Store(fmt.Sprintf("scan saw %d, then get saw %d", n1, n2))
						}
					}
				}()
			}
			for i := 0; i < 3000 && bad.Load() == nil; i++ {
				if _, err := s.Apply(ctx, kv.Batch{Ops: []kv.Op{{Kind: kv.OpIncrBy, Namespace: "default", Key: []byte("k"), Delta: 1}}}); err != nil {
					t.Fatal(err)
				}
			}
			stop.Store(true)
			wg.Wait()
			if b := bad.Load(); b != nil {
				t.Fatal(b)
			}
		})
	}
}

// The interleaving that a commit's publish window allows, step by step: a
// fill from before the commit and one from during it are both refused.
func TestCacheRefusesFillsDuringCommit(t *testing.T) {
	s := openTest(t, vfs.NewMem(), newFakeClock())
	defer s.Close()
	dk := dataKey(nil, "default", []byte("k"))
	_, _, genC := s.cache.get(dk) // reader C misses before the commit
	rC, okC, _ := readPebble(s.db, dk)
	v1 := kv.Value{Data: []byte("v1"), Version: 1}
	inv := s.cache.begin(map[string]*cacheEntry{string(dk): {rec: record{Value: v1}, exists: true}}, false)
	b := s.db.NewBatch()
	_ = b.Set(dk, encodeValue(nil, record{Value: v1}), nil)
	if err := s.db.Apply(b, pebble.NoSync); err != nil { // published, not yet cached
		t.Fatal(err)
	}
	_, hitA, genA := s.cache.get(dk) // reader A during the window
	rA, okA, _ := readPebble(s.db, dk)
	s.cache.fill(dk, cacheEntry{rec: rC, exists: okC}, genC)
	s.cache.fill(dk, cacheEntry{rec: rA, exists: okA}, genA)
	if e, hit, _ := s.cache.get(dk); hit {
		t.Fatalf("cache accepted a fill during a commit (hitA=%v): %+v", hitA, e)
	}
	s.cache.end(inv, true)
	if v, ok := get(t, s, "k"); !ok || v != "v1" {
		t.Fatalf("after the commit: got %q,%v want v1", v, ok)
	}
}

// The clock persisted with each commit keeps timestamps increasing across a
// restart even when the wall clock is behind.
func TestClockSurvivesRestartWithClockBehind(t *testing.T) {
	clock := newFakeClock()
	fs := vfs.NewMem()
	s := openTest(t, fs, clock)
	r1 := apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("a"), Value: []byte("1")})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 50; i++ { // requests whose callers gave up commit nothing
		_, _ = s.Apply(ctx, kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "default", Key: []byte("x")}}})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(-time.Hour)
	s = openTest(t, fs, clock)
	defer s.Close()
	r2 := apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("a"), Value: []byte("2")})
	if !r1.Cur.Timestamp.Less(r2.Cur.Timestamp) {
		t.Fatalf("timestamp went back across restart: %v then %v", r1.Cur.Timestamp, r2.Cur.Timestamp)
	}
}

func TestReadsAfterCloseAnswerClosed(t *testing.T) {
	s := openTest(t, vfs.NewMem(), newFakeClock())
	apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("a"), Value: []byte("1")})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := s.Get(ctx, "default", []byte("a")); !errors.Is(err, kv.ErrUnavailable) {
		t.Errorf("Get: got %v, want UNAVAILABLE", err)
	}
	if _, err := s.Scan(ctx, kv.ScanRequest{Namespace: "default"}); !errors.Is(err, kv.ErrUnavailable) {
		t.Errorf("Scan: got %v, want UNAVAILABLE", err)
	}
	if err := s.Sync(ctx); !errors.Is(err, kv.ErrUnavailable) {
		t.Errorf("Sync: got %v, want UNAVAILABLE", err)
	}
	if _, err := s.SweepOnce(ctx); !errors.Is(err, kv.ErrUnavailable) {
		t.Errorf("SweepOnce: got %v, want UNAVAILABLE", err)
	}
}

// Disk errors on the WAL: every Apply returns (no hang, no crash), the store
// then refuses writes, and Close returns.
func TestWALErrorsRefuseWritesWithoutHanging(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncInterval} {
		t.Run(string(mode), func(t *testing.T) {
			tog := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
				if strings.HasSuffix(op.Path, ".log") && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo) {
					return errorfs.ErrInjected
				}
				return nil
			})}
			s := openTest(t, errorfs.Wrap(vfs.NewMem(), tog), newFakeClock(), func(o *Options) { o.Sync = mode; o.SyncInterval = time.Millisecond })
			apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("a"), Value: []byte("1")})
			tog.On()
			var wg sync.WaitGroup
			for i := 0; i < 50; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					_, err := s.Apply(ctx, kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "default", Key: []byte(fmt.Sprint("k", i)), Value: []byte("v")}}})
					if errors.Is(err, kv.ErrTimeout) {
						t.Errorf("Apply hung until its deadline: %v", err)
					}
				}()
			}
			wg.Wait()
			waitFor(t, func() bool {
				_, err := s.Apply(context.Background(), kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "default", Key: []byte("z")}}})
				return errors.Is(err, kv.ErrUnavailable)
			})
			done := make(chan error, 1)
			go func() { done <- s.Close() }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("Close hung after WAL errors")
			}
		})
	}
}
