package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fulcrumdb/fulcrum/internal/fakeclock"
	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// fakeClock is the one clock a test shares with its store and front end.
type fakeClock = fakeclock.Clock

func newFakeClock() *fakeClock { return fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

func openTest(t *testing.T, fs vfs.FS, clock *fakeClock, mut ...func(*Options)) *Store {
	t.Helper()
	o := Options{Dir: "/data", FS: fs, Now: clock.Now, SweepInterval: time.Hour}
	for _, m := range mut {
		m(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func apply1(t *testing.T, s *Store, op kv.Op) kv.Result {
	t.Helper()
	if op.Namespace == "" {
		op.Namespace = "default"
	}
	res, err := s.Apply(context.Background(), kv.Batch{Ops: []kv.Op{op}})
	if err != nil {
		t.Fatalf("apply %v: %v", op.Kind, err)
	}
	return res[0]
}

func get(t *testing.T, s *Store, key string) (string, bool) {
	t.Helper()
	v, ok, err := s.Get(context.Background(), "default", []byte(key))
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return string(v.Data), ok
}

func TestSetGetDeleteAndVersions(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, vfs.NewMem(), clock)
	defer s.Close()

	r1 := apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("a"), Value: []byte("1")})
	if !r1.Applied || r1.PrevExists || r1.Cur.Version == 0 || r1.Cur.Created != r1.Cur.Version {
		t.Fatalf("first set: got %+v", r1)
	}
	r2 := apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("a"), Value: []byte("2")})
	if r2.Cur.Version <= r1.Cur.Version || r2.Cur.Created != r1.Cur.Created || string(r2.Prev.Data) != "1" {
		t.Fatalf("overwrite: got %+v after %+v", r2, r1)
	}
	if v, ok := get(t, s, "a"); !ok || v != "2" {
		t.Fatalf("get: got %q,%v want 2,true", v, ok)
	}
	// Conditional writes.
	if r := apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("a"), Value: []byte("x"), Cond: kv.CondAbsent}); r.Applied {
		t.Fatal("NX on existing key applied")
	}
	if r := apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("b"), Value: []byte("x"), Cond: kv.CondPresent}); r.Applied {
		t.Fatal("XX on missing key applied")
	}
	if r := apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("a"), Value: []byte("x"), Cond: kv.CondVersion, IfVersion: r1.Cur.Version}); r.Applied {
		t.Fatal("CAS with stale version applied")
	}
	if r := apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("a"), Value: []byte("3"), Cond: kv.CondVersion, IfVersion: r2.Cur.Version}); !r.Applied {
		t.Fatal("CAS with current version not applied")
	}
	if r := apply1(t, s, kv.Op{Kind: kv.OpDelete, Key: []byte("a")}); !r.Applied || string(r.Prev.Data) != "3" {
		t.Fatalf("delete: got %+v", r)
	}
	if r := apply1(t, s, kv.Op{Kind: kv.OpDelete, Key: []byte("a")}); r.Applied {
		t.Fatal("second delete applied")
	}
	if _, ok := get(t, s, "a"); ok {
		t.Fatal("deleted key still readable")
	}
	if n := s.Count("default"); n != 0 {
		t.Fatalf("count: got %d, want 0", n)
	}
}

