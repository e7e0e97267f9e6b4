package raftlog

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

const testDir = "/raftlog"

// openFS opens a store in testDir on fs and closes it when the test ends
// (closing twice is harmless).
func openFS(t testing.TB, fs vfs.FS, opts ...func(*Options)) *Store {
	t.Helper()
	o := Options{Dir: testDir, FS: fs}
	for _, f := range opts {
		f(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func ent(index, term uint64, data string) *raftpb.Entry {
	e := &raftpb.Entry{Index: new(index), Term: new(term), Type: raftpb.EntryNormal.Enum()}
	if data != "" {
		e.Data = []byte(data)
	}
	return e
}

// ents returns entries lo..hi (inclusive) of term, with data naming them.
func ents(lo, hi, term uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for i := lo; i <= hi; i++ {
		out = append(out, ent(i, term, fmt.Sprintf("e%d.t%d", i, term)))
	}
	return out
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
}

func confState(voters ...uint64) *raftpb.ConfState {
	return raftpb.EnsureConfState(&raftpb.ConfState{Voters: voters})
}

func commit(t testing.TB, b *Batch, sync bool) {
	t.Helper()
	if err := b.Commit(sync); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

// describe prints entries compactly for failure messages.
func describe(es []*raftpb.Entry) string {
	s := "["
	for k, e := range es {
		if k > 0 {
			s += " "
		}
		s += fmt.Sprintf("%d/%d:%q", e.GetIndex(), e.GetTerm(), e.GetData())
	}
	return s + "]"
}

func sameEntries(a, b []*raftpb.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !proto.Equal(a[k], b[k]) {
			return false
		}
	}
	return true
}

// mustEntries reads the whole log of g.
func mustEntries(t testing.TB, g *GroupStorage) []*raftpb.Entry {
	t.Helper()
	first, _ := g.FirstIndex()
	last, _ := g.LastIndex()
	if last < first {
		return nil
	}
	es, err := g.Entries(first, last+1, ^uint64(0))
	if err != nil {
		t.Fatalf("group %d: entries [%d, %d]: %v", g.ID(), first, last, err)
	}
	return es
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
