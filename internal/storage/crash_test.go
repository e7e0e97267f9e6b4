package storage

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// crashRun writes unique keys from several goroutines, takes a crash image
// of the filesystem (only synced data) while writes are in flight, and
// returns the writes acknowledged before the image and the reopened store.
func crashRun(t *testing.T, mode SyncMode, seed int64) (acked []string, crashed *Store) {
	t.Helper()
	clock := newFakeClock()
	fs := vfs.NewCrashableMem()
	s := openTest(t, fs, clock, func(o *Options) { o.Sync = mode })

	var mu sync.Mutex
	var ackedBefore []string
	crashNow := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed + int64(g)))
			for i := 0; ; i++ {
				select {
				case <-crashNow:
					return
				default:
				}
				key := fmt.Sprintf("g%d-%d", g, i)
				op := kv.Op{Kind: kv.OpSet, Namespace: "default", Key: []byte(key), Value: []byte(key)}
				if _, err := s.Apply(context.Background(), kv.Batch{Ops: []kv.Op{op}}); err != nil {
					return // store closed under us
				}
				mu.Lock()
				ackedBefore = append(ackedBefore, key)
				n := len(ackedBefore)
				mu.Unlock()
				if n == 2000 {
					close(crashNow)
				}
				if rng.Intn(50) == 0 {
					// Vary group sizes.
					_, _, _ = s.Get(context.Background(), "default", []byte(key))
				}
			}
		}(g)
	}
	<-crashNow
	mu.Lock()
	acked = append([]string(nil), ackedBefore...)
	mu.Unlock()
	image := fs.CrashClone(vfs.CrashCloneCfg{}) // keeps exactly the synced data
	wg.Wait()
	s.Close()
	return acked, openTest(t, image, clock)
}

// Every write acknowledged with sync=always survives a crash that drops all
// unsynced data.
func TestCrashSyncAlwaysLosesNothing(t *testing.T) {
	for seed := int64(1); seed <= 3; seed++ {
		acked, s := crashRun(t, SyncAlways, seed)
		for _, k := range acked {
			if v, ok := get(t, s, k); !ok || v != k {
				t.Fatalf("seed %d: acknowledged write %q lost after crash (got %q, %v)", seed, k, v, ok)
			}
		}
		if n := s.Count("default"); n < int64(len(acked)) {
			t.Fatalf("seed %d: count %d after crash, want >= %d", seed, n, len(acked))
		}
		s.Close()
	}
}

// The same workload with sync=none does lose acknowledged writes in the
// same kind of crash: this shows the crash test can fail.
func TestCrashSyncNoneLosesWrites(t *testing.T) {
	acked, s := crashRun(t, SyncNone, 1)
	defer s.Close()
	lost := 0
	for _, k := range acked {
		if _, ok := get(t, s, k); !ok {
			lost++
		}
	}
	if lost == 0 {
		t.Fatalf("sync=none lost no acknowledged writes in a crash; the crash filesystem is not dropping unsynced data")
	}
	t.Logf("sync=none: %d of %d acknowledged writes lost", lost, len(acked))
}

// With sync=interval the loss is bounded by the last completed sync: every
// write acknowledged before a sync survives, and Stats reports the window.
func TestCrashSyncIntervalBoundedBySync(t *testing.T) {
	clock := newFakeClock()
	fs := vfs.NewCrashableMem()
	s := openTest(t, fs, clock, func(o *Options) { o.Sync = SyncInterval; o.SyncInterval = 1 << 62 })
	put := func(k string) {
		if _, err := s.Apply(context.Background(), kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "default", Key: []byte(k), Value: []byte(k)}}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		put(fmt.Sprintf("before-%d", i))
	}
	if st := s.Stats(); st.UnsyncedSince.IsZero() {
		t.Fatal("Stats.UnsyncedSince is zero with unsynced writes")
	}
	// The interval syncer's tick, taken by hand.
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); !st.UnsyncedSince.IsZero() || st.LastSync.IsZero() {
		t.Fatalf("after sync: UnsyncedSince=%v LastSync=%v", st.UnsyncedSince, st.LastSync)
	}
	for i := 0; i < 100; i++ {
		put(fmt.Sprintf("after-%d", i))
	}
	image := fs.CrashClone(vfs.CrashCloneCfg{})
	s.Close()
	s = openTest(t, image, clock)
	defer s.Close()
	for i := 0; i < 100; i++ {
		if _, ok := get(t, s, fmt.Sprintf("before-%d", i)); !ok {
			t.Fatalf("write acknowledged before the sync lost: before-%d", i)
		}
	}
	lost := 0
	for i := 0; i < 100; i++ {
		if _, ok := get(t, s, fmt.Sprintf("after-%d", i)); !ok {
			lost++
		}
	}
	t.Logf("sync=interval: %d of 100 writes after the last sync lost (allowed)", lost)
}

func TestIntervalSyncerRuns(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, vfs.NewMem(), clock, func(o *Options) { o.Sync = SyncInterval; o.SyncInterval = 1e6 })
	defer s.Close()
	apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("a"), Value: []byte("1")})
	waitFor(t, func() bool { return s.Stats().UnsyncedSince.IsZero() && !s.Stats().LastSync.IsZero() })
}

// With sync=always a batch marked Logged (durable in its caller's log) is
// acknowledged without an fsync, so a crash may drop it; the next batch
// that is not Logged syncs the WAL, which makes every earlier one durable.
func TestCrashLoggedBatchesSkipTheSync(t *testing.T) {
	clock := newFakeClock()
	fs := vfs.NewCrashableMem()
	s := openTest(t, fs, clock, func(o *Options) { o.Sync = SyncAlways })
	defer s.Close()
	put := func(k string, logged bool) {
		op := kv.Op{Kind: kv.OpSet, Namespace: "default", Key: []byte(k), Value: []byte(k)}
		if _, err := s.Apply(context.Background(), kv.Batch{Ops: []kv.Op{op}, Logged: logged}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		put(fmt.Sprintf("logged-%d", i), true)
	}
	if st := s.Stats(); !st.UnsyncedSince.IsZero() {
		t.Fatalf("Stats.UnsyncedSince = %v after Logged writes only: they are not at risk", st.UnsyncedSince)
	}
	crashed := openTest(t, fs.CrashClone(vfs.CrashCloneCfg{}), clock)
	if n := crashed.Count("default"); n == 100 {
		t.Fatal("every Logged write survived a crash that keeps only synced data: Logged batches were fsynced")
	}
	crashed.Close()

	put("durable", false)
	crashed = openTest(t, fs.CrashClone(vfs.CrashCloneCfg{}), clock)
	defer crashed.Close()
	for i := 0; i < 100; i++ {
		if _, ok := get(t, crashed, fmt.Sprintf("logged-%d", i)); !ok {
			t.Fatalf("logged-%d lost although a later synced write was acknowledged", i)
		}
	}
	if _, ok := get(t, crashed, "durable"); !ok {
		t.Fatal("a sync=always write that is not Logged was lost in a crash")
	}
}
