package node

import (
	"context"
	"fmt"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/leaderless"
)

// every runs round every d until Close, logging its failures as what:
// the engine's periodic loops (hint handoff, the tombstone sweep).
func (e *Engine) every(d time.Duration, what string, round func(context.Context) (int, error)) {
	defer e.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
			if _, err := round(e.ctx); err != nil && e.ctx.Err() == nil {
				e.cfg.Logger.Warn(what+" failed", "err", err)
			}
		}
	}
}

// HandoffOnce runs one round of hinted handoff: it drops the hints older
// than HintWindow, then, for every owner with hints that is a member and
// answers a probe, delivers up to HandoffBatch of its hints (a put the
// owner merges like any other) and removes those it acknowledged. It
// returns how many hints were delivered. The loop started by New calls it
// periodically; tests and operators may call it directly.
func (e *Engine) HandoffOnce(ctx context.Context) (int, error) {
	if err := e.expireHints(ctx); err != nil {
		return 0, err
	}
	now := e.now()
	e.mu.Lock()
	owners := e.mu.hints.Owners()
	e.mu.Unlock()
	members := e.members()
	delivered := 0
	for _, owner := range owners {
		id := parseNode(owner)
		if members != nil && !members[id] {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, e.cfg.ProbeTimeout)
		_, err := e.call(pctx, id, request{op: opProbe})
		cancel()
		if err != nil {
			e.stats.probesFailed.Add(1)
			continue
		}
		e.mu.Lock()
		due := e.mu.hints.Due(owner, now, e.cfg.HandoffBatch)
		e.mu.Unlock()
		for _, h := range due {
			if err := e.deliver(ctx, id, h); err != nil {
				e.stats.deliveriesFailed.Add(1)
				if ctx.Err() != nil {
					return delivered, ctx.Err()
				}
				break // the owner is failing again; retry next round
			}
			delivered++
		}
	}
	return delivered, nil
}

// deliver hands one hint to its owner and, once applied there, removes it
// unless a newer write for the key arrived meanwhile.
func (e *Engine) deliver(ctx context.Context, owner uint64, h leaderless.Hint) error {
	st, lww, err := decodeHintValue(h.Value)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, e.cfg.RequestTimeout)
	_, err = e.call(cctx, owner, request{op: opPut, ns: h.Namespace, key: h.Key, lww: lww, state: st.Encode()})
	cancel()
	if err != nil {
		return fmt.Errorf("deliver hint to node %d: %w", owner, err)
	}
	hk := hintKey(owner, h.Namespace, h.Key)
	mu := e.keyLock(hintNamespace, hk)
	mu.Lock()
	defer mu.Unlock()
	e.mu.Lock()
	removed := e.mu.hints.Ack(h.Owner, h.Namespace, h.Key, h.Version)
	e.mu.Unlock()
	if !removed {
		return nil
	}
	e.stats.hintsDelivered.Add(1)
	if err := e.cfg.Store.Delete(ctx, hintNamespace, hk); err != nil {
		return fmt.Errorf("delete delivered hint: %w", err)
	}
	return nil
}

// expireHints drops the hints whose window has passed, from the index and
// then from the store. The store is scanned (the index does not say which
// hints it expired) only when the index expired some, or holds fewer
// records than the store (HintLimit lowered across a restart).
func (e *Engine) expireHints(ctx context.Context) error {
	now := e.now()
	e.mu.Lock()
	n := e.mu.hints.Expire(now)
	e.mu.Unlock()
	e.stats.hintsExpired.Add(uint64(n))
	if n == 0 && !e.unindexed.Load() {
		return nil // every record is indexed, and none expired
	}
	var after []byte
	for {
		entries, next, err := e.cfg.Store.Scan(ctx, hintNamespace, after, 1000)
		if err != nil {
			return fmt.Errorf("scan hints: %w", err)
		}
		for _, ent := range entries {
			h, err := leaderless.DecodeHint(ent.Value)
			if err != nil || h.Expiry > now {
				continue
			}
			if err := e.dropIfExpired(ctx, ent.Key, now); err != nil {
				return err
			}
		}
		if next == nil {
			return nil
		}
		after = next
	}
}

// dropIfExpired deletes the hint record at hk if it is still expired
// under the key's lock (a write may have just renewed it).
func (e *Engine) dropIfExpired(ctx context.Context, hk []byte, now int64) error {
	mu := e.keyLock(hintNamespace, hk)
	mu.Lock()
	defer mu.Unlock()
	raw, ok, err := e.cfg.Store.Get(ctx, hintNamespace, hk)
	if err != nil || !ok {
		return err
	}
	if h, err := leaderless.DecodeHint(raw); err == nil && h.Expiry > now {
		return nil
	}
	if err := e.cfg.Store.Delete(ctx, hintNamespace, hk); err != nil {
		return fmt.Errorf("drop expired hint: %w", err)
	}
	return nil
}

// members returns the current membership as a set, nil when every node is
// a member.
func (e *Engine) members() map[uint64]bool {
	if e.cfg.Nodes == nil {
		return nil
	}
	nodes := e.cfg.Nodes()
	m := make(map[uint64]bool, len(nodes))
	for _, id := range nodes {
		m[id] = true
	}
	return m
}
