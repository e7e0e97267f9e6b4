package raftlog

import "go.etcd.io/raft/v3/raftpb"

// entryCache holds a group's most recent committed entries, because raft
// reads what it just appended (to send it to followers and to apply it).
// Invariant: when not empty it is a contiguous run of the log that ends at
// the last index, so a cached answer is never stale. Entries are immutable
// (raft's rule), so they are shared with callers, never copied.
type entryCache struct {
	maxEntries int
	maxBytes   uint64

	lo    uint64 // index of ents[0]
	ents  []cachedEntry
	bytes uint64
}

type cachedEntry struct {
	e    *raftpb.Entry
	size uint64 // encoded size
}

func newEntryCache(maxEntries int, maxBytes uint64) entryCache {
	return entryCache{maxEntries: maxEntries, maxBytes: maxBytes}
}

// end is one past the last cached index.
func (c *entryCache) end() uint64 { return c.lo + uint64(len(c.ents)) }

// append records committed entries (contiguous; ents[0] at most one past
// the last index), replacing any cached suffix they overwrite.
func (c *entryCache) append(ents []*raftpb.Entry, sizes []uint64) {
	if c.maxEntries == 0 || len(ents) == 0 {
		return
	}
	first := ents[0].GetIndex()
	if len(c.ents) == 0 || first < c.lo || first > c.end() {
		c.clear()
		c.lo = first
	} else {
		c.dropFrom(int(first - c.lo))
	}
	for k, e := range ents {
		c.ents = append(c.ents, cachedEntry{e: e, size: sizes[k]})
		c.bytes += sizes[k]
	}
	c.trim()
}

// dropFrom removes the cached entries from position k on.
func (c *entryCache) dropFrom(k int) {
	for j := k; j < len(c.ents); j++ {
		c.bytes -= c.ents[j].size
		c.ents[j] = cachedEntry{}
	}
	c.ents = c.ents[:k]
}

// trim evicts the oldest entries beyond the bounds.
func (c *entryCache) trim() {
	k := 0
	for k < len(c.ents) && (len(c.ents)-k > c.maxEntries || c.bytes > c.maxBytes) {
		c.bytes -= c.ents[k].size
		c.ents[k] = cachedEntry{}
		k++
	}
	c.ents = c.ents[k:]
	c.lo += uint64(k)
}

// compact drops the entries up to and including index.
func (c *entryCache) compact(index uint64) {
	if len(c.ents) == 0 || index < c.lo {
		return
	}
	if index >= c.end()-1 {
		c.clear()
		return
	}
	k := int(index + 1 - c.lo)
	for j := range k {
		c.bytes -= c.ents[j].size
		c.ents[j] = cachedEntry{}
	}
	c.ents = c.ents[k:]
	c.lo = index + 1
}

func (c *entryCache) clear() {
	clear(c.ents)
	c.ents = c.ents[:0]
	c.lo, c.bytes = 0, 0
}

// get returns entries [lo, hi) limited to maxSize (at least one) in a new
// slice, if the cache holds lo..hi-1.
func (c *entryCache) get(lo, hi, maxSize uint64) ([]*raftpb.Entry, bool) {
	if len(c.ents) == 0 || lo < c.lo || hi > c.end() || lo >= hi {
		return nil, false
	}
	from, to := int(lo-c.lo), int(hi-c.lo)
	size := c.ents[from].size
	n := 1
	for ; from+n < to; n++ {
		size += c.ents[from+n].size
		if size > maxSize {
			break
		}
	}
	out := make([]*raftpb.Entry, n)
	for k := range out {
		out[k] = c.ents[from+k].e
	}
	return out, true
}
