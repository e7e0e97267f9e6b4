package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/leaderless"
	"github.com/fulcrumdb/fulcrum/internal/transport"
	"github.com/fulcrumdb/fulcrum/internal/versionvec"
)

// serve answers a replica call from a peer.
func (e *Engine) serve(ctx context.Context, from transport.NodeID, _ transport.Kind, payload []byte) ([]byte, error) {
	req, err := decodeRequest(payload)
	if err != nil {
		return nil, kv.Errorf(kv.CodeInvalid, "%w", err)
	}
	req.from = uint64(from)
	return e.handle(ctx, req)
}

// handle runs one replica request, from a peer or from this node's own
// coordinator (which calls it directly rather than through the network).
func (e *Engine) handle(ctx context.Context, req request) ([]byte, error) {
	if e.ctx.Err() != nil {
		return nil, closedError()
	}
	switch req.op {
	case opProbe:
		return nil, nil
	case opTree:
		return e.serveTree(ctx, req)
	case opRange:
		return e.serveRange(ctx, req)
	case opRanges:
		return e.serveRanges(ctx, req)
	case opGet:
		var g getReply
		if req.hintFor != 0 && req.hintFor != e.cfg.Self {
			st, found, _, err := e.readHint(ctx, req.hintFor, req.ns, req.key)
			if err != nil {
				return nil, err
			}
			if found {
				g = getReply{found: true, state: st.Encode()}
			}
		} else {
			_, raw, found, err := e.loadState(ctx, req.ns, req.key)
			if err != nil {
				return nil, err
			}
			if found {
				g = getReply{found: true, state: raw}
			}
		}
		return appendGetReply(nil, g), nil
	case opPut:
		st, err := versionvec.DecodeSiblings(req.state)
		if err != nil {
			return nil, kv.Errorf(kv.CodeInvalid, "put state: %w", err)
		}
		if req.hintFor != 0 && req.hintFor != e.cfg.Self {
			return nil, e.storeHint(ctx, req.hintFor, req.ns, req.key, st, req.lww)
		}
		_, err = e.mergeLocal(ctx, req.ns, req.key, st, req.lww)
		return nil, err
	}
	return nil, kv.Errorf(kv.CodeInvalid, "unknown op %d", req.op)
}

// loadState reads this replica's state of a key, decoded and as stored.
func (e *Engine) loadState(ctx context.Context, ns string, key []byte) (st versionvec.Siblings, raw []byte, found bool, err error) {
	raw, found, err = e.cfg.Store.Get(ctx, ns, key)
	if err != nil || !found {
		return versionvec.Siblings{}, nil, false, err
	}
	st, err = versionvec.DecodeSiblings(raw)
	if err != nil {
		return versionvec.Siblings{}, nil, false, kv.Errorf(kv.CodeInternal, "stored state of %s/%q: %w", ns, key, err)
	}
	if raw == nil {
		raw = []byte{} // found: noteWriteLocked tells found from nil
	}
	return st, raw, true, nil
}

// mergeLocal merges in into this replica's state of the key (Sync, then
// Collapse for last-writer-wins) under the key's lock, writes it back if
// it changed, and returns the merged state.
//
// A key this node holds nothing of does not take a state the tombstone
// sweep would remove at once: that is a tombstone this node has collected
// and a peer not yet (anti-entropy, a repair or a hint brings it back),
// and storing it again would have the two collect it in turns for ever.
// A key this node does hold takes it (it deletes a value this node still
// had) and the sweep removes it later.
func (e *Engine) mergeLocal(ctx context.Context, ns string, key []byte, in versionvec.Siblings, lww bool) (versionvec.Siblings, error) {
	e.observe(in)
	mu := e.keyLock(ns, key)
	mu.Lock()
	defer mu.Unlock()
	cur, old, found, err := e.loadState(ctx, ns, key)
	if err != nil {
		return versionvec.Siblings{}, err
	}
	merged := versionvec.Sync(cur, in)
	if lww {
		merged = merged.Collapse()
	}
	if !found && e.collectable(merged) {
		e.stats.tombstonesRefused.Add(1)
		return merged, nil
	}
	if found && merged.Equal(cur) {
		return cur, nil
	}
	enc := merged.Encode()
	if err := e.cfg.Store.Put(ctx, ns, key, enc); err != nil {
		return versionvec.Siblings{}, fmt.Errorf("store %s/%q: %w", ns, key, err)
	}
	e.noteWriteLocked(ns, key, old, enc)
	return merged, nil
}

// mint records a new write at this node (the coordinator) on its own state
// of the key, persists it and returns the new state, encoded, and the
// write.
func (e *Engine) mint(ctx context.Context, ns string, key, value []byte, del, lww bool, vctx versionvec.Vector) ([]byte, versionvec.Sibling, error) {
	mu := e.keyLock(ns, key)
	mu.Lock()
	defer mu.Unlock()
	cur, old, _, err := e.loadState(ctx, ns, key)
	if err != nil {
		return nil, versionvec.Sibling{}, err
	}
	ts := e.cfg.Clock.Now()
	var (
		next versionvec.Siblings
		dot  versionvec.Dot
	)
	if del {
		next, dot = cur.Delete(vctx, e.cfg.Self, ts)
	} else {
		next, dot = cur.Update(vctx, e.cfg.Self, value, ts)
	}
	if lww {
		next = next.Collapse()
	}
	enc := next.Encode()
	if err := e.cfg.Store.Put(ctx, ns, key, enc); err != nil {
		return nil, versionvec.Sibling{}, fmt.Errorf("store %s/%q: %w", ns, key, err)
	}
	e.noteWriteLocked(ns, key, old, enc)
	w := versionvec.Sibling{Dot: dot, Timestamp: ts, Tombstone: del}
	if !del {
		w.Value = value
	}
	return enc, w, nil
}

