package raftlog

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// One batch carries interleaved writes of many groups; each group ends up
// with exactly its own writes, in memory and after a reopen.
func TestBatchManyGroups(t *testing.T) {
	fs := vfs.NewMem()
	s := openFS(t, fs)
	const n = 16
	b := s.NewBatch()
	for round := uint64(0); round < 4; round++ {
		for g := uint64(1); g <= n; g++ {
			lo := round*g + 1
			b.Append(g, ents(lo, lo+g-1, round+1))
			b.SetHardState(g, hardState(round+1, g, lo))
		}
	}
	for g := uint64(1); g <= n; g += 2 {
		b.SetConfState(g, confState(g, g+100))
	}
	if b.Empty() {
		t.Fatal("Empty() = true for a batch with writes")
	}
	commit(t, b, true)
	if !b.Empty() {
		t.Fatal("Commit did not reset the batch")
	}

	check := func(s *Store) {
		t.Helper()
		for g := uint64(1); g <= n; g++ {
			gs := s.Group(g)
			var want []*raftpb.Entry
			for round := uint64(0); round < 4; round++ {
				want = append(want, ents(round*g+1, round*g+g, round+1)...)
			}
			if got := mustEntries(t, gs); !sameEntries(got, want) {
				t.Fatalf("group %d: entries %s, want %s", g, describe(got), describe(want))
			}
			hs, cs, _ := gs.InitialState()
			if !proto.Equal(hs, hardState(4, g, 3*g+1)) {
				t.Fatalf("group %d: hard state %v, want term 4 vote %d commit %d", g, hs, g, 3*g+1)
			}
			wantCS := confState()
			if g%2 == 1 {
				wantCS = confState(g, g+100)
			}
			if !proto.Equal(cs, wantCS) {
				t.Fatalf("group %d: conf state %v, want %v", g, cs, wantCS)
			}
		}
		ids, err := s.Groups()
		if err != nil || len(ids) != n || ids[0] != 1 || ids[n-1] != n || !slices.IsSorted(ids) {
			t.Fatalf("Groups() = %v, %v; want 1..%d", ids, err, n)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(openFS(t, fs))
}

// DeleteGroup removes one group and nothing of its neighbours (the key
// ranges of groups 1, 2 and 3 touch).
func TestDeleteGroup(t *testing.T) {
	fs := vfs.NewMem()
	s := openFS(t, fs)
	b := s.NewBatch()
	for g := uint64(1); g <= 3; g++ {
		b.Append(g, ents(1, 20, g))
		b.SetHardState(g, hardState(g, 1, 20))
		b.SetConfState(g, confState(1, 2, 3))
	}
	commit(t, b, true)
	if err := s.Group(2).Compact(5); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteGroup(2); err != nil {
		t.Fatal(err)
	}

	check := func(s *Store) {
		t.Helper()
		if ids, err := s.Groups(); err != nil || !slices.Equal(ids, []uint64{1, 3}) {
			t.Fatalf("Groups() = %v, %v; want [1 3]", ids, err)
		}
		g := s.Group(2)
		first, _ := g.FirstIndex()
		last, _ := g.LastIndex()
		hs, cs, _ := g.InitialState()
		if first != 1 || last != 0 || hs != nil || len(cs.GetVoters()) != 0 {
			t.Fatalf("deleted group: first %d last %d hs %v cs %v; want an empty group", first, last, hs, cs)
		}
		for _, id := range []uint64{1, 3} {
			if got := mustEntries(t, s.Group(id)); !sameEntries(got, ents(1, 20, id)) {
				t.Fatalf("group %d after deleting group 2: %s", id, describe(got))
			}
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openFS(t, fs)
	check(s)

	// The group can come back (a replica added again).
	b = s.NewBatch()
	b.Append(2, ents(1, 3, 7))
	commit(t, b, true)
	if got := mustEntries(t, s.Group(2)); !sameEntries(got, ents(1, 3, 7)) {
		t.Fatalf("re-created group: %s", describe(got))
	}
}

// A batch with one misfit write is refused whole, leaves the store usable,
// and writes nothing, for any group.
func TestInvalidWriteWritesNothing(t *testing.T) {
	fs := vfs.NewMem()
	s := openFS(t, fs)
	b := s.NewBatch()
	b.Append(1, ents(1, 5, 1))
	commit(t, b, true)
	if err := s.Group(1).Compact(3); err != nil {
		t.Fatal(err)
	}

	for name, bad := range map[string]func(b *Batch){
		"gap":            func(b *Batch) { b.Append(1, ents(8, 9, 1)) },
		"not contiguous": func(b *Batch) { b.Append(1, []*raftpb.Entry{ent(6, 1, ""), ent(8, 1, "")}) },
		"index 0":        func(b *Batch) { b.Append(1, []*raftpb.Entry{ent(0, 1, "")}) },
		"old snapshot": func(b *Batch) {
			b.ApplySnapshot(1, &raftpb.SnapshotMetadata{Index: new(uint64(3)), Term: new(uint64(1)), ConfState: confState(1)})
		},
	} {
		b := s.NewBatch()
		b.Append(1, ents(6, 6, 1))
		b.SetHardState(1, hardState(1, 1, 6))
		b.Append(2, ents(1, 2, 1))
		bad(b)
		err := b.Commit(true)
		if !errors.Is(err, ErrInvalidWrite) {
			t.Fatalf("%s: Commit = %v, want ErrInvalidWrite", name, err)
		}
		if name == "old snapshot" && !errors.Is(err, raft.ErrSnapOutOfDate) {
			t.Fatalf("%s: Commit = %v, want it to wrap raft.ErrSnapOutOfDate", name, err)
		}
		if kv.CodeOf(err) != kv.CodeInternal {
			t.Fatalf("%s: code %s, want INTERNAL", name, kv.CodeOf(err))
		}
	}
	if err := s.Group(1).Compact(9); !errors.Is(err, ErrInvalidWrite) {
		t.Fatalf("Compact past the last index = %v, want ErrInvalidWrite", err)
	}
	if err := s.Group(1).Compact(2); err != raft.ErrCompacted {
		t.Fatalf("Compact below the compaction point = %v, want raft.ErrCompacted", err)
	}

	check := func(s *Store) {
		t.Helper()
		if got := mustEntries(t, s.Group(1)); !sameEntries(got, ents(4, 5, 1)) {
			t.Fatalf("group 1: %s, want entries 4..5", describe(got))
		}
		if hs, _, _ := s.Group(1).InitialState(); hs != nil {
			t.Fatalf("group 1: hard state %v from a refused batch", hs)
		}
		if last, _ := s.Group(2).LastIndex(); last != 0 {
			t.Fatalf("group 2: last index %d from a refused batch", last)
		}
		if ids, _ := s.Groups(); !slices.Equal(ids, []uint64{1}) {
			t.Fatalf("Groups() = %v, want [1]", ids)
		}
	}
	check(s)
	b = s.NewBatch()
	b.Append(1, ents(6, 6, 1))
	commit(t, b, true) // still usable
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openFS(t, fs)
	if last, _ := s.Group(1).LastIndex(); last != 6 {
		t.Fatalf("last index %d after reopen, want 6", last)
	}
}

// Several writes to one group in one batch apply in order, including a
// snapshot followed by appends, and a truncation followed by a shorter log.
func TestBatchOrderWithinGroup(t *testing.T) {
	fs := vfs.NewMem()
	s := openFS(t, fs)
	b := s.NewBatch()
	b.Append(1, ents(1, 10, 1))
	b.Append(1, ents(4, 6, 2)) // truncates 7..10
	b.Append(2, ents(1, 10, 1))
	b.ApplySnapshot(2, &raftpb.SnapshotMetadata{Index: new(uint64(20)), Term: new(uint64(3)), ConfState: confState(4, 5)})
	b.Append(2, ents(21, 22, 3))
	commit(t, b, false)
	check := func(s *Store) {
		t.Helper()
		want1 := append(ents(1, 3, 1), ents(4, 6, 2)...)
		if got := mustEntries(t, s.Group(1)); !sameEntries(got, want1) {
			t.Fatalf("group 1: %s, want %s", describe(got), describe(want1))
		}
		g2 := s.Group(2)
		if got := mustEntries(t, g2); !sameEntries(got, ents(21, 22, 3)) {
			t.Fatalf("group 2: %s, want entries 21..22", describe(got))
		}
		if term, err := g2.Term(20); term != 3 || err != nil {
			t.Fatalf("group 2: Term(20) = %d, %v; want 3", term, err)
		}
		if _, err := g2.Term(19); err != raft.ErrCompacted {
			t.Fatalf("group 2: Term(19) = %v, want raft.ErrCompacted", err)
		}
		if _, cs, _ := g2.InitialState(); !slices.Equal(cs.GetVoters(), []uint64{4, 5}) {
			t.Fatalf("group 2: conf state %v, want voters 4 5", cs)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(openFS(t, fs))
}

// The entry cache never answers with entries a truncating append replaced,
// nor with compacted ones, and it does serve recent entries.
func TestCacheNeverStale(t *testing.T) {
	s := openFS(t, vfs.NewMem(), func(o *Options) { o.CacheEntries = 8 })
	g := s.Group(1)
	appendEnts := func(es []*raftpb.Entry) {
		b := s.NewBatch()
		b.Append(1, es)
		commit(t, b, true)
	}
	want := ents(1, 20, 1)
	appendEnts(want)
	got, err := g.Entries(15, 21, ^uint64(0))
	if err != nil || !sameEntries(got, want[14:]) {
		t.Fatalf("Entries(15, 21) = %s, %v", describe(got), err)
	}
	if got[0] != want[14] {
		t.Fatal("recent entries not served from the cache")
	}

	// Truncate inside the cached range with a new term.
	appendEnts(ents(17, 18, 2))
	want = append(want[:16], ents(17, 18, 2)...)
	if got, err := g.Entries(15, 19, ^uint64(0)); err != nil || !sameEntries(got, want[14:]) {
		t.Fatalf("after truncating append: Entries(15, 19) = %s, %v; want %s", describe(got), err, describe(want[14:]))
	}
	if _, err := g.Entries(15, 21, ^uint64(0)); err != raft.ErrUnavailable {
		t.Fatalf("Entries past the truncated end = %v, want raft.ErrUnavailable", err)
	}
	// Truncate below the cached range: the whole cache must go.
	appendEnts(ents(5, 6, 3))
	want = append(want[:4], ents(5, 6, 3)...)
	if got, err := g.Entries(1, 7, ^uint64(0)); err != nil || !sameEntries(got, want) {
		t.Fatalf("after truncating below the cache: %s, %v; want %s", describe(got), err, describe(want))
	}
	if term, _ := g.Term(6); term != 3 {
		t.Fatalf("Term(6) = %d, want 3", term)
	}
	// Compact through the cache.
	if err := g.Compact(5); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Entries(5, 7, ^uint64(0)); err != raft.ErrCompacted {
		t.Fatalf("Entries(5, 7) after Compact(5) = %v, want raft.ErrCompacted", err)
	}
	if got, err := g.Entries(6, 7, ^uint64(0)); err != nil || !sameEntries(got, want[5:]) {
		t.Fatalf("Entries(6, 7) = %s, %v", describe(got), err)
	}
	// Many appends: the cache stays bounded and reads below it go to Pebble.
	for i := uint64(7); i <= 100; i += 3 {
		appendEnts(ents(i, i+2, 4))
	}
	g.mu.Lock()
	n := len(g.mu.cache.ents)
	g.mu.Unlock()
	if n > 8 {
		t.Fatalf("cache holds %d entries, bound is 8", n)
	}
	if got, err := g.Entries(6, 103, ^uint64(0)); err != nil || len(got) != 97 || got[96].GetIndex() != 102 {
		t.Fatalf("Entries(6, 103) = %d entries, %v", len(got), err)
	}
}

// Entries respects maxSize like raft.MemoryStorage: as many entries as fit,
// but always at least one.
func TestEntriesMaxSize(t *testing.T) {
	for _, cache := range []int{0, -1} {
		s := openFS(t, vfs.NewMem(), func(o *Options) { o.CacheEntries = cache })
		b := s.NewBatch()
		es := ents(1, 10, 1)
		b.Append(1, es)
		commit(t, b, true)
		size := uint64(proto.Size(es[0]))
		for _, c := range []struct {
			maxSize uint64
			want    int
		}{{0, 1}, {size - 1, 1}, {size, 1}, {2*size - 1, 1}, {2 * size, 2}, {5*size + 3, 5}, {^uint64(0), 10}} {
			got, err := s.Group(1).Entries(1, 11, c.maxSize)
			if err != nil || len(got) != c.want {
				t.Fatalf("cache %d: Entries(1, 11, %d) = %d entries, %v; want %d", cache, c.maxSize, len(got), err, c.want)
			}
		}
	}
}

// A corrupt entry or a hole in a log is an error that names the group and
// index, from Entries and from Open; never a panic and never wrong data.
func TestCorruptLog(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(s *Store) error
		what   string
	}{
		{"garbage value", func(s *Store) error { return s.db.Set(logKey(7, 5), []byte{0xff, 0xff, 0xff}, nil) }, "entry 5"},
		{"wrong index", func(s *Store) error {
			v, _ := proto.Marshal(ent(6, 1, "x"))
			return s.db.Set(logKey(7, 5), v, nil)
		}, "entry 5"},
		{"hole", func(s *Store) error { return s.db.Delete(logKey(7, 5), nil) }, "5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := vfs.NewMem()
			s := openFS(t, fs, func(o *Options) { o.CacheEntries = -1 })
			b := s.NewBatch()
			b.Append(7, ents(1, 10, 1))
			commit(t, b, true)
			if err := c.damage(s); err != nil {
				t.Fatal(err)
			}
			_, err := s.Group(7).Entries(1, 11, ^uint64(0))
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "group 7") || !strings.Contains(err.Error(), c.what) {
				t.Fatalf("Entries over damaged log = %v; want ErrCorrupt naming group 7 and %q", err, c.what)
			}
			if _, err := s.Group(7).Entries(1, 5, ^uint64(0)); err != nil {
				t.Fatalf("Entries before the damage: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			_, err = Open(Options{Dir: testDir, FS: fs})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "group 7") {
				t.Fatalf("Open over a damaged log = %v; want ErrCorrupt naming group 7", err)
			}
		})
	}
	t.Run("hard state", func(t *testing.T) {
		fs := vfs.NewMem()
		s := openFS(t, fs)
		if err := s.db.Set(groupKey(prefixHardState, 3), []byte{0x08}, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(Options{Dir: testDir, FS: fs}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "group 3") {
			t.Fatalf("Open with a corrupt hard state = %v; want ErrCorrupt naming group 3", err)
		}
	})
}

// After a failed write the store refuses every later write, and its view
// stays what it was before the failed commit.
func TestFailedWriteStopsWrites(t *testing.T) {
	tog := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.HasSuffix(op.Path, ".log") && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo) {
			return errorfs.ErrInjected
		}
		return nil
	})}
	s := openFS(t, errorfs.Wrap(vfs.NewMem(), tog))
	b := s.NewBatch()
	b.Append(1, ents(1, 5, 1))
	commit(t, b, true)

	tog.On()
	b.Append(1, ents(3, 8, 2))
	err := b.Commit(true)
	if !errors.Is(err, ErrFailed) || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("Commit with a failing fsync = %v; want ErrFailed wrapping the cause", err)
	}
	tog.Off()
	if last, _ := s.Group(1).LastIndex(); last != 5 {
		t.Fatalf("last index %d after a failed commit, want 5", last)
	}
	if term, _ := s.Group(1).Term(4); term != 1 {
		t.Fatalf("Term(4) = %d after a failed commit, want 1", term)
	}
	b.Append(1, ents(6, 6, 1))
	if err := b.Commit(true); !errors.Is(err, ErrFailed) {
		t.Fatalf("Commit after a failure = %v, want ErrFailed", err)
	}
	if err := s.Group(1).Compact(2); !errors.Is(err, ErrFailed) {
		t.Fatalf("Compact after a failure = %v, want ErrFailed", err)
	}
	if err := s.DeleteGroup(1); !errors.Is(err, ErrFailed) {
		t.Fatalf("DeleteGroup after a failure = %v, want ErrFailed", err)
	}
}