func TestArithmeticAndStrings(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, vfs.NewMem(), clock)
	defer s.Close()
	for _, tc := range []struct {
		op      kv.Op
		want    string
		wantErr error
	}{
		{kv.Op{Kind: kv.OpIncrBy, Key: []byte("n"), Delta: 5}, "5", nil},
		{kv.Op{Kind: kv.OpIncrBy, Key: []byte("n"), Delta: -7}, "-2", nil},
		{kv.Op{Kind: kv.OpIncrByFloat, Key: []byte("n"), DeltaFloat: 0.5}, "-1.5", nil},
		{kv.Op{Kind: kv.OpIncrBy, Key: []byte("n"), Delta: 1}, "", kv.ErrNotInteger},
		{kv.Op{Kind: kv.OpSet, Key: []byte("big"), Value: []byte("9223372036854775807")}, "9223372036854775807", nil},
		{kv.Op{Kind: kv.OpIncrBy, Key: []byte("big"), Delta: 1}, "", kv.ErrOverflow},
		{kv.Op{Kind: kv.OpSet, Key: []byte("s"), Value: []byte("abc")}, "abc", nil},
		{kv.Op{Kind: kv.OpIncrByFloat, Key: []byte("s"), DeltaFloat: 1}, "", kv.ErrNotFloat},
		{kv.Op{Kind: kv.OpAppend, Key: []byte("s"), Value: []byte("de")}, "abcde", nil},
		{kv.Op{Kind: kv.OpSetRange, Key: []byte("s"), Offset: 7, Value: []byte("Z")}, "abcde\x00\x00Z", nil},
		{kv.Op{Kind: kv.OpSetRange, Key: []byte("s"), Offset: 1, Value: []byte("XY")}, "aXYde\x00\x00Z", nil},
		{kv.Op{Kind: kv.OpAppend, Key: []byte("new"), Value: []byte("x")}, "x", nil},
	} {
		r := apply1(t, s, tc.op)
		if tc.wantErr != nil {
			if !errors.Is(r.Err, tc.wantErr) {
				t.Errorf("%v %s: got err %v, want %v", tc.op.Kind, tc.op.Key, r.Err, tc.wantErr)
			}
			continue
		}
		if r.Err != nil || string(r.Cur.Data) != tc.want {
			t.Errorf("%v %s: got %q err %v, want %q", tc.op.Kind, tc.op.Key, r.Cur.Data, r.Err, tc.want)
		}
	}
	// SETRANGE with an empty patch on a missing key creates nothing.
	if r := apply1(t, s, kv.Op{Kind: kv.OpSetRange, Key: []byte("none"), Offset: 3}); r.Applied || r.Exists {
		t.Fatalf("empty setrange: got %+v", r)
	}
	if _, ok := get(t, s, "none"); ok {
		t.Fatal("empty SETRANGE created a key")
	}
}

func TestLimitsRefuseAndKeepServing(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, vfs.NewMem(), clock, func(o *Options) { o.Limits = kv.Limits{MaxKeySize: 8, MaxValueSize: 16} })
	defer s.Close()
	if r := apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("k"), Value: make([]byte, 17)}); !errors.Is(r.Err, kv.ErrTooLarge) || r.Applied {
		t.Fatalf("oversized value: got %+v", r)
	}
	if r := apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("123456789"), Value: nil}); !errors.Is(r.Err, kv.ErrTooLarge) {
		t.Fatalf("oversized key: got %+v", r)
	}
	apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("k"), Value: make([]byte, 16)})
	if r := apply1(t, s, kv.Op{Kind: kv.OpAppend, Key: []byte("k"), Value: []byte("x")}); !errors.Is(r.Err, kv.ErrTooLarge) {
		t.Fatalf("append over limit: got %+v", r)
	}
	if r := apply1(t, s, kv.Op{Kind: kv.OpSetRange, Key: []byte("k"), Offset: 1 << 40, Value: []byte("x")}); !errors.Is(r.Err, kv.ErrTooLarge) {
		t.Fatalf("setrange far offset: got %+v", r)
	}
	if v, ok := get(t, s, "k"); !ok || len(v) != 16 {
		t.Fatalf("value damaged by refused ops: %d bytes, %v", len(v), ok)
	}
	if _, err := s.Apply(context.Background(), kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "bad/ns", Key: []byte("k")}}}); !errors.Is(err, kv.ErrInvalid) {
		t.Fatalf("bad namespace: got %v, want INVALID", err)
	}
}

