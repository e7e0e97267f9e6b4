package raftlog

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// TestCrash commits random multi-group batches, some synced and some not,
// with compactions in between, and at several points takes a crash image of
// the filesystem (all synced data plus a random part of the rest) and
// recovers from it. The recovered store must equal the state after some
// prefix of the commits — the same prefix for every group, so no batch is
// half there — and that prefix must include every commit made before the
// last synced one.
func TestCrash(t *testing.T) {
	seeds := int64(6)
	if raceEnabled {
		seeds = 2
	}
	for _, pct := range []int{0, 50, 90} {
		t.Run(fmt.Sprintf("unsynced%d%%", pct), func(t *testing.T) {
			for seed := int64(1); seed <= seeds; seed++ {
				runCrash(t, seed, pct)
			}
		})
	}
}

func runCrash(t *testing.T, seed int64, unsyncedPct int) {
	rng := rand.New(rand.NewPCG(uint64(seed), 0xc4a5))
	crashRNG := rand.New(rand.NewPCG(uint64(seed), 0xc1a5))
	fs := vfs.NewCrashableMem()
	s := openFS(t, fs, func(o *Options) { o.CacheEntries = 4 })
	model := make(map[uint64]*oracle)
	for _, id := range oracleGroups {
		model[id] = &oracle{ms: raft.NewMemoryStorage()}
	}
	// history[k] is the whole store after k steps; synced is the number of
	// steps a crash must not lose.
	history := []string{storeFingerprint(t, nil, model)}
	synced := 0

	for step := 1; step <= 120; step++ {
		if rng.IntN(5) == 0 {
			id := oracleGroups[rng.IntN(len(oracleGroups))]
			m := model[id]
			first, _ := m.ms.FirstIndex()
			last, _ := m.ms.LastIndex()
			if last >= first {
				i := first + uint64(rng.IntN(int(last-first+1)))
				if err := s.Group(id).Compact(i); err != nil {
					t.Fatalf("seed %d step %d: Compact(%d): %v", seed, step, i, err)
				}
				_ = m.ms.Compact(i)
			}
		} else {
			b := s.NewBatch()
			for range 1 + rng.IntN(4) {
				id := oracleGroups[rng.IntN(len(oracleGroups))]
				randomWrite(rng, b, id, model[id])
			}
			sync := rng.IntN(4) == 0
			if err := b.Commit(sync); err != nil {
				t.Fatalf("seed %d step %d: commit: %v", seed, step, err)
			}
			if sync {
				synced = step
			}
		}
		history = append(history, storeFingerprint(t, nil, model))

		if step%30 != 0 {
			continue
		}
		image := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: unsyncedPct, RNG: crashRNG})
		got := func() string {
			r, err := Open(Options{Dir: testDir, FS: image})
			if err != nil {
				t.Fatalf("seed %d step %d: open after crash: %v", seed, step, err)
			}
			defer r.Close()
			return storeFingerprint(t, r, nil)
		}()
		k := -1
		for i := len(history) - 1; i >= 0; i-- {
			if history[i] == got {
				k = i
				break
			}
		}
		switch {
		case k < 0:
			t.Fatalf("seed %d step %d: recovered state is no prefix of the commits:\n%s\nlast state:\n%s", seed, step, got, history[len(history)-1])
		case k < synced:
			t.Fatalf("seed %d step %d: recovered the state after step %d, but step %d was synced", seed, step, k, synced)
		}
		if unsyncedPct == 0 && testing.Verbose() {
			t.Logf("seed %d step %d: recovered step %d (synced %d)", seed, step, k, synced)
		}
	}
}

// storeFingerprint describes every group of the oracle test: of s if it is
// not nil, else of the model.
func storeFingerprint(t *testing.T, s *Store, model map[uint64]*oracle) string {
	t.Helper()
	var b strings.Builder
	for _, id := range oracleGroups {
		var st raft.Storage
		var hs *raftpb.HardState
		var cs *raftpb.ConfState
		if s != nil {
			g := s.Group(id)
			st = g
			hs, cs, _ = g.InitialState()
		} else {
			m := model[id]
			st = m.ms
			hs, _, _ = m.ms.InitialState()
			cs = raftpb.EnsureConfState(m.cs)
		}
		first, _ := st.FirstIndex()
		last, _ := st.LastIndex()
		term, err := st.Term(first - 1)
		if err != nil {
			t.Fatalf("group %d: Term(%d): %v", id, first-1, err)
		}
		fmt.Fprintf(&b, "group %d: first %d (after term %d) last %d hs %d/%d/%d voters %v learners %v\n", id, first, term, last,
			hs.GetTerm(), hs.GetVote(), hs.GetCommit(), cs.GetVoters(), cs.GetLearners())
		if last >= first {
			es, err := st.Entries(first, last+1, ^uint64(0))
			if err != nil {
				t.Fatalf("group %d: Entries: %v", id, err)
			}
			b.WriteString("  " + describe(es) + "\n")
		}
	}
	return b.String()
}
