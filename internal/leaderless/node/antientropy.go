package node

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/merkle"
	"github.com/fulcrumdb/fulcrum/internal/versionvec"
)

// ShardReplicas names one shard of a leaderless namespace and its home
// replicas, for anti-entropy.
type ShardReplicas struct {
	Namespace string
	Shard     int
	// Replicas are the shard's home replicas (the first N of its keys'
	// preference lists).
	Replicas []uint64
	// KeepSiblings is the namespace's conflict mode (see WriteOptions);
	// merges of states pulled by anti-entropy follow it.
	KeepSiblings bool
}

// treeID names the Merkle tree of one shard of one namespace.
type treeID struct {
	ns    string
	shard int
}

// shardTree is one shard's Merkle tree over (key, encoded state) items.
// It is built from the store the first time it is needed and then kept up
// to date by every local write of the shard's keys.
type shardTree struct {
	mu struct {
		sync.Mutex
		tree *merkle.Tree // nil until built
	}
}

// tree returns the shard's tree entry, creating an unbuilt one.
func (e *Engine) tree(id treeID) *shardTree {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.mu.trees[id]
	if t == nil {
		t = &shardTree{}
		e.mu.trees[id] = t
	}
	return t
}

// noteWriteLocked updates the key's shard tree after a local write of its
// state (old, when found, to enc; nil enc: the key was removed, as by the
// tombstone sweep). It is called with the key's stripe held, so a
// concurrent build (which holds every stripe) sees either the store
// before the write and the update after, or neither.
func (e *Engine) noteWriteLocked(ns string, key []byte, old versionvec.Siblings, found bool, enc []byte) {
	if e.cfg.Shard == nil {
		return
	}
	t := e.tree(treeID{ns, e.cfg.Shard(ns, key)})
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.tree == nil {
		return // not built: the build will read the store
	}
	var oldItem, newItem uint64 // 0: no item (ItemHash is never 0)
	if found {
		oldItem = merkle.ItemHash(key, old.Encode())
	}
	if enc != nil {
		newItem = merkle.ItemHash(key, enc)
	}
	t.mu.tree.Update(merkle.KeyHash(key), oldItem, newItem)
}

// builtTree returns a copy of the shard's tree, building it from the store
// first if needed. The build holds every key stripe, so it stalls this
// node's writes for one scan of the namespace: once per shard per process.
func (e *Engine) builtTree(ctx context.Context, id treeID) (*merkle.Tree, error) {
	t := e.tree(id)
	t.mu.Lock()
	if t.mu.tree != nil {
		c := t.mu.tree.Clone()
		t.mu.Unlock()
		return c, nil
	}
	t.mu.Unlock()
	for i := range e.keyLocks {
		e.keyLocks[i].Lock()
	}
	defer func() {
		for i := range e.keyLocks {
			e.keyLocks[i].Unlock()
		}
	}()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.tree != nil {
		return t.mu.tree.Clone(), nil
	}
	tree, err := merkle.New(e.cfg.TreeDepth)
	if err != nil {
		return nil, err
	}
	err = e.scanShard(ctx, id, merkle.Range{First: 0, Last: ^uint64(0)}, func(key, state []byte) {
		tree.Add(merkle.KeyHash(key), merkle.ItemHash(key, state))
	})
	if err != nil {
		return nil, err
	}
	t.mu.tree = tree
	return tree.Clone(), nil
}

// scanShard calls fn for every stored key of the shard whose key hash is
// in r. It reads the whole namespace: the store has no shard index.
func (e *Engine) scanShard(ctx context.Context, id treeID, r merkle.Range, fn func(key, state []byte)) error {
	var after []byte
	for {
		entries, next, err := e.cfg.Store.Scan(ctx, id.ns, after, 1000)
		if err != nil {
			return fmt.Errorf("scan %s shard %d: %w", id.ns, id.shard, err)
		}
		for _, ent := range entries {
			if e.cfg.Shard(id.ns, ent.Key) == id.shard && r.Contains(merkle.KeyHash(ent.Key)) {
				fn(ent.Key, ent.Value)
			}
		}
		if next == nil {
			return nil
		}
		after = next
	}
}

// antiEntropyLoop runs AntiEntropyOnce every AntiEntropyInterval until
// Close.
func (e *Engine) antiEntropyLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.AntiEntropyInterval)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
			if err := e.AntiEntropyOnce(e.ctx); err != nil && e.ctx.Err() == nil {
				e.cfg.Logger.Warn("anti-entropy round failed", "err", err)
			}
		}
	}
}