func TestExpiry(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, vfs.NewMem(), clock)
	defer s.Close()
	now := clock.UnixMilli()
	apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("t"), Value: []byte("v"), ExpireAt: now + 1000})
	apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("p"), Value: []byte("v"), ExpireAt: now + 1000})
	apply1(t, s, kv.Op{Kind: kv.OpPersist, Key: []byte("p")})
	// KEEPTTL keeps, plain SET clears.
	apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("t"), Value: []byte("v2"), KeepTTL: true})
	if ks := s.Keyspace(); len(ks) != 1 || ks[0].Keys != 2 || ks[0].Expires != 1 {
		t.Fatalf("keyspace: got %+v, want 2 keys 1 expiring", ks)
	}
	// EXPIRE conditions (Redis 7): GT on a persistent key fails, LT succeeds.
	if r := apply1(t, s, kv.Op{Kind: kv.OpExpire, Key: []byte("p"), ExpireAt: now + 50, ExpireCond: kv.ExpireGT}); r.Applied {
		t.Fatal("EXPIRE GT applied to persistent key")
	}
	if r := apply1(t, s, kv.Op{Kind: kv.OpExpire, Key: []byte("t"), ExpireAt: now + 5000, ExpireCond: kv.ExpireNX}); r.Applied {
		t.Fatal("EXPIRE NX applied to expiring key")
	}
	clock.Advance(999 * time.Millisecond)
	if _, ok := get(t, s, "t"); !ok {
		t.Fatal("expired early")
	}
	clock.Advance(time.Millisecond)
	if _, ok := get(t, s, "t"); ok {
		t.Fatal("expired key still readable (lazy expiry)")
	}
	if n := s.Count("default"); n != 2 {
		t.Fatalf("count before sweep: got %d, want 2 (unswept keys count, as in Redis)", n)
	}
	if _, err := s.SweepOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := s.Count("default"); n != 1 {
		t.Fatalf("count after sweep: got %d, want 1", n)
	}
	if st := s.Stats(); st.ExpiredKeys != 1 {
		t.Fatalf("expired keys: got %d, want 1", st.ExpiredKeys)
	}
	// EXPIRE in the past deletes at once.
	if r := apply1(t, s, kv.Op{Kind: kv.OpExpire, Key: []byte("p"), ExpireAt: clock.UnixMilli() - 1}); !r.Applied || r.Exists {
		t.Fatalf("expire in past: got %+v", r)
	}
	if n := s.Count("default"); n != 0 {
		t.Fatalf("count: got %d, want 0", n)
	}
}

func TestBackgroundSweeper(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, vfs.NewMem(), clock, func(o *Options) { o.SweepInterval = time.Millisecond })
	defer s.Close()
	for i := 0; i < 50; i++ {
		apply1(t, s, kv.Op{Kind: kv.OpSet, Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v"), ExpireAt: clock.UnixMilli() + 10})
	}
	clock.Advance(time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for s.Count("default") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sweeper left %d keys", s.Count("default"))
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
}

func TestMSETNXAllOrNothing(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, vfs.NewMem(), clock)
	defer s.Close()
	apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("b"), Value: []byte("old")})
	ops := []kv.Op{
		{Kind: kv.OpSet, Namespace: "default", Key: []byte("a"), Value: []byte("1")},
		{Kind: kv.OpSet, Namespace: "default", Key: []byte("b"), Value: []byte("2")},
	}
	res, err := s.Apply(context.Background(), kv.Batch{Ops: ops, AllAbsent: true})
	if err != nil || res[0].Applied || res[1].Applied {
		t.Fatalf("got %+v %v, want nothing applied", res, err)
	}
	if _, ok := get(t, s, "a"); ok {
		t.Fatal("MSETNX partially applied")
	}
}

