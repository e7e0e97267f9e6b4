package storage

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// model is the dumb oracle: a map with expiry times, written for clarity.
type modelVal struct {
	data     string
	expireAt int64
}

type model map[string]modelVal

func (m model) live(k string, now int64) (modelVal, bool) {
	v, ok := m[k]
	if !ok || (v.expireAt != 0 && v.expireAt <= now) {
		return modelVal{}, false
	}
	return v, true
}

// step applies op to the model and returns (applied, value after, exists after, failed).
func (m model) step(op kv.Op, now int64) (bool, string, bool, bool) {
	k := string(op.Key)
	old, ok := m.live(k, now)
	if !ok {
		delete(m, k)
	}
	put := func(v modelVal) (bool, string, bool, bool) {
		if v.expireAt != 0 && v.expireAt <= now {
			delete(m, k)
			return true, "", false, false
		}
		m[k] = v
		return true, v.data, true, false
	}
	switch op.Kind {
	case kv.OpSet:
		if (op.Cond == kv.CondAbsent && ok) || (op.Cond == kv.CondPresent && !ok) {
			return false, old.data, ok, false
		}
		exp := op.ExpireAt
		if op.KeepTTL {
			exp = old.expireAt
		}
		return put(modelVal{string(op.Value), exp})
	case kv.OpDelete:
		delete(m, k)
		return ok, "", false, false
	case kv.OpIncrBy:
		n := int64(0)
		if ok {
			var err error
			if n, err = strconv.ParseInt(old.data, 10, 64); err != nil {
				return false, old.data, ok, true
			}
		}
		if (op.Delta > 0 && n > math.MaxInt64-op.Delta) || (op.Delta < 0 && n < math.MinInt64-op.Delta) {
			return false, old.data, ok, true
		}
		return put(modelVal{strconv.FormatInt(n+op.Delta, 10), old.expireAt})
	case kv.OpAppend:
		return put(modelVal{old.data + string(op.Value), old.expireAt})
	case kv.OpExpire:
		if !ok {
			return false, "", false, false
		}
		return put(modelVal{old.data, op.ExpireAt})
	case kv.OpPersist:
		if !ok || old.expireAt == 0 {
			return false, old.data, ok, false
		}
		return put(modelVal{old.data, 0})
	}
	panic("model: unhandled op")
}

// Property: a random sequence of operations, clock moves, sweeps and
// restarts leaves the store agreeing with the model on every answer.
// It runs with the row cache off, tiny (constant eviction) and default.
func TestStoreMatchesModel(t *testing.T) {
	for _, cache := range []int64{-1, 2048, 0} {
		for seed := int64(1); seed <= 4; seed++ {
			t.Run(fmt.Sprintf("cache%d/seed%d", cache, seed), func(t *testing.T) { runModel(t, seed, cache) })
		}
	}
}

func runModel(t *testing.T, seed, cacheSize int64) {
	rng := rand.New(rand.NewSource(seed))
	clock := newFakeClock()
	fs := vfs.NewMem()
	withCache := func(o *Options) { o.RowCacheSize = cacheSize }
	s := openTest(t, fs, clock, withCache)
	defer func() { s.Close() }()
	m := model{}
	keys := []string{"a", "b", "c", "d", "", "\x00bin"}
	vals := []string{"1", "-5", "x", "", "9223372036854775806", "12"}
	for i := 0; i < 3000; i++ {
		now := clock.UnixMilli()
		op := kv.Op{Namespace: "default", Key: []byte(keys[rng.Intn(len(keys))])}
		switch rng.Intn(8) {
		case 0, 1:
			op.Kind = kv.OpSet
			op.Value = []byte(vals[rng.Intn(len(vals))])
			op.Cond = kv.Cond(rng.Intn(3))
			switch rng.Intn(4) {
			case 0:
				op.ExpireAt = now + int64(rng.Intn(50))
			case 1:
				op.KeepTTL = true
			}
		case 2:
			op.Kind = kv.OpDelete
		case 3:
			op.Kind = kv.OpIncrBy
			op.Delta = int64(rng.Intn(5) - 2)
		case 4:
			op.Kind = kv.OpAppend
			op.Value = []byte(vals[rng.Intn(len(vals))])
		case 5:
			op.Kind = kv.OpExpire
			op.ExpireAt = now + int64(rng.Intn(60)) - 10
		case 6:
			op.Kind = kv.OpPersist
		case 7:
			clock.Advance(time.Duration(rng.Intn(20)) * time.Millisecond)
			switch rng.Intn(10) {
			case 0:
				if _, err := s.SweepOnce(context.Background()); err != nil {
					t.Fatal(err)
				}
			case 1:
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				s = openTest(t, fs, clock, withCache)
			case 2:
				// A flush batch with writes on both sides of it.
				k := []byte(keys[rng.Intn(len(keys))])
				b := kv.Batch{Now: clock.UnixMilli(), Ops: []kv.Op{
					{Kind: kv.OpSet, Namespace: "default", Key: k, Value: []byte("pre")},
					{Kind: kv.OpFlush, Namespace: "default"},
					{Kind: kv.OpAppend, Namespace: "default", Key: k, Value: []byte("post")},
				}}
				if _, err := s.Apply(context.Background(), b); err != nil {
					t.Fatal(err)
				}
				clear(m)
				m[string(k)] = modelVal{data: "post"}
			}
			continue
		}
		res, err := s.Apply(context.Background(), kv.Batch{Ops: []kv.Op{op}, Now: now})
		if err != nil {
			t.Fatalf("seed %d step %d: %v", seed, i, err)
		}
		r := res[0]
		applied, data, exists, failed := m.step(op, now)
		if failed != (r.Err != nil) || (!failed && (applied != r.Applied || exists != r.Exists || (exists && data != string(r.Cur.Data)))) {
			t.Fatalf("seed %d step %d op %v %q: got applied=%v exists=%v cur=%q err=%v, want applied=%v exists=%v cur=%q failed=%v",
				seed, i, op.Kind, op.Key, r.Applied, r.Exists, r.Cur.Data, r.Err, applied, exists, data, failed)
		}
		for _, k := range keys {
			want, wok := m.live(k, clock.UnixMilli())
			got, gok := get(t, s, k)
			if wok != gok || want.data != got {
				t.Fatalf("seed %d step %d: key %q got %q,%v want %q,%v", seed, i, k, got, gok, want.data, wok)
			}
		}
	}
	// Counters equal a full count of stored keys (expired-unswept included).
	res, err := s.Scan(context.Background(), kv.ScanRequest{Namespace: "default", Limit: 100, Now: 1})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(res.Entries)) != s.Count("default") {
		t.Fatalf("seed %d: Count %d, stored keys %d", seed, s.Count("default"), len(res.Entries))
	}
}
