package raftlog

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Batch collects the writes of any number of groups, to be committed
// together. Writes to one group apply in the order they were added. A Batch
// is not safe for concurrent use; it can be reused after Commit.
//
// Entries, hard states and conf states passed in are retained (entries are
// served back by Entries), so the caller must not mutate them afterwards;
// raft's Ready already promises that for its entries.
type Batch struct {
	s   *Store
	ops []op
}

type opKind uint8

const (
	opAppend opKind = iota
	opHardState
	opConfState
	opSnapshot
)

type op struct {
	kind  opKind
	group uint64
	ents  []*raftpb.Entry
	hs    *raftpb.HardState
	cs    *raftpb.ConfState
	meta  *raftpb.SnapshotMetadata
}

// NewBatch returns an empty Batch of s.
func (s *Store) NewBatch() *Batch { return &Batch{s: s} }

// Append appends ents (consecutive indexes) to group's log. Entries at
// indexes from ents[0]'s on replace the existing suffix of the log (raft's
// rule: a conflicting suffix is truncated); entries at compacted indexes are
// ignored. ents[0] must be at most one past the last index.
func (b *Batch) Append(group uint64, ents []*raftpb.Entry) {
	if len(ents) == 0 {
		return
	}
	b.ops = append(b.ops, op{kind: opAppend, group: group, ents: ents})
}

// SetHardState saves group's hard state.
func (b *Batch) SetHardState(group uint64, hs *raftpb.HardState) {
	b.ops = append(b.ops, op{kind: opHardState, group: group, hs: hs})
}

// SetConfState saves group's conf state; the raftstore calls it when it
// applies a conf change.
func (b *Batch) SetConfState(group uint64, cs *raftpb.ConfState) {
	b.ops = append(b.ops, op{kind: opConfState, group: group, cs: cs})
}

// ApplySnapshot discards group's whole log: the log now starts after
// meta.Index (whose term is meta.Term) and the conf state becomes
// meta.ConfState. meta.Index must be past the current compaction point
// (unless both are 0: a bootstrap that only sets the conf state).
func (b *Batch) ApplySnapshot(group uint64, meta *raftpb.SnapshotMetadata) {
	b.ops = append(b.ops, op{kind: opSnapshot, group: group, meta: meta})
}

// Empty reports whether the batch holds no writes.
func (b *Batch) Empty() bool { return len(b.ops) == 0 }

// Reset empties the batch.
func (b *Batch) Reset() {
	clear(b.ops)
	b.ops = b.ops[:0]
}

// staged is one group's part of a commit: its state as it will be after the
// commit, and the appends and snapshots to replay on its cache.
type staged struct {
	g       *GroupStorage
	st      groupState
	effects []effect
}

type effect struct {
	snapshot bool
	ents     []*raftpb.Entry
	sizes    []uint64
}

// Commit writes the whole batch as one Pebble batch (synced to disk before
// it returns if sync), then updates the groups' in-memory state; the batch
// is reset whatever the outcome. A write that does not fit a group's log
// fails the commit with ErrInvalidWrite before anything is written. If
// Pebble fails, the store refuses every later write (ErrFailed).
func (b *Batch) Commit(sync bool) error {
	defer b.Reset()
	if b.Empty() {
		return nil
	}
	s := b.s
	s.write.Lock()
	defer s.write.Unlock()
	if err := s.writableLocked(); err != nil {
		return fmt.Errorf("raftlog: commit: %w", err)
	}
	pb := s.db.NewBatch()
	defer pb.Close()

	groups := make(map[uint64]*staged)
	var order []*staged
	w := batchWriter{pb: pb}
	for _, o := range b.ops {
		sg, ok := groups[o.group]
		if !ok {
			g := s.Group(o.group)
			g.mu.Lock()
			sg = &staged{g: g, st: g.mu.st.clone()}
			g.mu.Unlock()
			groups[o.group] = sg
			order = append(order, sg)
		}
		if err := w.stage(sg, o); err != nil {
			return fmt.Errorf("raftlog: commit: group %d: %w", o.group, err)
		}
	}
	if w.err != nil {
		return fmt.Errorf("raftlog: commit: %w", w.err)
	}
	if err := s.applyLocked(pb, sync); err != nil {
		return fmt.Errorf("raftlog: commit of %d groups: %w", len(order), err)
	}
	for _, sg := range order {
		g := sg.g
		g.mu.Lock()
		g.mu.st = sg.st
		for _, e := range sg.effects {
			if e.snapshot {
				g.mu.cache.clear()
			} else {
				g.mu.cache.append(e.ents, e.sizes)
			}
		}
		g.mu.Unlock()
	}
	return nil
}