func TestScanPagination(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, vfs.NewMem(), clock)
	defer s.Close()
	var ops []kv.Op
	for i := 0; i < 250; i++ {
		ops = append(ops, kv.Op{Kind: kv.OpSet, Namespace: "default", Key: fmt.Appendf(nil, "user:%03d", i), Value: []byte("v")})
	}
	ops = append(ops, kv.Op{Kind: kv.OpSet, Namespace: "default", Key: []byte("zzz"), Value: []byte("v")},
		kv.Op{Kind: kv.OpSet, Namespace: "other", Key: []byte("user:999"), Value: []byte("v")},
		kv.Op{Kind: kv.OpSet, Namespace: "default", Key: []byte("user:x"), Value: []byte("v"), ExpireAt: clock.UnixMilli() + 1})
	if _, err := s.Apply(context.Background(), kv.Batch{Ops: ops}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	var got [][]byte
	var after []byte
	pages := 0
	for {
		res, err := s.Scan(context.Background(), kv.ScanRequest{Namespace: "default", Prefix: []byte("user:"), After: after, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range res.Entries {
			got = append(got, e.Key)
		}
		if res.Next == nil {
			break
		}
		after = res.Next
	}
	if len(got) != 250 || pages != 3 {
		t.Fatalf("got %d keys in %d pages, want 250 in 3", len(got), pages)
	}
	for i := 1; i < len(got); i++ {
		if bytes.Compare(got[i-1], got[i]) >= 0 {
			t.Fatalf("not in order at %d: %q then %q", i, got[i-1], got[i])
		}
	}
	res, err := s.Scan(context.Background(), kv.ScanRequest{Namespace: "default", Limit: 1000, Match: func(k []byte) bool { return bytes.HasSuffix(k, []byte("7")) }})
	if err != nil || len(res.Entries) != 25 {
		t.Fatalf("match scan: got %d entries (%v), want 25", len(res.Entries), err)
	}
}

func TestFlushNamespace(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, vfs.NewMem(), clock)
	defer s.Close()
	apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("a"), Value: []byte("1"), ExpireAt: clock.UnixMilli() + 100})
	apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("b"), Value: []byte("1")})
	apply1(t, s, kv.Op{Kind: kv.OpSet, Namespace: "keep", Key: []byte("c"), Value: []byte("1")})
	if r := apply1(t, s, kv.Op{Kind: kv.OpFlush, Namespace: "default"}); r.Count != 2 {
		t.Fatalf("flush count: got %d, want 2", r.Count)
	}
	if s.Count("default") != 0 || s.Count("keep") != 1 {
		t.Fatalf("counts after flush: default=%d keep=%d", s.Count("default"), s.Count("keep"))
	}
	clock.Advance(time.Second)
	if n, err := s.SweepOnce(context.Background()); err != nil || n != 0 {
		t.Fatalf("sweep after flush found %d stale index entries (%v)", n, err)
	}
}

func TestStateSurvivesReopen(t *testing.T) {
	clock := newFakeClock()
	fs := vfs.NewMem()
	s := openTest(t, fs, clock)
	r := apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("a"), Value: []byte("1"), ExpireAt: clock.UnixMilli() + 60_000})
	apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("b"), Value: []byte("1")})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(context.Background(), kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "default", Key: []byte("x")}}}); !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("apply after close: got %v, want UNAVAILABLE", err)
	}
	s = openTest(t, fs, clock)
	defer s.Close()
	if ks := s.Keyspace(); len(ks) != 1 || ks[0].Keys != 2 || ks[0].Expires != 1 {
		t.Fatalf("keyspace after reopen: %+v", ks)
	}
	r2 := apply1(t, s, kv.Op{Kind: kv.OpSet, Key: []byte("a"), Value: []byte("2"), KeepTTL: true})
	if r2.Cur.Version <= r.Cur.Version || !r.Cur.Timestamp.Less(r2.Cur.Timestamp) {
		t.Fatalf("revision/clock went backwards across restart: %+v then %+v", r.Cur, r2.Cur)
	}
	if r2.Cur.ExpireAt != r.Cur.ExpireAt {
		t.Fatalf("KEEPTTL lost expiry across restart")
	}
}

func TestApplyHonoursContext(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, vfs.NewMem(), clock)
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Apply(ctx, kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "default", Key: []byte("a")}}})
	if !errors.Is(err, kv.ErrTimeout) {
		t.Fatalf("got %v, want TIMEOUT", err)
	}
}
