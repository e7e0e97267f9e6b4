package raftlog

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// Errors of the store. Raft's own sentinels (raft.ErrCompacted, ...) are
// returned where raft expects them; these are for the store's callers.
var (
	// ErrClosed is returned by operations on a closed Store.
	ErrClosed = kv.Errorf(kv.CodeUnavailable, "raftlog: store is closed")
	// ErrFailed is returned by every write after a write failed: the disk
	// may then hold more than the in-memory view, so the Store must be
	// reopened (which recovers from what is on disk).
	ErrFailed = kv.Errorf(kv.CodeInternal, "raftlog: store failed after a write error")
	// ErrCorrupt reports stored data that cannot be decoded or a log with a
	// hole in it.
	ErrCorrupt = kv.Errorf(kv.CodeInternal, "raftlog: corrupt log data")
	// ErrInvalidWrite reports a write that does not fit a group's log: an
	// append leaving a gap, an out-of-date snapshot, a compaction beyond the
	// last index. It is a bug in the caller; nothing was written.
	ErrInvalidWrite = kv.Errorf(kv.CodeInternal, "raftlog: write does not fit the log")
)

// Options configure a Store.
type Options struct {
	// Dir is the Pebble directory; required.
	Dir string
	// FS is the filesystem; nil means the operating system's.
	FS vfs.FS
	// Logger receives Pebble's events; nil discards them.
	Logger *slog.Logger
	// CacheEntries bounds the recent entries each group keeps decoded in
	// memory for Entries; default 1024, negative disables the cache.
	CacheEntries int
	// CacheBytes bounds the encoded size of each group's cached entries;
	// default 512 KiB.
	CacheBytes int64
}

const (
	defaultCacheEntries = 1024
	defaultCacheBytes   = 512 << 10
)

func (o *Options) applyDefaults() error {
	if o.Dir == "" {
		return errors.New("raftlog: Options.Dir is required")
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CacheEntries == 0 {
		o.CacheEntries = defaultCacheEntries
	}
	if o.CacheEntries < 0 {
		o.CacheEntries = 0
	}
	if o.CacheBytes <= 0 {
		o.CacheBytes = defaultCacheBytes
	}
	return nil
}

// Store keeps the Raft logs of many groups in one Pebble database. It is safe
// for concurrent use; see the package documentation for who may call what.
type Store struct {
	opts Options
	db   *pebble.DB

	// write serializes writers (Batch.Commit, Compact, DeleteGroup, Close)
	// and is held across their Pebble write; readers that go to Pebble hold
	// it shared so that disk and memory agree while they read.
	write struct {
		sync.RWMutex
		closed bool
		failed error // the first write error; set once
	}
	groups struct {
		sync.Mutex
		m map[uint64]*GroupStorage
	}
}

// Open opens (creating if needed) the store in opts.Dir and recovers the
// state of every group from it.
func Open(opts Options) (*Store, error) {
	if err := opts.applyDefaults(); err != nil {
		return nil, err
	}
	db, err := pebble.Open(opts.Dir, &pebble.Options{
		FS:     opts.FS,
		Logger: pebbleLogger{opts.Logger},
	})
	if err != nil {
		return nil, fmt.Errorf("raftlog: open %s: %w", opts.Dir, err)
	}
	s := &Store{opts: opts, db: db}
	s.groups.m = make(map[uint64]*GroupStorage)
	if err := s.recover(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("raftlog: open %s: %w", opts.Dir, err)
	}
	return s, nil
}

// Close syncs the WAL and closes Pebble. Reads answered from memory keep
// working afterwards; everything that needs Pebble returns ErrClosed.
func (s *Store) Close() error {
	s.write.Lock()
	defer s.write.Unlock()
	if s.write.closed {
		return nil
	}
	s.write.closed = true
	var errs []error
	if s.write.failed == nil {
		// Commit(false) batches are made durable by a clean shutdown.
		if err := s.syncWALLocked(); err != nil {
			errs = append(errs, fmt.Errorf("raftlog: close: sync: %w", err))
		}
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("raftlog: close: %w", err))
	}
	return errors.Join(errs...)
}

// Groups lists the groups that have persisted state, in increasing order.
func (s *Store) Groups() ([]uint64, error) {
	s.write.RLock()
	closed := s.write.closed
	s.write.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	s.groups.Lock()
	all := make([]*GroupStorage, 0, len(s.groups.m))
	for _, g := range s.groups.m {
		all = append(all, g)
	}
	s.groups.Unlock()
	var ids []uint64
	for _, g := range all {
		g.mu.Lock()
		if g.mu.st.persisted {
			ids = append(ids, g.id)
		}
		g.mu.Unlock()
	}
	slices.Sort(ids)
	return ids, nil
}

// Group returns the raft.Storage of group id, creating an empty in-memory
// state if the group has none; nothing is written until a Batch commits. It
// returns the same *GroupStorage for the life of the Store.
func (s *Store) Group(id uint64) *GroupStorage {
	s.groups.Lock()
	defer s.groups.Unlock()
	return s.groupLocked(id)
}

func (s *Store) groupLocked(id uint64) *GroupStorage {
	g, ok := s.groups.m[id]
	if !ok {
		g = &GroupStorage{store: s, id: id}
		g.mu.st = emptyState()
		g.mu.cache = newEntryCache(s.opts.CacheEntries, uint64(s.opts.CacheBytes))
		s.groups.m[id] = g
	}
	return g
}

