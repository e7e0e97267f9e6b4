package raftlog

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The groups of the oracle test; the extremes check the key bounds.
var oracleGroups = []uint64{0, 1, 1 << 40, ^uint64(0)}

// oracle is what a group should look like: raft's own MemoryStorage for the
// log, plus what MemoryStorage does not keep (SetConfState, persistence).
type oracle struct {
	ms        *raft.MemoryStorage
	cs        *raftpb.ConfState // nil: none set
	persisted bool
}

// TestMatchesMemoryStorage runs random sequences of appends (with
// conflicting suffixes and compacted prefixes), compactions, snapshots,
// hard and conf states, reopens and group deletions against
// raft.MemoryStorage and checks that every raft.Storage answer is the same.
// It runs with the entry cache at its default, tiny and off, so that both
// the cache and Pebble serve reads.
func TestMatchesMemoryStorage(t *testing.T) {
	for _, c := range []struct {
		name  string
		cache int
	}{{"cache", 0}, {"tinycache", 3}, {"nocache", -1}} {
		t.Run(c.name, func(t *testing.T) {
			seeds := uint64(12)
			if raceEnabled {
				seeds = 3
			}
			for seed := uint64(1); seed <= seeds; seed++ {
				runOracle(t, seed, c.cache, 300)
			}
		})
	}
}

func runOracle(t *testing.T, seed uint64, cache, steps int) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	fs := vfs.NewMem()
	withCache := func(o *Options) { o.CacheEntries = cache; o.CacheBytes = 2 << 10 }
	s := openFS(t, fs, withCache)
	model := make(map[uint64]*oracle)
	for _, id := range oracleGroups {
		model[id] = &oracle{ms: raft.NewMemoryStorage()}
	}
	fail := func(step int, format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d step %d: "+format, append([]any{seed, step}, args...)...)
	}

	for step := range steps {
		switch r := rng.IntN(100); {
		case r < 3: // reopen
			if err := s.Close(); err != nil {
				fail(step, "close: %v", err)
			}
			s = openFS(t, fs, withCache)
		case r < 5: // delete a group
			id := oracleGroups[rng.IntN(len(oracleGroups))]
			if err := s.DeleteGroup(id); err != nil {
				fail(step, "delete group %d: %v", id, err)
			}
			model[id] = &oracle{ms: raft.NewMemoryStorage()}
		case r < 15: // compact
			id := oracleGroups[rng.IntN(len(oracleGroups))]
			m := model[id]
			first, _ := m.ms.FirstIndex()
			last, _ := m.ms.LastIndex()
			i := first - 1 + uint64(rng.IntN(int(last-first+2)))
			if rng.IntN(5) == 0 && first > 1 {
				i = uint64(rng.IntN(int(first))) // already compacted
			}
			want := m.ms.Compact(i)
			if got := s.Group(id).Compact(i); got != want {
				fail(step, "group %d: Compact(%d) = %v, want %v", id, i, got, want)
			}
		case r < 18: // a write that does not fit: refused, nothing changes
			id := oracleGroups[rng.IntN(len(oracleGroups))]
			m := model[id]
			last, _ := m.ms.LastIndex()
			first, _ := m.ms.FirstIndex()
			b := s.NewBatch()
			b.SetHardState(id, hardState(99, 99, 99)) // must not stick either
			if rng.IntN(2) == 0 || first == 1 {
				b.Append(id, ents(last+2, last+3, 1))
			} else {
				b.ApplySnapshot(id, &raftpb.SnapshotMetadata{Index: new(first - 1), Term: new(uint64(1)), ConfState: confState(1)})
			}
			if err := b.Commit(true); !errors.Is(err, ErrInvalidWrite) {
				fail(step, "group %d: commit of a misfit = %v, want ErrInvalidWrite", id, err)
			}
		default: // a batch of writes to several groups
			b := s.NewBatch()
			for range 1 + rng.IntN(5) {
				id := oracleGroups[rng.IntN(len(oracleGroups))]
				randomWrite(rng, b, id, model[id])
			}
			if err := b.Commit(rng.IntN(2) == 0); err != nil {
				fail(step, "commit: %v", err)
			}
		}
		for _, id := range oracleGroups {
			if err := compareGroup(rng, s.Group(id), model[id]); err != nil {
				fail(step, "group %d: %v", id, err)
			}
		}
		var want []uint64
		for _, id := range oracleGroups {
			if model[id].persisted {
				want = append(want, id)
			}
		}
		slices.Sort(want)
		if got, err := s.Groups(); err != nil || !slices.Equal(got, want) {
			fail(step, "Groups() = %v, %v; want %v", got, err, want)
		}
	}
}

