package resp

import (
	"math/rand/v2"
	"sync"
	"time"
)

// cursorTable maps SCAN cursors to where their scan resumes.
//
// Redis cursors are opaque uint64s that clients parse as numbers, while
// Fulcrum's keyspace is ordered and a scan resumes after a key. The table
// turns one into the other. Ids are random, so a client cannot guess
// another's cursor; an entry stays valid (repeating a SCAN with the same
// cursor returns the same page, from any connection) until it is the least
// recently used of more than max entries (or of more than maxCursorBytes of
// resume keys) or unused for ttl. The same position gets the same cursor,
// so a client repeating SCAN 0 or re-reading a page adds nothing.
type cursorTable struct {
	max int
	ttl time.Duration
	now func() time.Time

	mu struct {
		sync.Mutex
		m     map[uint64]*cursorEntry
		byPos map[string]*cursorEntry // ns 0x00 resume key
		bytes int
		// lru is a ring: lru.next is the most recently used entry,
		// lru.prev the least.
		lru cursorEntry
	}
}

// maxCursorBytes bounds the memory of resume keys held by the table (keys
// may be up to the key limit each).
const maxCursorBytes = 64 << 20

type cursorEntry struct {
	id         uint64
	ns         string
	pos        string
	after      []byte
	used       time.Time
	prev, next *cursorEntry
}

func newCursorTable(max int, ttl time.Duration, now func() time.Time) *cursorTable {
	t := &cursorTable{max: max, ttl: ttl, now: now}
	t.mu.m = make(map[uint64]*cursorEntry)
	t.mu.byPos = make(map[string]*cursorEntry)
	t.mu.lru.next, t.mu.lru.prev = &t.mu.lru, &t.mu.lru
	return t
}

// put registers a scan of ns resuming after key and returns its cursor.
func (t *cursorTable) put(ns string, after []byte) uint64 {
	now := t.now()
	pos := ns + "\x00" + string(after)
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.mu.byPos[pos]; e != nil {
		e.used = now
		t.unlinkLocked(e)
		t.pushFrontLocked(e)
		return e.id
	}
	e := &cursorEntry{ns: ns, pos: pos, after: []byte(pos[len(ns)+1:]), used: now}
	for e.id == 0 || t.mu.m[e.id] != nil {
		e.id = rand.Uint64()
	}
	t.mu.m[e.id] = e
	t.mu.byPos[pos] = e
	t.mu.bytes += len(pos)
	t.pushFrontLocked(e)
	t.expireLocked(now)
	for len(t.mu.m) > t.max || (t.mu.bytes > maxCursorBytes && len(t.mu.m) > 1) {
		t.removeLocked(t.mu.lru.prev)
	}
	return e.id
}

// get returns where the scan with cursor id resumes; false if the cursor
// is unknown, evicted, expired or belongs to another namespace.
func (t *cursorTable) get(id uint64, ns string) ([]byte, bool) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expireLocked(now)
	e := t.mu.m[id]
	if e == nil || e.ns != ns {
		return nil, false
	}
	e.used = now
	t.unlinkLocked(e)
	t.pushFrontLocked(e)
	return e.after, true
}

func (t *cursorTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.mu.m)
}

// expireLocked drops entries unused for ttl, oldest first.
func (t *cursorTable) expireLocked(now time.Time) {
	for e := t.mu.lru.prev; e != &t.mu.lru && now.Sub(e.used) > t.ttl; e = t.mu.lru.prev {
		t.removeLocked(e)
	}
}

func (t *cursorTable) removeLocked(e *cursorEntry) {
	t.unlinkLocked(e)
	delete(t.mu.m, e.id)
	delete(t.mu.byPos, e.pos)
	t.mu.bytes -= len(e.pos)
}

func (t *cursorTable) unlinkLocked(e *cursorEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (t *cursorTable) pushFrontLocked(e *cursorEntry) {
	head := &t.mu.lru
	e.prev, e.next = head, head.next
	head.next.prev = e
	head.next = e
}