// batchWriter turns ops into Pebble writes, reusing its buffers.
type batchWriter struct {
	pb       *pebble.Batch
	key, val []byte
	err      error // the first Pebble batch error
}

func (w *batchWriter) set(key, value []byte) {
	if err := w.pb.Set(key, value, nil); err != nil && w.err == nil {
		w.err = err
	}
}

func (w *batchWriter) deleteRange(start, end []byte) {
	if err := w.pb.DeleteRange(start, end, nil); err != nil && w.err == nil {
		w.err = err
	}
}

func (w *batchWriter) marshal(m proto.Message) ([]byte, error) {
	var err error
	w.val, err = proto.MarshalOptions{}.MarshalAppend(w.val[:0], m)
	return w.val, err
}

// stage checks o against sg's state, adds its Pebble writes and advances
// sg's state.
func (w *batchWriter) stage(sg *staged, o op) error {
	st, id := &sg.st, sg.g.id
	switch o.kind {
	case opAppend:
		ents := o.ents
		first := ents[0].GetIndex()
		for k, e := range ents {
			if e.GetIndex() != first+uint64(k) {
				return fmt.Errorf("%w: append: entry %d follows %d", ErrInvalidWrite, e.GetIndex(), first+uint64(k)-1)
			}
		}
		if first == 0 {
			return fmt.Errorf("%w: append: entry index 0", ErrInvalidWrite)
		}
		last := first + uint64(len(ents)) - 1
		if last <= st.truncIndex {
			return nil // all compacted
		}
		if first <= st.truncIndex {
			ents = ents[st.truncIndex+1-first:]
			first = st.truncIndex + 1
		}
		if first > st.last+1 {
			return fmt.Errorf("%w: append at %d leaves a gap after last index %d", ErrInvalidWrite, first, st.last)
		}
		sizes := make([]uint64, len(ents))
		for k, e := range ents {
			v, err := w.marshal(e)
			if err != nil {
				return fmt.Errorf("append: entry %d: %w", e.GetIndex(), err)
			}
			sizes[k] = uint64(len(v))
			w.key = appendLogKey(w.key[:0], id, e.GetIndex())
			w.set(w.key, v)
		}
		if last < st.last {
			w.deleteRange(logKey(id, last+1), logKey(id, st.last+1))
		}
		st.truncateTerms(first - 1)
		for _, e := range ents {
			st.pushTerm(e.GetIndex(), e.GetTerm())
		}
		st.last = last
		st.persisted = true
		sg.effects = append(sg.effects, effect{ents: ents, sizes: sizes})
	case opHardState:
		v, err := w.marshal(o.hs)
		if err != nil {
			return fmt.Errorf("hard state: %w", err)
		}
		w.set(groupKey(prefixHardState, id), v)
		st.hs = proto.Clone(o.hs).(*raftpb.HardState)
		st.persisted = true
	case opConfState:
		cs := raftpb.EnsureConfState(proto.Clone(o.cs).(*raftpb.ConfState))
		v, err := w.marshal(cs)
		if err != nil {
			return fmt.Errorf("conf state: %w", err)
		}
		w.set(groupKey(prefixConf, id), v)
		st.cs = cs
		st.persisted = true
	case opSnapshot:
		index, term := o.meta.GetIndex(), o.meta.GetTerm()
		if st.truncIndex != 0 && index <= st.truncIndex {
			return fmt.Errorf("%w: %w: snapshot at %d, log compacted to %d", ErrInvalidWrite, raft.ErrSnapOutOfDate, index, st.truncIndex)
		}
		cs := raftpb.EnsureConfState(nil)
		if o.meta.GetConfState() != nil {
			cs = raftpb.EnsureConfState(proto.Clone(o.meta.GetConfState()).(*raftpb.ConfState))
		}
		v, err := w.marshal(cs)
		if err != nil {
			return fmt.Errorf("snapshot conf state: %w", err)
		}
		if st.last > st.truncIndex {
			w.deleteRange(logKey(id, st.truncIndex+1), logKey(id, st.last+1))
		}
		w.set(groupKey(prefixConf, id), v)
		w.set(groupKey(prefixTrunc, id), encodeTrunc(index, term))
		*st = groupState{persisted: true, truncIndex: index, truncTerm: term, last: index,
			terms: []termRun{{index: index, term: term}}, hs: st.hs, cs: cs}
		sg.effects = append(sg.effects, effect{snapshot: true})
	default:
		return errors.New("raftlog: unknown batch op")
	}
	return nil
}
