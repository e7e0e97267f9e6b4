package raftlog

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// GroupStorage is the raft.Storage of one group. FirstIndex, LastIndex,
// Term, InitialState and Snapshot answer from memory and may be called from
// any goroutine; Entries may read Pebble.
type GroupStorage struct {
	store *Store
	id    uint64

	mu struct {
		sync.Mutex
		st    groupState
		cache entryCache
	}
}

var _ raft.Storage = (*GroupStorage)(nil)

// groupState is what a group keeps in memory. The log holds the entries
// truncIndex+1..last; the entry at truncIndex is gone except for its term.
type groupState struct {
	persisted  bool // something of the group is on disk
	truncIndex uint64
	truncTerm  uint64
	last       uint64
	// terms indexes the terms of truncIndex..last as runs: terms[k].term is
	// the term of every index from terms[k].index up to the next run's
	// start. terms[0].index == truncIndex. Terms change rarely, so this is
	// short and Term never needs Pebble.
	terms []termRun
	hs    *raftpb.HardState // nil until one is set
	cs    *raftpb.ConfState // nil until one is set
}

type termRun struct{ index, term uint64 }

func emptyState() groupState {
	return groupState{terms: []termRun{{}}}
}

// clone returns a copy that can be changed without touching st (hs and cs
// are replaced, never mutated).
func (st *groupState) clone() groupState {
	c := *st
	c.terms = slices.Clone(st.terms)
	return c
}

// term returns the term of index i, which must be in [truncIndex, last].
func (st *groupState) term(i uint64) uint64 {
	// The last run starting at or before i.
	k, found := slices.BinarySearchFunc(st.terms, i, func(r termRun, i uint64) int {
		switch {
		case r.index < i:
			return -1
		case r.index > i:
			return 1
		}
		return 0
	})
	if !found {
		k--
	}
	return st.terms[k].term
}

// truncateTerms forgets the terms of indexes after i (i >= truncIndex).
func (st *groupState) truncateTerms(i uint64) {
	n := len(st.terms)
	for n > 1 && st.terms[n-1].index > i {
		n--
	}
	st.terms = st.terms[:n]
}

// pushTerm records that index (the new last) has term.
func (st *groupState) pushTerm(index, term uint64) {
	if st.terms[len(st.terms)-1].term != term {
		st.terms = append(st.terms, termRun{index: index, term: term})
	}
}

// compactTerms drops the terms of indexes before i, keeping i's.
func (st *groupState) compactTerms(i uint64) {
	t := st.term(i)
	k := 0
	for k+1 < len(st.terms) && st.terms[k+1].index <= i {
		k++
	}
	st.terms = append([]termRun{{index: i, term: t}}, st.terms[k+1:]...)
}

// ID returns the group's id.
func (g *GroupStorage) ID() uint64 { return g.id }

// InitialState implements raft.Storage. The HardState is nil if none was
// ever saved; the ConfState is never nil.
func (g *GroupStorage) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var hs *raftpb.HardState
	if g.mu.st.hs != nil {
		hs = proto.Clone(g.mu.st.hs).(*raftpb.HardState)
	}
	return hs, g.confStateLocked(), nil
}

func (g *GroupStorage) confStateLocked() *raftpb.ConfState {
	if g.mu.st.cs == nil {
		return raftpb.EnsureConfState(nil)
	}
	return proto.Clone(g.mu.st.cs).(*raftpb.ConfState)
}

// FirstIndex implements raft.Storage.
func (g *GroupStorage) FirstIndex() (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mu.st.truncIndex + 1, nil
}

// LastIndex implements raft.Storage.
func (g *GroupStorage) LastIndex() (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mu.st.last, nil
}

// Term implements raft.Storage: the term of entry i for i in
// [FirstIndex()-1, LastIndex()], raft.ErrCompacted below that range and
// raft.ErrUnavailable above it.
func (g *GroupStorage) Term(i uint64) (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := &g.mu.st
	if i < st.truncIndex {
		return 0, raft.ErrCompacted
	}
	if i > st.last {
		return 0, raft.ErrUnavailable
	}
	return st.term(i), nil
}

// Snapshot implements raft.Storage with metadata only: the compaction point
// (FirstIndex()-1 and its term) and the latest conf state. The caller that
// sends the snapshot attaches the state machine's data, and since that data
// reflects its applied index rather than the compaction point, it must set
// Metadata.Index and Term to the data's applied index and term (the conf
// state here is the one of the last applied conf change, which matches).
// Before the first compaction raft has every entry it could need, so it is
// raft.ErrSnapshotTemporarilyUnavailable.
func (g *GroupStorage) Snapshot() (*raftpb.Snapshot, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.st.truncIndex == 0 {
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	return &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
		Index:     new(g.mu.st.truncIndex),
		Term:      new(g.mu.st.truncTerm),
		ConfState: g.confStateLocked(),
	}}, nil
}