// randomWrite adds one random write of group id to b and applies it to m.
func randomWrite(rng *rand.Rand, b *Batch, id uint64, m *oracle) {
	first, _ := m.ms.FirstIndex()
	last, _ := m.ms.LastIndex()
	termAt := func(i uint64) uint64 {
		t, err := m.ms.Term(i)
		if err != nil {
			panic(err)
		}
		return t
	}
	switch r := rng.IntN(100); {
	case r < 65: // append, maybe over a suffix, maybe from compacted indexes
		lo := first + uint64(rng.IntN(int(last-first+2)))
		if rng.IntN(3) == 0 {
			lo = last + 1
		}
		if rng.IntN(8) == 0 && first > 1 {
			lo = max(1, first-uint64(rng.IntN(3))) // overlaps the compacted prefix
		}
		term := termAt(max(lo-1, first-1)) + uint64(rng.IntN(3))
		var es []*raftpb.Entry
		for i := lo; i < lo+1+uint64(rng.IntN(6)); i++ {
			if rng.IntN(6) == 0 {
				term++
			}
			data := make([]byte, rng.IntN(120))
			for k := range data {
				data[k] = byte(rng.Uint32())
			}
			e := &raftpb.Entry{Index: new(i), Term: new(term), Data: data}
			if rng.IntN(2) == 0 {
				e.Type = raftpb.EntryNormal.Enum()
			}
			es = append(es, e)
		}
		if err := m.ms.Append(es); err != nil {
			panic(err)
		}
		b.Append(id, es)
		m.persisted = m.persisted || lo+uint64(len(es))-1 >= first
	case r < 80:
		hs := hardState(uint64(rng.IntN(10)), uint64(rng.IntN(4)), uint64(rng.IntN(int(last+1))))
		_ = m.ms.SetHardState(hs)
		b.SetHardState(id, hs)
		m.persisted = true
	case r < 90:
		cs := confState(uint64(1+rng.IntN(5)), uint64(6+rng.IntN(5)))
		if rng.IntN(2) == 0 {
			cs.Learners = []uint64{11}
		}
		b.SetConfState(id, cs)
		m.cs = cs
		m.persisted = true
	default: // snapshot past the compaction point, inside or past the log
		index := first + uint64(rng.IntN(int(last-first+6)))
		var term uint64
		if index <= last {
			term = termAt(index) + uint64(rng.IntN(2))
		} else {
			term = termAt(last) + uint64(rng.IntN(3))
		}
		meta := &raftpb.SnapshotMetadata{Index: new(index), Term: new(term), ConfState: confState(uint64(1 + rng.IntN(3)))}
		if err := m.ms.ApplySnapshot(&raftpb.Snapshot{Metadata: meta}); err != nil {
			panic(err)
		}
		b.ApplySnapshot(id, meta)
		m.cs = meta.ConfState
		m.persisted = true
	}
}

// compareGroup checks every raft.Storage answer of g against m.
func compareGroup(rng *rand.Rand, g *GroupStorage, m *oracle) error {
	first, _ := g.FirstIndex()
	wantFirst, _ := m.ms.FirstIndex()
	last, _ := g.LastIndex()
	wantLast, _ := m.ms.LastIndex()
	if first != wantFirst || last != wantLast {
		return errorf("FirstIndex, LastIndex = %d, %d; want %d, %d", first, last, wantFirst, wantLast)
	}
	for i := max(first, 3) - 3; i <= last+2; i++ {
		got, err := g.Term(i)
		want, wantErr := m.ms.Term(i)
		if got != want || err != wantErr {
			return errorf("Term(%d) = %d, %v; want %d, %v", i, got, err, want, wantErr)
		}
	}
	sizes := []uint64{0, 50, 200, 1000, ^uint64(0)}
	for range 4 {
		lo := max(first, 2) - 2 + uint64(rng.IntN(int(last-first+4)))
		lo = min(lo, last+1)
		hi := lo + uint64(rng.IntN(int(last+2-lo)))
		maxSize := sizes[rng.IntN(len(sizes))]
		got, err := g.Entries(lo, hi, maxSize)
		want, wantErr := m.ms.Entries(lo, hi, maxSize)
		if err != wantErr || !sameEntries(got, want) {
			return errorf("Entries(%d, %d, %d) = %s, %v; want %s, %v", lo, hi, maxSize, describe(got), err, describe(want), wantErr)
		}
	}
	if _, err := g.Entries(last+1, last+2, 0); err != raft.ErrUnavailable {
		return errorf("Entries past the last index: %v, want raft.ErrUnavailable", err)
	}

	hs, cs, err := g.InitialState()
	wantHS, _, _ := m.ms.InitialState()
	if err != nil || (hs == nil) != (wantHS == nil) ||
		hs.GetTerm() != wantHS.GetTerm() || hs.GetVote() != wantHS.GetVote() || hs.GetCommit() != wantHS.GetCommit() {
		return errorf("InitialState hard state = %v, %v; want %v", hs, err, wantHS)
	}
	wantCS := raftpb.EnsureConfState(proto.Clone(m.cs).(*raftpb.ConfState))
	if m.cs == nil {
		wantCS = raftpb.EnsureConfState(nil)
	}
	if !proto.Equal(cs, wantCS) {
		return errorf("InitialState conf state = %v; want %v", cs, wantCS)
	}

	snap, err := g.Snapshot()
	if first == 1 {
		if err != raft.ErrSnapshotTemporarilyUnavailable {
			return errorf("Snapshot before any compaction = %v, %v; want ErrSnapshotTemporarilyUnavailable", snap, err)
		}
	} else {
		wantTerm, _ := m.ms.Term(first - 1)
		md := snap.GetMetadata()
		if err != nil || md.GetIndex() != first-1 || md.GetTerm() != wantTerm || !proto.Equal(md.GetConfState(), wantCS) {
			return errorf("Snapshot = %v, %v; want index %d term %d conf state %v", snap, err, first-1, wantTerm, wantCS)
		}
	}
	return nil
}
