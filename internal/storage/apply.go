package storage

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/placement"
)

// txn applies operations to one Pebble batch. It belongs to the applier
// goroutine; nothing else touches it. Reads see, in order: rows written
// earlier in this batch (overlay), namespaces flushed earlier in this batch,
// the row cache, and Pebble's committed state.
type txn struct {
	b       *pebble.Batch
	db      *pebble.DB
	cache   *rowCache // nil when disabled
	overlay map[string]*cacheEntry
	flushed map[string]bool
	limits  kv.Limits
	rev     uint64 // last revision handed out
	// fixedRev, when set, is the version of every write of the current
	// request (kv.Batch.Revision): a replicated engine chose it.
	fixedRev uint64
	now      int64
	ts       hlc.Timestamp
	// counters tracks key/expiry deltas per namespace touched by the batch.
	counters map[string]*nsCounts
	expired  int64 // keys found expired and removed or overwritten
	kbuf     []byte
	vbuf     []byte
	ebuf     []byte
}

// nsCounts is a namespace's counter change within a batch; reset means the
// namespace was flushed, so the deltas apply to zero rather than the
// current counts.
type nsCounts struct {
	reset         bool
	keys, expires int64
}

func (t *txn) delta(ns string) *nsCounts {
	c := t.counters[ns]
	if c == nil {
		c = &nsCounts{}
		t.counters[ns] = c
	}
	return c
}

// read returns the stored record for key (including expired ones).
func (t *txn) read(ns string, dk []byte) (record, bool, error) {
	if e, ok := t.overlay[string(dk)]; ok {
		return e.rec, e.exists, nil
	}
	if t.flushed[ns] {
		return record{}, false, nil
	}
	var gen uint64
	if t.cache != nil {
		e, hit, g := t.cache.get(dk)
		if hit {
			return e.rec, e.exists, nil
		}
		gen = g
	}
	r, ok, err := readPebble(t.db, dk)
	if err == nil && t.cache != nil {
		t.cache.fill(dk, cacheEntry{rec: r, exists: ok}, gen)
	}
	return r, ok, err
}

// readPebble reads a committed record; its Data is a private copy.
func readPebble(db *pebble.DB, dk []byte) (record, bool, error) {
	v, closer, err := db.Get(dk)
	if errors.Is(err, pebble.ErrNotFound) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, fmt.Errorf("read: %w", err)
	}
	defer closer.Close()
	r, err := decodeValue(v)
	if err != nil {
		return record{}, false, err
	}
	if r.Tombstone {
		return record{}, false, nil
	}
	r.Data = append([]byte(nil), r.Data...)
	return r, true, nil
}

// write stores v under key, replacing old (if existed), maintaining the
// expiry index and counters.
func (t *txn) write(ns string, key, dk []byte, old record, existed bool, v kv.Value) error {
	if existed && old.ExpireAt != 0 && old.ExpireAt != v.ExpireAt {
		t.ebuf = expiryKey(t.ebuf, old.ExpireAt, ns, key)
		if err := t.b.Delete(t.ebuf, nil); err != nil {
			return err
		}
	}
	if v.ExpireAt != 0 && (!existed || old.ExpireAt != v.ExpireAt) {
		t.ebuf = expiryKey(t.ebuf, v.ExpireAt, ns, key)
		if err := t.b.Set(t.ebuf, nil, nil); err != nil {
			return err
		}
	}
	c := t.delta(ns)
	if !existed {
		c.keys++
	}
	c.expires += b2i(v.ExpireAt != 0) - b2i(existed && old.ExpireAt != 0)
	t.vbuf = encodeValue(t.vbuf, record{Value: v})
	t.overlay[string(dk)] = &cacheEntry{rec: record{Value: v}, exists: true}
	return t.b.Set(dk, t.vbuf, nil)
}

