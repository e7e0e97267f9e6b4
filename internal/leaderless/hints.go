package leaderless

import (
	"errors"
	"fmt"
	"slices"
)

// Hint is a write a fallback node holds for an owner that was unreachable,
// to hand over when the owner is back.
type Hint struct {
	// Owner is the home replica the write was meant for.
	Owner NodeID
	// Namespace and Key name the key written.
	Namespace string
	Key       []byte
	// Version orders hints for the same key: only the newest is kept.
	Version LWW
	// Value is the write as the engine encodes it; opaque here.
	Value []byte
	// Expiry is when the hint is dropped (Unix nanoseconds): the time it
	// was stored plus the hint window. After it, convergence of this key
	// on Owner is left to anti-entropy.
	Expiry int64
}

// Errors of the hint store.
var (
	// ErrHintsFull is returned by Add when the store holds its maximum
	// number of hints; the fallback should refuse the write (Refused), so
	// the coordinator tries elsewhere or fails rather than lose it.
	ErrHintsFull = errors.New("leaderless: hint store full")
	// ErrBadHint is returned for a hint without an owner and is the cause
	// of every DecodeHint error.
	ErrBadHint = errors.New("leaderless: malformed hint")
)

// HintStats are the hint store's counts, for metrics. The uint64 fields
// only grow.
type HintStats struct {
	Pending    int    // hints held now
	Owners     int    // owners with at least one hint
	Added      uint64 // hints stored for a key that had none
	Superseded uint64 // hints replaced by a newer one for the same key
	Stale      uint64 // hints not stored because a newer one was held
	Delivered  uint64 // hints removed by Ack
	Expired    uint64 // hints removed by Expire
	Dropped    uint64 // hints removed by DropOwner
	Rejected   uint64 // hints refused with ErrHintsFull
}

type hintKey struct{ ns, key string }

type hintEntry struct {
	hint Hint
	seq  uint64 // order of first arrival, so delivery order is stable
}

// Hints is a fallback node's hint store, in memory: at most one hint per
// owner and key, the newest. It is the bookkeeping only; the node persists
// records (AppendHint) and rebuilds the store from them on restart. Not
// safe for concurrent use: one goroutine (the handoff loop) owns it.
type Hints struct {
	limit  int
	owners map[NodeID]map[hintKey]*hintEntry
	seq    uint64
	stats  HintStats
}

// NewHints returns an empty store holding at most limit hints (0: no
// limit). A limit keeps a long outage of one owner from filling a
// fallback's memory and disk.
func NewHints(limit int) *Hints {
	return &Hints{limit: limit, owners: make(map[NodeID]map[hintKey]*hintEntry)}
}

// Add stores h, copying its key and value. A hint for a key that already
// has a newer or equal one is not stored (the newer covers it) and is not
// an error. It fails with ErrHintsFull when h would be a new entry beyond
// the limit, and with ErrBadHint when h has no owner.
func (s *Hints) Add(h Hint) error {
	if h.Owner == "" {
		return fmt.Errorf("%w: no owner", ErrBadHint)
	}
	k := hintKey{h.Namespace, string(h.Key)}
	byKey := s.owners[h.Owner]
	if e, ok := byKey[k]; ok {
		if CompareLWW(h.Version, e.hint.Version) != After {
			s.stats.Stale++
			return nil
		}
		e.hint = cloneHint(h)
		s.stats.Superseded++
		return nil
	}
	if s.limit > 0 && s.stats.Pending >= s.limit {
		s.stats.Rejected++
		return fmt.Errorf("%w: %d hints held", ErrHintsFull, s.stats.Pending)
	}
	if byKey == nil {
		byKey = make(map[hintKey]*hintEntry)
		s.owners[h.Owner] = byKey
	}
	s.seq++
	byKey[k] = &hintEntry{hint: cloneHint(h), seq: s.seq}
	s.stats.Pending++
	s.stats.Added++
	return nil
}

// Due returns up to limit (all when limit <= 0) unexpired hints for owner,
// oldest first, for delivery now that owner is alive. It does not remove
// them: Ack each one once owner has applied it; a hint not acknowledged is
// returned again by the next Due. The hints share memory with the store
// and must not be modified.
func (s *Hints) Due(owner NodeID, now int64, limit int) []Hint {
	byKey := s.owners[owner]
	entries := make([]*hintEntry, 0, len(byKey))
	for _, e := range byKey {
		if e.hint.Expiry > now {
			entries = append(entries, e)
		}
	}
	slices.SortFunc(entries, func(a, b *hintEntry) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	if limit > 0 && len(entries) > limit {
		entries = entries[:limit]
	}
	out := make([]Hint, len(entries))
	for i, e := range entries {
		out[i] = e.hint
	}
	return out
}

// Ack records that owner applied the hint for (ns, key) at version v, and
// removes the stored hint unless it is newer than v (it was replaced while
// v was in flight, and still has to be delivered). It reports whether a
// hint was removed.
func (s *Hints) Ack(owner NodeID, ns string, key []byte, v LWW) bool {
	k := hintKey{ns, string(key)}
	e, ok := s.owners[owner][k]
	if !ok || CompareLWW(e.hint.Version, v) == After {
		return false
	}
	s.remove(owner, k)
	s.stats.Delivered++
	return true
}

// Expire removes every hint whose Expiry is at or before now and returns
// how many it removed.
func (s *Hints) Expire(now int64) int {
	n := 0
	for owner, byKey := range s.owners {
		for k, e := range byKey {
			if e.hint.Expiry <= now {
				s.remove(owner, k)
				n++
			}
		}
	}
	s.stats.Expired += uint64(n)
	return n
}

// DropOwner removes every hint for owner (it left the cluster, or its
// data moved) and returns how many it removed.
func (s *Hints) DropOwner(owner NodeID) int {
	n := len(s.owners[owner])
	delete(s.owners, owner)
	s.stats.Pending -= n
	s.stats.Dropped += uint64(n)
	return n
}

// Owners returns the owners that have hints, sorted: whom the handoff loop
// should watch for.
func (s *Hints) Owners() []NodeID {
	out := make([]NodeID, 0, len(s.owners))
	for o := range s.owners {
		out = append(out, o)
	}
	slices.Sort(out)
	return out
}

// Len returns how many hints are held.
func (s *Hints) Len() int { return s.stats.Pending }

// Stats returns the counts for metrics.
func (s *Hints) Stats() HintStats {
	st := s.stats
	st.Owners = len(s.owners)
	return st
}

func (s *Hints) remove(owner NodeID, k hintKey) {
	byKey := s.owners[owner]
	delete(byKey, k)
	if len(byKey) == 0 {
		delete(s.owners, owner)
	}
	s.stats.Pending--
}

func cloneHint(h Hint) Hint {
	h.Key = slices.Clone(h.Key)
	h.Value = slices.Clone(h.Value)
	return h
}