// Entries implements raft.Storage: the entries [lo, hi), at most maxSize
// bytes of them (encoded size) but at least one. It is raft.ErrCompacted if lo
// was compacted away and raft.ErrUnavailable if hi is past the last index or
// the log is empty.
func (g *GroupStorage) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	if ents, done, err := g.entriesFromMemory(lo, hi, maxSize); done {
		return ents, err
	}
	// Not cached: read Pebble with writers held off, so that the log on
	// disk is the one the bounds were checked against.
	s := g.store
	s.write.RLock()
	defer s.write.RUnlock()
	if ents, done, err := g.entriesFromMemory(lo, hi, maxSize); done {
		return ents, err
	}
	if err := s.readableLocked(); err != nil {
		return nil, fmt.Errorf("raftlog: group %d: entries [%d, %d): %w", g.id, lo, hi, err)
	}
	return g.readLog(lo, hi, maxSize)
}

// entriesFromMemory answers Entries from the bounds and the cache if it can
// (done), and otherwise leaves it to Pebble.
func (g *GroupStorage) entriesFromMemory(lo, hi, maxSize uint64) (ents []*raftpb.Entry, done bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := &g.mu.st
	switch {
	case lo <= st.truncIndex:
		return nil, true, raft.ErrCompacted
	case hi > st.last+1:
		return nil, true, raft.ErrUnavailable
	case st.last == st.truncIndex:
		return nil, true, raft.ErrUnavailable
	case lo > hi:
		return nil, true, fmt.Errorf("raftlog: group %d: entries [%d, %d): bad range", g.id, lo, hi)
	case lo == hi:
		return []*raftpb.Entry{}, true, nil
	}
	if ents, ok := g.mu.cache.get(lo, hi, maxSize); ok {
		return ents, true, nil
	}
	return nil, false, nil
}

// readLog reads entries [lo, hi) from Pebble, which must hold all of them.
func (g *GroupStorage) readLog(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	it, err := g.store.db.NewIter(&pebble.IterOptions{
		LowerBound: logKey(g.id, lo),
		UpperBound: logKey(g.id, hi),
	})
	if err != nil {
		return nil, fmt.Errorf("raftlog: group %d: entries [%d, %d): %w", g.id, lo, hi, err)
	}
	ents := make([]*raftpb.Entry, 0, min(hi-lo, 256))
	var size uint64
	next := lo
	for ok := it.First(); ok; ok = it.Next() {
		_, index, _ := parseLogKey(it.Key())
		if index != next {
			break // a hole; reported below
		}
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("raftlog: group %d: entry %d: %w", g.id, index, err)
		}
		if len(ents) > 0 && size+uint64(len(v)) > maxSize {
			_ = it.Close()
			return ents, nil
		}
		e := &raftpb.Entry{}
		if err := proto.Unmarshal(v, e); err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("raftlog: group %d: entry %d: %w: %w", g.id, index, ErrCorrupt, err)
		}
		if e.GetIndex() != index {
			_ = it.Close()
			return nil, fmt.Errorf("raftlog: group %d: entry %d: %w: it says index %d", g.id, index, ErrCorrupt, e.GetIndex())
		}
		size += uint64(len(v))
		ents = append(ents, e)
		next++
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("raftlog: group %d: entries [%d, %d): %w", g.id, lo, hi, err)
	}
	if next != hi {
		return nil, fmt.Errorf("raftlog: group %d: %w: entry %d missing", g.id, ErrCorrupt, next)
	}
	return ents, nil
}

// Compact discards the entries up to and including index, which must not be
// past the last index (nor, for raft's sake, past the applied index); index's
// term is kept, and FirstIndex becomes index+1. It is raft.ErrCompacted if
// index is already compacted. It writes at once, unsynced: losing a
// compaction in a crash only brings entries back.
func (g *GroupStorage) Compact(index uint64) error {
	s := g.store
	s.write.Lock()
	defer s.write.Unlock()
	if err := s.writableLocked(); err != nil {
		return fmt.Errorf("raftlog: group %d: compact to %d: %w", g.id, index, err)
	}
	g.mu.Lock()
	st := g.mu.st.clone()
	g.mu.Unlock()
	if index <= st.truncIndex {
		return raft.ErrCompacted
	}
	if index > st.last {
		return fmt.Errorf("raftlog: group %d: compact to %d: %w: last index is %d", g.id, index, ErrInvalidWrite, st.last)
	}
	term := st.term(index)
	b := s.db.NewBatch()
	defer b.Close()
	err := errors.Join(
		b.DeleteRange(logKey(g.id, st.truncIndex+1), logKey(g.id, index+1), nil),
		b.Set(groupKey(prefixTrunc, g.id), encodeTrunc(index, term), nil),
	)
	if err == nil {
		err = s.applyLocked(b, false)
	}
	if err != nil {
		return fmt.Errorf("raftlog: group %d: compact to %d: %w", g.id, index, err)
	}
	st.compactTerms(index)
	st.truncIndex, st.truncTerm = index, term
	st.persisted = true
	g.mu.Lock()
	g.mu.st = st
	g.mu.cache.compact(index)
	g.mu.Unlock()
	return nil
}