// After Close, writes and Pebble reads return ErrClosed; answers from
// memory still work.
func TestClosed(t *testing.T) {
	s := openFS(t, vfs.NewMem(), func(o *Options) { o.CacheEntries = -1 })
	b := s.NewBatch()
	b.Append(1, ents(1, 5, 1))
	commit(t, b, true)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	b.Append(1, ents(6, 6, 1))
	if err := b.Commit(true); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Group(1).Entries(1, 3, ^uint64(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Entries after Close = %v, want ErrClosed", err)
	}
	if err := s.Group(1).Compact(2); !errors.Is(err, ErrClosed) {
		t.Fatalf("Compact after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Groups(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Groups after Close = %v, want ErrClosed", err)
	}
	if kv.CodeOf(ErrClosed) != kv.CodeUnavailable {
		t.Fatalf("ErrClosed code %s, want UNAVAILABLE", kv.CodeOf(ErrClosed))
	}
	if last, err := s.Group(1).LastIndex(); last != 5 || err != nil {
		t.Fatalf("LastIndex after Close = %d, %v; want 5", last, err)
	}
}

// Readers on other goroutines (metrics, a snapshot sender) run while the
// node loop appends, truncates and compacts; run with -race. Every answer
// must be self-consistent.
func TestConcurrentReaders(t *testing.T) {
	s := openFS(t, vfs.NewMem(), func(o *Options) { o.CacheEntries = 16 })
	const groups, readers = 4, 2
	stop := make(chan struct{})
	errs := make(chan error, readers)
	var wg sync.WaitGroup
	var rounds atomic.Int64
	for r := range readers {
		wg.Go(func() {
			for round := 0; ; round++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := checkReader(s.Group(uint64(1 + (round+r)%groups))); err != nil {
					errs <- err
					return
				}
				rounds.Add(1)
				runtime.Gosched() // leave the node loop its share of a small machine
			}
		})
	}
	for i := uint64(1); i <= 100; i++ {
		b := s.NewBatch()
		for id := uint64(1); id <= groups; id++ {
			// Every 7th round rewrites the last three entries with a new term.
			lo, term := 3*i-2, i
			if i%7 == 0 {
				lo -= 3
			}
			b.Append(id, ents(lo, 3*i, term))
			b.SetHardState(id, hardState(term, 1, lo))
		}
		commit(t, b, i%2 == 0)
		// Let the readers run between commits too (they also run during them).
		for want := rounds.Load() + readers; rounds.Load() < want && len(errs) == 0; {
			runtime.Gosched()
		}
		if i%10 == 0 {
			for id := uint64(1); id <= groups; id++ {
				if err := s.Group(id).Compact(3*i - 15); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// checkReader reads g the way a goroutine other than the node loop may, and
// checks the answers are self-consistent.
func checkReader(g *GroupStorage) error {
	first, _ := g.FirstIndex()
	last, _ := g.LastIndex()
	if last+1 < first {
		return fmt.Errorf("group %d: first %d > last %d + 1", g.ID(), first, last)
	}
	if _, err := g.Term(last); err != nil && err != raft.ErrCompacted && err != raft.ErrUnavailable {
		return fmt.Errorf("group %d: Term(%d): %v", g.ID(), last, err)
	}
	if last >= first {
		lo := first + (last-first)/2
		es, err := g.Entries(lo, last+1, ^uint64(0))
		if err != nil && err != raft.ErrCompacted && err != raft.ErrUnavailable {
			return fmt.Errorf("group %d: Entries(%d, %d): %v", g.ID(), lo, last+1, err)
		}
		for k, e := range es {
			if e.GetIndex() != lo+uint64(k) {
				return fmt.Errorf("group %d: Entries(%d, %d) returned %s", g.ID(), lo, last+1, describe(es))
			}
		}
	}
	if _, _, err := g.InitialState(); err != nil {
		return err
	}
	if _, err := g.Snapshot(); err != nil && err != raft.ErrSnapshotTemporarilyUnavailable {
		return err
	}
	return nil
}
