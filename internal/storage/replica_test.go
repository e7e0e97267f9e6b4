package storage

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/placement"
)

func TestRevisionMarksAndApplyAll(t *testing.T) {
	clock := newFakeClock()
	fs := vfs.NewMem()
	s := openTest(t, fs, clock)
	ctx := context.Background()
	var batches []kv.Batch
	for i := 1; i <= 3; i++ {
		batches = append(batches, kv.Batch{
			Ops:      []kv.Op{{Kind: kv.OpSet, Namespace: "n", Key: []byte("k"), Value: []byte(fmt.Sprint(i))}},
			Revision: uint64(100 * i),
			Marks:    []kv.Mark{{Key: []byte("applied/7"), Value: []byte(fmt.Sprint(i))}},
		})
	}
	res, err := s.ApplyAll(ctx, batches)
	if err != nil {
		t.Fatal(err)
	}
	if res[0][0].Cur.Version != 100 || res[2][0].Cur.Version != 300 || res[2][0].Cur.Created != 100 {
		t.Fatalf("versions: %+v / %+v", res[0][0].Cur, res[2][0].Cur)
	}
	// A local write still gets the store's own next revision, not 301.
	local := apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("x"), Value: []byte("y")})
	if local.Cur.Version != 1 {
		t.Fatalf("local revision %d, want 1", local.Cur.Version)
	}
	s.Close()
	s = openTest(t, fs, clock)
	defer s.Close()
	if m, ok, err := s.Mark([]byte("applied/7")); err != nil || !ok || string(m) != "3" {
		t.Fatalf("mark after reopen: %q %v %v", m, ok, err)
	}
	if _, ok, _ := s.Mark([]byte("applied/8")); ok {
		t.Fatal("absent mark found")
	}
	v, ok, err := s.Get(ctx, "n", []byte("k"))
	if err != nil || !ok || v.Version != 300 || string(v.Data) != "3" {
		t.Fatalf("get: %+v %v %v", v, ok, err)
	}
}

// A shard snapshot moved by ShardRows + shard flush + OpRestore reproduces
// the shard exactly and leaves other shards alone.
func TestShardSnapshotRoundTrip(t *testing.T) {
	clock := newFakeClock()
	ctx := context.Background()
	src := openTest(t, vfs.NewMem(), clock)
	defer src.Close()
	dst := openTest(t, vfs.NewMem(), clock)
	defer dst.Close()
	const shards, shard = 4, 1
	now := clock.Now().UnixMilli()
	for i := 0; i < 200; i++ {
		op := kv.Op{Kind: kv.OpSet, Namespace: "n", Key: []byte(fmt.Sprintf("k%03d", i)), Value: []byte(fmt.Sprint(i))}
		if i%7 == 0 {
			op.ExpireAt = now + 60_000
		}
		if _, err := src.Apply(ctx, kv.Batch{Ops: []kv.Op{op}}); err != nil {
			t.Fatal(err)
		}
		// dst has stale rows of every shard, some of which the snapshot
		// must delete.
		if i%3 == 0 {
			op.Value = []byte("stale")
			if _, err := dst.Apply(ctx, kv.Batch{Ops: []kv.Op{op}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	view, err := src.View()
	if err != nil {
		t.Fatal(err)
	}
	b := kv.Batch{Ops: []kv.Op{{Kind: kv.OpFlush, Namespace: "n"}}, Shard: shard, Shards: shards}
	want := map[string]kv.Value{}
	err = view.ShardRows(ctx, "n", shard, shards, func(key []byte, v kv.Value) error {
		v.Data = append([]byte(nil), v.Data...) // only valid during the call
		want[string(key)] = v
		b.Ops = append(b.Ops, kv.Op{Kind: kv.OpRestore, Namespace: "n", Key: append([]byte(nil), key...), Restored: v})
		return nil
	})
	view.Close()
	if err != nil || len(want) == 0 {
		t.Fatalf("rows %d, err %v", len(want), err)
	}
	if _, err := dst.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("k%03d", i)
		got, ok, err := dst.Get(ctx, "n", []byte(key))
		if err != nil {
			t.Fatal(err)
		}
		if placement.ShardOf("n", []byte(key), shards) == shard {
			w := want[key]
			if !ok || string(got.Data) != string(w.Data) || got.Version != w.Version || got.ExpireAt != w.ExpireAt || got.Timestamp != w.Timestamp {
				t.Fatalf("%s: got %+v %v want %+v", key, got, ok, w)
			}
			continue
		}
		if ok != (i%3 == 0) || (ok && string(got.Data) != "stale") {
			t.Fatalf("%s outside the shard changed: %+v %v", key, got, ok)
		}
	}
	// Counters stay exact: every src row of the shard plus dst's stale rows
	// of other shards.
	stale := 0
	for i := 0; i < 200; i += 3 {
		if placement.ShardOf("n", []byte(fmt.Sprintf("k%03d", i)), shards) != shard {
			stale++
		}
	}
	for _, st := range dst.Keyspace() {
		if st.Name == "n" && st.Keys != int64(len(want)+stale) {
			t.Fatalf("keys counter %d, want %d", st.Keys, len(want)+stale)
		}
	}
}