// observe moves the clock past every timestamp in st, so that a write
// minted here later wins over what this node has seen.
func (e *Engine) observe(st versionvec.Siblings) {
	for _, s := range st.Values() {
		e.cfg.Clock.Update(s.Timestamp)
	}
}

// A hint record in the store: key hintKey(owner, ns, key), value a
// leaderless.AppendHint record whose Value is a flags byte (flagLWW)
// followed by the encoded state.

func hintKey(owner uint64, ns string, key []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, owner)
	b = appendField(b, []byte(ns))
	return append(b, key...)
}

// readHint returns the state held as a hint for owner.
func (e *Engine) readHint(ctx context.Context, owner uint64, ns string, key []byte) (versionvec.Siblings, bool, bool, error) {
	raw, ok, err := e.cfg.Store.Get(ctx, hintNamespace, hintKey(owner, ns, key))
	if err != nil || !ok {
		return versionvec.Siblings{}, false, false, err
	}
	h, err := leaderless.DecodeHint(raw)
	if err != nil {
		return versionvec.Siblings{}, false, false, kv.Errorf(kv.CodeInternal, "hint record: %w", err)
	}
	st, lww, err := decodeHintValue(h.Value)
	if err != nil {
		return versionvec.Siblings{}, false, false, err
	}
	return st, true, lww, nil
}

func hintValue(st versionvec.Siblings, lww bool) []byte {
	var f byte
	if lww {
		f = flagLWW
	}
	return st.AppendEncode([]byte{f})
}

func decodeHintValue(b []byte) (versionvec.Siblings, bool, error) {
	if len(b) == 0 || b[0]&^flagLWW != 0 {
		return versionvec.Siblings{}, false, kv.Errorf(kv.CodeInternal, "hint value: %w", ErrBadMessage)
	}
	st, err := versionvec.DecodeSiblings(b[1:])
	if err != nil {
		return versionvec.Siblings{}, false, kv.Errorf(kv.CodeInternal, "hint state: %w", err)
	}
	return st, b[0]&flagLWW != 0, nil
}

// storeHint keeps in as a hint for owner: merged with the hint already
// held for the key, persisted, then indexed. Each stored version is a
// fresh hlc reading of this node, so a merged hint always replaces the
// older one in the index. A full index refuses the write.
func (e *Engine) storeHint(ctx context.Context, owner uint64, ns string, key []byte, in versionvec.Siblings, lww bool) error {
	e.observe(in)
	hk := hintKey(owner, ns, key)
	mu := e.keyLock(hintNamespace, hk)
	mu.Lock()
	defer mu.Unlock()
	prev, had, _, err := e.readHint(ctx, owner, ns, key)
	if err != nil {
		return err
	}
	if !had {
		e.mu.Lock()
		full := e.mu.hints.Len() >= e.cfg.HintLimit
		e.mu.Unlock()
		if full {
			e.stats.hintsRefused.Add(1)
			return kv.Errorf(kv.CodeUnavailable, "hint for node %d: %w", owner, leaderless.ErrHintsFull)
		}
	}
	merged := versionvec.Sync(prev, in)
	if lww {
		merged = merged.Collapse()
	}
	h := leaderless.Hint{
		Owner:     nodeID(owner),
		Namespace: ns,
		Key:       key,
		Version:   leaderless.LWW{Timestamp: e.cfg.Clock.Now(), Node: e.self},
		Value:     hintValue(merged, lww),
		Expiry:    e.now() + int64(e.cfg.HintWindow),
	}
	if err := e.cfg.Store.Put(ctx, hintNamespace, hk, leaderless.AppendHint(nil, h)); err != nil {
		return fmt.Errorf("store hint for node %d: %w", owner, err)
	}
	e.mu.Lock()
	err = e.mu.hints.Add(h)
	e.mu.Unlock()
	if errors.Is(err, leaderless.ErrHintsFull) {
		// Lost a race for the last slot: undo the record (there was none
		// before, or Add would have replaced rather than refused).
		e.stats.hintsRefused.Add(1)
		if derr := e.cfg.Store.Delete(ctx, hintNamespace, hk); derr != nil {
			return fmt.Errorf("undo hint for node %d: %w", owner, derr)
		}
		return kv.Errorf(kv.CodeUnavailable, "hint for node %d: %w", owner, err)
	}
	if err != nil {
		return kv.Errorf(kv.CodeInternal, "hint for node %d: %w", owner, err)
	}
	e.stats.hintsStored.Add(1)
	return nil
}

// loadHints rebuilds the hint index from the store (at New).
func (e *Engine) loadHints(ctx context.Context) error {
	var after []byte
	for {
		entries, next, err := e.cfg.Store.Scan(ctx, hintNamespace, after, 1000)
		if err != nil {
			return fmt.Errorf("load hints: %w", err)
		}
		for _, ent := range entries {
			h, err := leaderless.DecodeHint(ent.Value)
			if err != nil {
				return fmt.Errorf("load hint %x: %w", ent.Key, err)
			}
			if err := e.mu.hints.Add(h); err != nil {
				// Over the limit (it was lowered): the record stays on disk
				// and is picked up by a later restart; until then its key
				// converges through read repair.
				e.unindexed.Store(true)
				e.cfg.Logger.Warn("hint not loaded", "owner", h.Owner, "err", err)
			}
		}
		if next == nil {
			return nil
		}
		after = next
	}
}
