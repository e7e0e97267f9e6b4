package storage

import (
	"hash/maphash"
	"sort"
	"sync"
)

// rowCache keeps recently read or written rows (decoded records, and
// "absent" markers) in memory, so hot GETs and the applier's
// read-before-write skip Pebble. It is a write-through cache: the applier
// updates it after each commit is published, so it never holds a value
// newer than Pebble's, and never keeps one older.
//
// Readers fill it on a miss. Two races matter. A reader that read Pebble
// before a commit must not insert its (now old) row afterwards: each
// shard's generation counts the applier's changes, and a fill is dropped
// unless the generation the reader saw before reading Pebble is current.
// And while a commit is being published, Pebble may already show the new
// row: the applier therefore removes the touched rows and marks their shards
// pending before publishing (begin), so reads go to Pebble and fills are
// refused, and installs the new rows after (end).
type rowCache struct {
	seed     maphash.Seed
	shards   []cacheShard
	maxBytes int64 // per shard
}

const cacheShards = 64

// cacheEntryOverhead approximates a map entry's fixed cost in bytes.
const cacheEntryOverhead = 96

type cacheShard struct {
	mu      sync.RWMutex
	gen     uint64
	pending int // commits in flight that touch this shard; fills refused
	bytes   int64
	// m is keyed by the row key's 64-bit hash, which is cheaper to look up
	// than the key itself; the entry keeps the key to rule out collisions
	// (a colliding row simply replaces the other).
	m map[uint64]cachedRow
	_ [40]byte // keep hot shards on separate cache lines
}

type cacheEntry struct {
	rec    record
	exists bool
}

type cachedRow struct {
	key string
	cacheEntry
}

func newRowCache(capacity int64) *rowCache {
	if capacity <= 0 {
		return nil
	}
	c := &rowCache{seed: maphash.MakeSeed(), shards: make([]cacheShard, cacheShards), maxBytes: max(capacity/cacheShards, 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]cachedRow)
	}
	return c
}

func (c *rowCache) locate(dk []byte) (*cacheShard, uint64) {
	h := maphash.Bytes(c.seed, dk)
	return &c.shards[h%cacheShards], h
}

// get returns the cached row for dk; hit is false on a miss, in which case
// gen is the value to pass to fill.
func (c *rowCache) get(dk []byte) (e cacheEntry, hit bool, gen uint64) {
	s, h := c.locate(dk)
	s.mu.RLock()
	r, ok := s.m[h]
	gen = s.gen
	s.mu.RUnlock()
	if ok && r.key == string(dk) {
		return r.cacheEntry, true, gen
	}
	return cacheEntry{}, false, gen
}

// fill inserts a row read from Pebble unless the applier changed the shard
// since gen was read or the row is already cached.
func (c *rowCache) fill(dk []byte, e cacheEntry, gen uint64) {
	s, h := c.locate(dk)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen || s.pending > 0 {
		return
	}
	if _, ok := s.m[h]; ok {
		return
	}
	s.insertLocked(h, cachedRow{key: string(dk), cacheEntry: e}, c.maxBytes)
}

// invalidation is what begin took out of the cache for one commit.
type invalidation struct {
	rows []pendingRow
	all  bool // a namespace flush: every shard was cleared
}

type pendingRow struct {
	shard *cacheShard
	h     uint64
	row   cachedRow
}

// begin removes the rows a commit is about to publish (every row, for a
// flush) and marks their shards pending. Only the applier calls it, and it
// calls end once the commit is published or has failed.
func (c *rowCache) begin(overlay map[string]*cacheEntry, all bool) *invalidation {
	inv := &invalidation{all: all, rows: make([]pendingRow, 0, len(overlay))}
	if all {
		for i := range c.shards {
			s := &c.shards[i]
			s.mu.Lock()
			s.gen++
			s.pending++
			clear(s.m)
			s.bytes = 0
			s.mu.Unlock()
		}
	}
	for k, e := range overlay {
		h := maphash.String(c.seed, k)
		inv.rows = append(inv.rows, pendingRow{shard: &c.shards[h%cacheShards], h: h, row: cachedRow{key: k, cacheEntry: *e}})
	}
	if all {
		return inv
	}
	// One lock per touched shard, not per row: a pipelined group touches
	// hundreds of rows.
	sort.Slice(inv.rows, func(i, j int) bool { return inv.rows[i].h%cacheShards < inv.rows[j].h%cacheShards })
	forEachShard(inv.rows, func(s *cacheShard, rows []pendingRow) {
		s.gen++
		s.pending++
		for _, p := range rows {
			if old, ok := s.m[p.h]; ok {
				s.bytes -= entrySize(old)
				delete(s.m, p.h)
			}
		}
	})
	return inv
}

// end installs the committed rows (when committed) and lifts the pending
// marks set by begin.
func (c *rowCache) end(inv *invalidation, committed bool) {
	forEachShard(inv.rows, func(s *cacheShard, rows []pendingRow) {
		s.gen++
		if committed {
			for _, p := range rows {
				if old, ok := s.m[p.h]; ok {
					s.bytes -= entrySize(old)
					delete(s.m, p.h)
				}
				s.insertLocked(p.h, p.row, c.maxBytes)
			}
		}
		if !inv.all {
			s.pending--
		}
	})
	if inv.all {
		for i := range c.shards {
			s := &c.shards[i]
			s.mu.Lock()
			s.gen++
			s.pending--
			s.mu.Unlock()
		}
	}
}

// forEachShard calls fn with each shard's lock held and the rows (sorted
// by shard, as begin leaves them) that belong to it.
func forEachShard(rows []pendingRow, fn func(*cacheShard, []pendingRow)) {
	for i := 0; i < len(rows); {
		j := i + 1
		for j < len(rows) && rows[j].shard == rows[i].shard {
			j++
		}
		s := rows[i].shard
		s.mu.Lock()
		fn(s, rows[i:j])
		s.mu.Unlock()
		i = j
	}
}

func entrySize(r cachedRow) int64 {
	return int64(len(r.key) + len(r.rec.Data) + cacheEntryOverhead)
}

func (s *cacheShard) insertLocked(h uint64, r cachedRow, maxBytes int64) {
	size := entrySize(r)
	if size > maxBytes/4 {
		return // one large value must not wipe the shard
	}
	// Evict arbitrary entries (Go's map iteration order is randomised)
	// until the new one fits: cheap, and good enough for a cache whose
	// purpose is to absorb hot keys.
	if s.bytes+size > maxBytes {
		for h2, r2 := range s.m {
			s.bytes -= entrySize(r2)
			delete(s.m, h2)
			if s.bytes+size <= maxBytes {
				break
			}
		}
	}
	s.m[h] = r
	s.bytes += size
}
