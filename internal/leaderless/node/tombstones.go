package node

import (
	"context"
	"fmt"
	"slices"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/versionvec"
)

// CollectTombstonesOnce runs one tombstone sweep: it reads every row of
// the namespaces of Config.Namespaces and Config.Shards and removes, under
// the key's lock, each state that holds only tombstones, the newest
// written more than TombstoneGrace ago (see collectable), keeping the
// shard's Merkle tree in step. It returns how many it removed and the
// first error after sweeping everything it could (an unreadable state is
// skipped). The loop started by New calls it periodically; tests and
// operators may call it directly. With a negative TombstoneGrace it does
// nothing.
func (e *Engine) CollectTombstonesOnce(ctx context.Context) (int, error) {
	if e.cfg.TombstoneGrace < 0 {
		return 0, nil
	}
	collected := 0
	var first error
	for _, ns := range e.sweptNamespaces() {
		n, err := e.collectNamespace(ctx, ns)
		collected += n
		if err != nil {
			if ctx.Err() != nil {
				return collected, ctx.Err()
			}
			if first == nil {
				first = err
			}
		}
	}
	return collected, first
}

// sweptNamespaces returns the namespaces of Config.Namespaces and of
// Config.Shards, sorted, without duplicates.
func (e *Engine) sweptNamespaces() []string {
	var out []string
	if e.cfg.Namespaces != nil {
		out = append(out, e.cfg.Namespaces()...)
	}
	if e.cfg.Shards != nil {
		for _, sr := range e.cfg.Shards() {
			out = append(out, sr.Namespace)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// collectNamespace sweeps one namespace, a page of rows at a time, with
// no lock held across the scan: a candidate is checked again under its
// key's lock before it is removed.
func (e *Engine) collectNamespace(ctx context.Context, ns string) (int, error) {
	collected := 0
	var first error
	var after []byte
	for {
		entries, next, err := e.cfg.Store.Scan(ctx, ns, after, 1000)
		if err != nil {
			return collected, fmt.Errorf("tombstone sweep of %s: %w", ns, err)
		}
		for _, ent := range entries {
			st, err := versionvec.DecodeSiblings(ent.Value)
			if err != nil {
				if first == nil {
					first = kv.Errorf(kv.CodeInternal, "tombstone sweep: stored state of %s/%q: %w", ns, ent.Key, err)
				}
				continue
			}
			if !e.collectable(st) {
				continue
			}
			ok, err := e.collect(ctx, ns, ent.Key)
			if err != nil {
				return collected, err
			}
			if ok {
				collected++
			}
		}
		if next == nil {
			return collected, first
		}
		after = next
	}
}

// collect removes the key's state if it is still collectable under the
// key's lock (a write may have arrived since the scan read it).
func (e *Engine) collect(ctx context.Context, ns string, key []byte) (bool, error) {
	mu := e.keyLock(ns, key)
	mu.Lock()
	defer mu.Unlock()
	cur, old, found, err := e.loadState(ctx, ns, key)
	if err != nil || !found || !e.collectable(cur) {
		return false, err
	}
	if err := e.cfg.Store.Delete(ctx, ns, key); err != nil {
		return false, fmt.Errorf("collect tombstone of %s/%q: %w", ns, key, err)
	}
	e.noteWriteLocked(ns, key, old, nil)
	e.stats.tombstonesCollected.Add(1)
	return true, nil
}

// collectable reports whether st is garbage this node may drop: it holds
// tombstones only, the newest written more than TombstoneGrace ago, and
// this node's clock is past every dot of its own in st (so a write minted
// here later, from nothing, repeats none of them: versionvec.Forgettable).
//
// Age is measured from the tombstone's hlc timestamp (its coordinator's
// clock) to this node's wall clock, the one hint expiry uses: clock skew
// between the two shortens or lengthens the grace by as much, which is
// one reason the grace keeps a wide margin over its floor.
func (e *Engine) collectable(st versionvec.Siblings) bool {
	if e.cfg.TombstoneGrace < 0 || !st.Absent() {
		return false
	}
	newest, ok := st.Winner() // the highest timestamp
	if !ok || newest.Timestamp.WallNanos > e.now()-int64(e.cfg.TombstoneGrace) {
		return false
	}
	return st.Forgettable(e.cfg.Self, e.cfg.Clock.Now())
}
