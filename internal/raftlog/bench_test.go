package raftlog

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
)

// BenchmarkCommit measures one node-loop round: a synced batch with one
// 300-byte entry and a hard state for each of 1 or 16 groups, on the real
// filesystem (so it includes the fsync).
//
//	go test -run '^$' -bench Commit ./internal/raftlog/
func BenchmarkCommit(b *testing.B) {
	for _, groups := range []int{1, 16} {
		b.Run(fmt.Sprintf("groups=%d", groups), func(b *testing.B) {
			s, err := Open(Options{Dir: b.TempDir(), FS: vfs.Default})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			data := make([]byte, 300)
			batch := s.NewBatch()
			b.SetBytes(int64(groups * len(data)))
			b.ResetTimer()
			for i := uint64(1); i <= uint64(b.N); i++ {
				for g := uint64(1); g <= uint64(groups); g++ {
					batch.Append(g, []*raftpb.Entry{{Index: new(i), Term: new(uint64(1)), Data: data}})
					batch.SetHardState(g, hardState(1, 1, i))
				}
				if err := batch.Commit(true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