// DeleteGroup removes everything stored for group id (its replica left this
// node) and syncs the removal. The group's GroupStorage stays valid and reads
// as a new, empty group.
func (s *Store) DeleteGroup(id uint64) error {
	s.write.Lock()
	defer s.write.Unlock()
	if err := s.writableLocked(); err != nil {
		return fmt.Errorf("raftlog: delete group %d: %w", id, err)
	}
	b := s.db.NewBatch()
	defer b.Close()
	err := errors.Join(
		b.DeleteRange(logKey(id, 0), logEnd(id), nil),
		b.Delete(groupKey(prefixHardState, id), nil),
		b.Delete(groupKey(prefixTrunc, id), nil),
		b.Delete(groupKey(prefixConf, id), nil),
	)
	if err != nil {
		return fmt.Errorf("raftlog: delete group %d: %w", id, err)
	}
	if err := s.applyLocked(b, true); err != nil {
		return fmt.Errorf("raftlog: delete group %d: %w", id, err)
	}
	g := s.Group(id)
	g.mu.Lock()
	g.mu.st = emptyState()
	g.mu.cache.clear()
	g.mu.Unlock()
	return nil
}

// writableLocked reports why the store cannot take a write, if it cannot.
func (s *Store) writableLocked() error {
	if s.write.closed {
		return ErrClosed
	}
	if s.write.failed != nil {
		return fmt.Errorf("%w: %w", ErrFailed, s.write.failed)
	}
	return nil
}

// readableLocked reports why Pebble cannot be read, if it cannot. After a
// failed write Pebble may be ahead of memory, so reads are refused too.
func (s *Store) readableLocked() error {
	return s.writableLocked()
}

// applyLocked writes b; on error the store is marked failed. A synced write
// goes through SyncWait so that a failed fsync comes back as an error
// (Pebble's Apply treats it as fatal).
func (s *Store) applyLocked(b *pebble.Batch, sync bool) error {
	var err error
	if sync {
		err = s.db.ApplyNoSyncWait(b, pebble.Sync)
		if err == nil {
			err = b.SyncWait()
		}
	} else {
		err = s.db.Apply(b, pebble.NoSync)
	}
	if err != nil {
		s.write.failed = err
		return fmt.Errorf("%w: %w", ErrFailed, err)
	}
	return nil
}

func (s *Store) syncWALLocked() error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.LogData(nil, nil); err != nil {
		return err
	}
	return s.applyLocked(b, true)
}

// recover rebuilds every group's in-memory state from Pebble: first the
// per-group records, then one pass over all logs that checks each is
// contiguous and indexes its terms.
func (s *Store) recover() error {
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixHardState},
		UpperBound: []byte{prefixConf + 1},
	})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		prefix, id, ok := parseGroupKey(it.Key())
		if !ok {
			_ = it.Close()
			return fmt.Errorf("%w: unexpected key %x", ErrCorrupt, it.Key())
		}
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return err
		}
		st := &s.groupLocked(id).mu.st
		st.persisted = true
		switch prefix {
		case prefixHardState:
			hs := &raftpb.HardState{}
			err = proto.Unmarshal(v, hs)
			st.hs = hs
		case prefixTrunc:
			st.truncIndex, st.truncTerm, err = decodeTrunc(v)
			st.last = st.truncIndex
			st.terms = []termRun{{index: st.truncIndex, term: st.truncTerm}}
		case prefixConf:
			cs := &raftpb.ConfState{}
			err = proto.Unmarshal(v, cs)
			st.cs = raftpb.EnsureConfState(cs)
		}
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("group %d: record %#x: %w: %w", id, prefix, ErrCorrupt, err)
		}
	}
	if err := it.Close(); err != nil {
		return err
	}

	it, err = s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixLog},
		UpperBound: []byte{prefixLog + 1},
	})
	if err != nil {
		return err
	}
	var st *groupState
	var cur uint64
	for ok := it.First(); ok; ok = it.Next() {
		id, index, ok := parseLogKey(it.Key())
		if !ok {
			_ = it.Close()
			return fmt.Errorf("%w: unexpected key %x", ErrCorrupt, it.Key())
		}
		if st == nil || id != cur {
			st, cur = &s.groupLocked(id).mu.st, id
			st.persisted = true
		}
		if index != st.last+1 {
			_ = it.Close()
			return fmt.Errorf("group %d: %w: entry %d follows %d (truncated at %d)", id, ErrCorrupt, index, st.last, st.truncIndex)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return err
		}
		term, vIndex, err := entryHeader(v)
		if err == nil && vIndex != index {
			err = fmt.Errorf("entry says index %d", vIndex)
		}
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("group %d: entry %d: %w: %w", id, index, ErrCorrupt, err)
		}
		st.pushTerm(index, term)
		st.last = index
	}
	return it.Close()
}

// pebbleLogger routes Pebble's messages into slog; its routine chatter goes
// to Debug.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "raftlog/pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "raftlog/pebble")
}

// Fatalf is called by Pebble on a broken invariant; it must not return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "raftlog/pebble")
	panic(fmt.Sprintf("raftlog: pebble: "+format, args...))
}