// AntiEntropyOnce compares every shard this node replicates (Config.Shards)
// with each other home replica of the shard: a round-by-round Merkle diff
// over RPC, then, for each differing key-hash range, the peer's states are
// merged here and this node's are sent there (a put, merged with Sync). It
// returns the first error after trying every pair; a peer that cannot be
// reached is skipped and counted. Without Config.Shards it does nothing.
func (e *Engine) AntiEntropyOnce(ctx context.Context) error {
	if e.cfg.Shards == nil {
		return nil
	}
	var first error
	for _, sr := range e.cfg.Shards() {
		if !slices.Contains(sr.Replicas, e.cfg.Self) {
			continue // not ours: nothing to compare
		}
		for _, peer := range sr.Replicas {
			if peer == e.cfg.Self {
				continue
			}
			if err := e.syncShard(ctx, sr, peer); err != nil {
				e.stats.aeFailed.Add(1)
				if first == nil {
					first = err
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				continue
			}
			e.stats.aeRounds.Add(1)
		}
	}
	if first == nil {
		e.stats.aeLastFull.Store(e.cfg.Now().UnixNano())
	}
	return first
}

// syncShard runs one anti-entropy exchange of a shard with peer.
func (e *Engine) syncShard(ctx context.Context, sr ShardReplicas, peer uint64) error {
	id := treeID{sr.Namespace, sr.Shard}
	local, err := e.builtTree(ctx, id)
	if err != nil {
		return err
	}
	d := merkle.NewDiffer(local, 4)
	for q, ok := d.Next(); ok; q, ok = d.Next() {
		body, err := e.remote(ctx, peer, request{op: opTree, ns: id.ns, shard: id.shard, query: q})
		if err != nil {
			return fmt.Errorf("anti-entropy %s shard %d with node %d: %w", id.ns, id.shard, peer, err)
		}
		a, err := decodeAnswer(body)
		if err != nil {
			return fmt.Errorf("anti-entropy answer from node %d: %w", peer, err)
		}
		if err := d.Receive(a); err != nil {
			return fmt.Errorf("anti-entropy answer from node %d: %w", peer, err)
		}
	}
	lww := !sr.KeepSiblings
	ranges := d.Ranges()
	if len(ranges) > maxRangeRequests {
		// Differences everywhere (a replica that missed a lot): one pass
		// over the shard costs one scan on each side, where a request per
		// range costs a scan of the namespace each.
		ranges = []merkle.Range{{First: ranges[0].First, Last: ranges[len(ranges)-1].Last}}
	}
	for _, r := range ranges {
		e.stats.aeRanges.Add(1)
		body, err := e.remote(ctx, peer, request{op: opRange, ns: id.ns, shard: id.shard, rng: r})
		if err != nil {
			return fmt.Errorf("anti-entropy range from node %d: %w", peer, err)
		}
		theirs, err := decodeEntries(body)
		if err != nil {
			return fmt.Errorf("anti-entropy range from node %d: %w", peer, err)
		}
		have := make(map[string][]byte, len(theirs))
		for _, ent := range theirs {
			have[string(ent.Key)] = ent.Value
			st, err := versionvec.DecodeSiblings(ent.Value)
			if err != nil {
				return fmt.Errorf("anti-entropy state from node %d: %w", peer, err)
			}
			if _, err := e.mergeLocal(ctx, id.ns, ent.Key, st, lww); err != nil {
				return err
			}
			e.stats.aePulled.Add(1)
		}
		// Now every key here in r holds at least what the peer holds:
		// send the ones whose state differs from the peer's (the peer
		// merges), several at a time.
		var ours []Entry
		if err := e.scanShard(ctx, id, r, func(key, state []byte) {
			if !bytes.Equal(have[string(key)], state) {
				ours = append(ours, Entry{Key: key, Value: state})
			}
		}); err != nil {
			return err
		}
		if err := e.push(ctx, peer, id.ns, lww, ours); err != nil {
			return err
		}
	}
	return nil
}

// Anti-entropy limits: beyond maxRangeRequests differing ranges a shard
// is compared in one pass; pushParallel puts are in flight at once.
const (
	maxRangeRequests = 8
	pushParallel     = 16
)

// push sends states to peer, pushParallel at a time; it returns the first
// error once the sends in flight are done.
func (e *Engine) push(ctx context.Context, peer uint64, ns string, lww bool, states []Entry) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, pushParallel)
	for _, ent := range states {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := e.remote(ctx, peer, request{op: opPut, ns: ns, key: ent.Key, lww: lww, state: ent.Value}); err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("anti-entropy push to node %d: %w", peer, err)
				}
				mu.Unlock()
				return
			}
			e.stats.aePushed.Add(1)
		}()
	}
	wg.Wait()
	return first
}

// remote calls peer with the request timeout.
func (e *Engine) remote(ctx context.Context, peer uint64, req request) ([]byte, error) {
	cctx, cancel := context.WithTimeout(ctx, e.cfg.RequestTimeout)
	defer cancel()
	return e.call(cctx, peer, req)
}

// serveTree answers a peer's Merkle query from the shard's tree.
func (e *Engine) serveTree(ctx context.Context, req request) ([]byte, error) {
	if e.cfg.Shard == nil {
		return nil, kv.Errorf(kv.CodeDisabled, "anti-entropy is not configured on this node")
	}
	t, err := e.builtTree(ctx, treeID{req.ns, req.shard})
	if err != nil {
		return nil, err
	}
	a, err := t.Answer(req.query)
	if err != nil {
		return nil, kv.Errorf(kv.CodeInvalid, "%w", err)
	}
	return appendAnswer(nil, a), nil
}

// serveRange returns the states of the shard's keys in a key-hash range.
func (e *Engine) serveRange(ctx context.Context, req request) ([]byte, error) {
	if e.cfg.Shard == nil {
		return nil, kv.Errorf(kv.CodeDisabled, "anti-entropy is not configured on this node")
	}
	var out []Entry
	err := e.scanShard(ctx, treeID{req.ns, req.shard}, req.rng, func(key, state []byte) {
		out = append(out, Entry{Key: key, Value: state})
	})
	if err != nil {
		return nil, err
	}
	return appendEntries(nil, out), nil
}