func (t *txn) remove(ns string, key, dk []byte, old record) error {
	if old.ExpireAt != 0 {
		t.ebuf = expiryKey(t.ebuf, old.ExpireAt, ns, key)
		if err := t.b.Delete(t.ebuf, nil); err != nil {
			return err
		}
	}
	c := t.delta(ns)
	c.keys--
	c.expires -= b2i(old.ExpireAt != 0)
	t.overlay[string(dk)] = &cacheEntry{}
	return t.b.Delete(dk, nil)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// next hands out the next revision and builds the value metadata for a write.
func (t *txn) next(data []byte, created uint64, expireAt int64) kv.Value {
	rev := t.fixedRev
	if rev == 0 {
		t.rev++
		rev = t.rev
	}
	if created == 0 {
		created = rev
	}
	return kv.Value{Data: data, Version: rev, Created: created, Timestamp: t.ts, ExpireAt: expireAt}
}

// apply runs one operation. A returned error aborts the whole batch (storage
// failure); per-operation failures go in Result.Err.
func (t *txn) apply(op *kv.Op, shard, shards int) (kv.Result, error) {
	var res kv.Result
	if op.Kind == kv.OpFlush {
		var n int64
		var err error
		if shards > 0 {
			n, err = t.flushShard(op.Namespace, shard, shards)
		} else {
			n, err = t.flush(op.Namespace)
		}
		res.Count, res.Applied = n, n > 0
		return res, err
	}
	if err := t.limits.CheckKey(op.Key); err != nil {
		res.Err = err
		return res, nil
	}
	t.kbuf = dataKey(t.kbuf, op.Namespace, op.Key)
	dk := t.kbuf
	old, stored, err := t.read(op.Namespace, dk)
	if err != nil {
		return res, err
	}
	live := stored && !old.ExpiredAt(t.now)
	if stored && !live {
		t.expired++
	}
	if live {
		res.Prev, res.PrevExists = old.Value, true
	}
	// created is the creation revision carried over by in-place updates.
	created := uint64(0)
	if live {
		created = old.Created
	}
	keepExpiry := int64(0)
	if live {
		keepExpiry = old.ExpireAt
	}
	// done records the outcome of a write that produced cur.
	set := func(cur kv.Value) (kv.Result, error) {
		if err := t.write(op.Namespace, op.Key, dk, old, stored, cur); err != nil {
			return res, err
		}
		res.Applied, res.Cur, res.Exists = true, cur, true
		return res, nil
	}
	unchanged := func() (kv.Result, error) {
		// An expired record met by a no-op is removed now, so lazy expiry
		// and the sweeper agree on what exists.
		if stored && !live {
			if err := t.remove(op.Namespace, op.Key, dk, old); err != nil {
				return res, err
			}
		}
		res.Cur, res.Exists = res.Prev, res.PrevExists
		return res, nil
	}

	switch op.Kind {
	case kv.OpSet:
		if !condHolds(op, live, old) {
			return unchanged()
		}
		if err := t.limits.CheckValue(len(op.Value)); err != nil {
			res.Err = err
			return unchanged()
		}
		exp := op.ExpireAt
		if op.KeepTTL {
			exp = keepExpiry
		}
		if exp != 0 && exp <= t.now {
			// Already expired on arrival (SET ... PXAT in the past): Redis
			// treats it as set-then-expired, i.e. the key is gone.
			res.Applied = true
			if stored {
				return res, t.remove(op.Namespace, op.Key, dk, old)
			}
			return res, nil
		}
		// Copied: the overlay and row cache keep it after the caller's
		// buffer is reused.
		return set(t.next(append([]byte(nil), op.Value...), created, exp))

	case kv.OpDelete, kv.OpSweep:
		if op.Kind == kv.OpSweep {
			// Remove the index entry that led here even if stale.
			t.ebuf = expiryKey(t.ebuf, op.ExpireAt, op.Namespace, op.Key)
			if err := t.b.Delete(t.ebuf, nil); err != nil {
				return res, err
			}
			if !stored || live {
				return unchanged()
			}
			res.Applied = true
			return res, t.remove(op.Namespace, op.Key, dk, old)
		}
		if !live || !condHolds(op, live, old) {
			return unchanged()
		}
		res.Applied = true
		return res, t.remove(op.Namespace, op.Key, dk, old)

	case kv.OpIncrBy:
		var cur int64
		if live {
			n, err := strconv.ParseInt(string(old.Data), 10, 64)
			if err != nil || len(old.Data) == 0 || len(old.Data) > 20 {
				res.Err = kv.ErrNotInteger
				return unchanged()
			}
			cur = n
		}
		if (op.Delta > 0 && cur > math.MaxInt64-op.Delta) || (op.Delta < 0 && cur < math.MinInt64-op.Delta) {
			res.Err = kv.ErrOverflow
			return unchanged()
		}
		return set(t.next(strconv.AppendInt(nil, cur+op.Delta, 10), created, keepExpiry))

	case kv.OpIncrByFloat:
		var cur float64
		if live {
			f, err := parseRedisFloat(old.Data)
			if err != nil {
				res.Err = kv.ErrNotFloat
				return unchanged()
			}
			cur = f
		}
		n := cur + op.DeltaFloat
		if math.IsNaN(n) || math.IsInf(n, 0) {
			res.Err = kv.ErrNaN
			return unchanged()
		}
		return set(t.next(strconv.AppendFloat(nil, n, 'f', -1, 64), created, keepExpiry))

	case kv.OpAppend:
		var base []byte
		if live {
			base = old.Data
		}
		if err := t.limits.CheckValue(len(base) + len(op.Value)); err != nil {
			res.Err = err
			return unchanged()
		}
		data := make([]byte, 0, len(base)+len(op.Value))
		data = append(append(data, base...), op.Value...)
		return set(t.next(data, created, keepExpiry))

	case kv.OpSetRange:
		var base []byte
		if live {
			base = old.Data
		}
		if op.Offset < 0 {
			res.Err = kv.Errorf(kv.CodeInvalid, "offset is out of range")
			return unchanged()
		}
		if len(op.Value) == 0 {
			// Redis: an empty patch changes nothing and never creates.
			return unchanged()
		}
		end := op.Offset + int64(len(op.Value))
		if err := t.limits.CheckValue(int(min(end, math.MaxInt32))); err != nil || end > math.MaxInt32 {
			if err == nil {
				err = kv.Errorf(kv.CodeTooLarge, "value would be %d bytes", end)
			}
			res.Err = err
			return unchanged()
		}
		n := max(int64(len(base)), end)
		data := make([]byte, n)
		copy(data, base)
		copy(data[op.Offset:], op.Value)
		return set(t.next(data, created, keepExpiry))

	case kv.OpExpire:
		if !live || !expireCondHolds(op, old.ExpireAt) {
			return unchanged()
		}
		if op.ExpireAt <= t.now {
			res.Applied = true
			return res, t.remove(op.Namespace, op.Key, dk, old)
		}
		return set(t.next(old.Data, created, op.ExpireAt))

	case kv.OpPersist:
		if !live || old.ExpireAt == 0 {
			return unchanged()
		}
		return set(t.next(old.Data, created, 0))

	case kv.OpRestore:
		v := op.Restored
		if v.ExpiredAt(t.now) {
			res.Applied = true
			if stored {
				return res, t.remove(op.Namespace, op.Key, dk, old)
			}
			return res, nil
		}
		v.Data = append([]byte(nil), v.Data...)
		return set(v)
	}
	res.Err = kv.Errorf(kv.CodeInvalid, "unknown operation %d", op.Kind)
	return res, nil
}

func condHolds(op *kv.Op, live bool, old record) bool {
	switch op.Cond {
	case kv.CondAbsent:
		return !live
	case kv.CondPresent:
		return live
	case kv.CondVersion:
		return live && old.Version == op.IfVersion
	}
	return true
}

// expireCondHolds implements Redis 7's EXPIRE NX/XX/GT/LT, where a key
// without expiry counts as an infinite TTL.
func expireCondHolds(op *kv.Op, cur int64) bool {
	switch op.ExpireCond {
	case kv.ExpireNX:
		return cur == 0
	case kv.ExpireXX:
		return cur != 0
	case kv.ExpireGT:
		return cur != 0 && op.ExpireAt > cur
	case kv.ExpireLT:
		return cur == 0 || op.ExpireAt < cur
	}
	return true
}

// parseRedisFloat accepts what Redis's INCRBYFLOAT accepts: a decimal or
// exponent float without surrounding spaces, not NaN.
func parseRedisFloat(b []byte) (float64, error) {
	if len(b) == 0 || len(b) > 5000 || b[0] == ' ' || b[len(b)-1] == ' ' {
		return 0, kv.ErrNotFloat
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) {
		return 0, kv.ErrNotFloat
	}
	return f, nil
}

// committedRows calls fn for each committed row of ns that this batch has
// not written (those are in the overlay), with the key, its Pebble key and
// its record; key and dk are only valid during the call.
func (t *txn) committedRows(ns string, fn func(key, dk []byte, r record) error) error {
	lo := nsKeyPrefix(ns)
	it, err := t.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if _, inOverlay := t.overlay[string(it.Key())]; inOverlay {
			continue // the batch's newer row is handled from the overlay
		}
		v, err := it.ValueAndErr()
		if err == nil {
			var r record
			if r, err = decodeValue(v); err == nil && !r.Tombstone {
				err = fn(it.Key()[len(lo):], it.Key(), r)
			}
		}
		if err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}

// flushShard deletes the keys of ns that belong to shard (of shards),
// returning how many live or expired rows there were. Unlike flush it
// cannot drop a key range: a shard's keys are spread over the namespace.
func (t *txn) flushShard(ns string, shard, shards int) (int64, error) {
	lo := nsKeyPrefix(ns)
	var n int64
	if !t.flushed[ns] {
		err := t.committedRows(ns, func(key, dk []byte, r record) error {
			if placement.ShardOf(ns, key, shards) != shard {
				return nil
			}
			n++
			return t.remove(ns, append([]byte(nil), key...), append([]byte(nil), dk...), r)
		})
		if err != nil {
			return n, err
		}
	}
	for k, e := range t.overlay {
		if !e.exists || !strings.HasPrefix(k, string(lo)) {
			continue
		}
		key := []byte(k[len(lo):])
		if placement.ShardOf(ns, key, shards) != shard {
			continue
		}
		n++
		if err := t.remove(ns, key, []byte(k), e.rec); err != nil {
			return n, err
		}
	}
	return n, nil
}

// flush deletes every key of ns, returning how many there were. The
// namespace's current rows are Pebble's committed ones overridden by rows
// written earlier in this batch (the overlay).
func (t *txn) flush(ns string) (int64, error) {
	lo := nsKeyPrefix(ns)
	hi := prefixEnd(lo)
	var n int64
	dropIndex := func(key []byte, r record) error {
		n++
		if r.ExpireAt == 0 {
			return nil
		}
		t.ebuf = expiryKey(t.ebuf, r.ExpireAt, ns, key)
		return t.b.Delete(t.ebuf, nil)
	}
	if !t.flushed[ns] {
		err := t.committedRows(ns, func(key, _ []byte, r record) error { return dropIndex(key, r) })
		if err != nil {
			return n, err
		}
	}
	for k, e := range t.overlay {
		if !e.exists || !strings.HasPrefix(k, string(lo)) {
			continue
		}
		if err := dropIndex([]byte(k[len(lo):]), e.rec); err != nil {
			return n, err
		}
		*e = cacheEntry{}
	}
	if err := t.b.DeleteRange(lo, hi, nil); err != nil {
		return n, err
	}
	if t.flushed == nil {
		t.flushed = make(map[string]bool)
	}
	t.flushed[ns] = true
	*t.delta(ns) = nsCounts{reset: true}
	return n, nil
}
