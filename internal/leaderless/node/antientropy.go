package node

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
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
// state from old to enc, both as stored (nil old: the key had no state;
// nil enc: the key was removed, as by the tombstone sweep). It is called
// with the key's stripe held, so a concurrent build (which holds every
// stripe) sees either the store before the write and the update after, or
// neither.
func (e *Engine) noteWriteLocked(ns string, key []byte, old, enc []byte) {
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
	if old != nil {
		oldItem = merkle.ItemHash(key, old)
	}
	if enc != nil {
		newItem = merkle.ItemHash(key, enc)
	}
	t.mu.tree.Update(merkle.KeyHash(key), oldItem, newItem)
}

// builtTree returns a copy of the shard's tree, building it first if
// needed (see withTree).
func (e *Engine) builtTree(ctx context.Context, id treeID) (*merkle.Tree, error) {
	var c *merkle.Tree
	err := e.withTree(ctx, id, func(t *merkle.Tree) { c = t.Clone() })
	return c, err
}

// withTree calls fn with the shard's tree, under the tree's lock (fn must
// not keep it), building it from the store first if needed. The build
// holds every key stripe, so it stalls this node's writes for one scan of
// the namespace: once per shard per process.
func (e *Engine) withTree(ctx context.Context, id treeID, fn func(*merkle.Tree)) error {
	t := e.tree(id)
	t.mu.Lock()
	if t.mu.tree != nil {
		fn(t.mu.tree)
		t.mu.Unlock()
		return nil
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
	if t.mu.tree == nil {
		tree, err := merkle.New(e.cfg.TreeDepth)
		if err != nil {
			return err
		}
		err = e.scanSpans(ctx, id.ns, wholeShard(id.shard), nil, nil, func(key, state []byte) {
			tree.Add(merkle.KeyHash(key), merkle.ItemHash(key, state))
		})
		if err != nil {
			return fmt.Errorf("build tree of %s shard %d: %w", id.ns, id.shard, err)
		}
		t.mu.tree = tree
	}
	fn(t.mu.tree)
	return nil
}

// spanIndex answers whether a key lies in a set of spans: per shard, its
// ranges sorted and merged, so that their Lasts ascend too.
type spanIndex map[int][]merkle.Range

func newSpanIndex(spans []span) spanIndex {
	x := make(spanIndex)
	for _, sp := range spans {
		x[sp.shard] = append(x[sp.shard], sp.rng)
	}
	for shard, rs := range x {
		slices.SortFunc(rs, func(a, b merkle.Range) int { return cmp.Compare(a.First, b.First) })
		out := rs[:1]
		for _, r := range rs[1:] {
			last := &out[len(out)-1]
			if last.Last == ^uint64(0) || r.First <= last.Last+1 {
				last.Last = max(last.Last, r.Last)
				continue
			}
			out = append(out, r)
		}
		x[shard] = out
	}
	return x
}

// wholeShard is the index of every key of one shard.
func wholeShard(shard int) spanIndex {
	return spanIndex{shard: {{First: 0, Last: ^uint64(0)}}}
}

func (x spanIndex) contains(shard int, keyHash uint64) bool {
	rs := x[shard]
	i := sort.Search(len(rs), func(i int) bool { return rs[i].Last >= keyHash })
	return i < len(rs) && rs[i].First <= keyHash
}

// scanSpans calls fn for every stored key of ns after after (nil: from
// the first) up to and including end (nil: to the last) that lies in one
// of idx's spans. It reads every key of the namespace in that interval:
// the store has no shard index.
func (e *Engine) scanSpans(ctx context.Context, ns string, idx spanIndex, after, end []byte, fn func(key, state []byte)) error {
	for {
		entries, next, err := e.cfg.Store.Scan(ctx, ns, after, e.scanChunk)
		if err != nil {
			return fmt.Errorf("scan %s: %w", ns, err)
		}
		for _, ent := range entries {
			if end != nil && bytes.Compare(ent.Key, end) > 0 {
				return nil
			}
			if idx.contains(e.cfg.Shard(ns, ent.Key), merkle.KeyHash(ent.Key)) {
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
	since := e.cfg.Now().UnixNano() // the start of the previous round
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
			start := e.cfg.Now().UnixNano()
			err := e.antiEntropyRound(e.ctx, since)
			since = start
			if err != nil && e.ctx.Err() == nil {
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
//
// The ranges of every shard of a namespace that differ with one peer are
// exchanged together, so that the whole exchange costs one pass over the
// namespace on each side (the store has no shard index), however many
// shards and ranges differ: under a steady write load some ranges always
// differ (writes in flight), and a scan per range was most of a node's
// work.
func (e *Engine) AntiEntropyOnce(ctx context.Context) error {
	return e.antiEntropyRound(ctx, 0)
}

// antiEntropyRound is AntiEntropyOnce, lazy when since (Unix ns) is not 0:
// a namespace that the peer itself has exchanged with this node after
// since (the start of this node's previous round) is only diffed. The
// loop passes it, so that each pair is exchanged once per round of one of
// its two sides rather than by both (an exchange pulls and pushes, and
// costs a scan of the namespace on each side; under a steady write load
// some range always differs), and still by either side alone when the
// other's rounds stop reaching this node.
func (e *Engine) antiEntropyRound(ctx context.Context, since int64) error {
	if e.cfg.Shards == nil {
		return nil
	}
	var first error
	for _, t := range aeTasks(e.cfg.Self, e.cfg.Shards()) {
		t.since = since
		done, failed, err := e.syncNamespace(ctx, t)
		e.stats.aeRounds.Add(done)
		e.stats.aeFailed.Add(failed)
		if err != nil && first == nil {
			first = err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if first == nil {
		e.stats.aeLastFull.Store(e.cfg.Now().UnixNano())
	}
	return first
}

// aeTask is the work of one round with one peer over one namespace: the
// shards of the namespace both replicate.
type aeTask struct {
	peer   uint64
	ns     string
	lww    bool
	shards []int
	since  int64 // not 0: skip the exchange if the peer ran one after it
}

// peerNamespace names a namespace exchanged with one peer.
type peerNamespace struct {
	peer uint64
	ns   string
}

// noteExchanged records that peer has just finished exchanging ns with
// this node.
func (e *Engine) noteExchanged(peer uint64, ns string) {
	now := e.cfg.Now().UnixNano()
	e.exchanged.Lock()
	e.exchanged.at[peerNamespace{peer, ns}] = now
	e.exchanged.Unlock()
}

// exchangedSince reports whether peer finished exchanging ns with this
// node after since (Unix ns).
func (e *Engine) exchangedSince(peer uint64, ns string, since int64) bool {
	e.exchanged.Lock()
	at, ok := e.exchanged.at[peerNamespace{peer, ns}]
	e.exchanged.Unlock()
	return ok && at > since
}

// aeTasks groups the shards self replicates by peer and namespace, in the
// order they first appear in srs.
func aeTasks(self uint64, srs []ShardReplicas) []aeTask {
	var tasks []aeTask
	at := make(map[peerNamespace]int)
	for _, sr := range srs {
		if !slices.Contains(sr.Replicas, self) {
			continue // not ours: nothing to compare
		}
		for _, peer := range sr.Replicas {
			if peer == self {
				continue
			}
			k := peerNamespace{peer, sr.Namespace}
			i, ok := at[k]
			if !ok {
				i = len(tasks)
				at[k] = i
				tasks = append(tasks, aeTask{peer: peer, ns: sr.Namespace, lww: !sr.KeepSiblings})
			}
			tasks[i].shards = append(tasks[i].shards, sr.Shard)
		}
	}
	return tasks
}

// syncNamespace diffs each shard of t with the peer, then exchanges the
// keys of every differing range in one pass. It returns how many shard
// comparisons completed and failed, and the first error.
func (e *Engine) syncNamespace(ctx context.Context, t aeTask) (done, failed uint64, err error) {
	var (
		spans   []span
		differ  uint64 // shards with differing ranges
		nranges uint64
	)
	for _, shard := range t.shards {
		ranges, derr := e.diffShard(ctx, treeID{t.ns, shard}, t.peer)
		if derr != nil {
			failed++
			if err == nil {
				err = derr
			}
			if ctx.Err() != nil {
				return done, failed, err
			}
			continue
		}
		if len(ranges) == 0 {
			done++
			continue
		}
		if len(ranges) > maxShardSpans {
			// Differences everywhere (a replica that missed a lot): one
			// range keeps the request small, and the scan costs the same.
			ranges = []merkle.Range{{First: ranges[0].First, Last: ranges[len(ranges)-1].Last}}
		}
		nranges += uint64(len(ranges))
		for _, r := range ranges {
			spans = append(spans, span{shard: shard, rng: r})
		}
		differ++
	}
	if len(spans) == 0 || (t.since != 0 && e.exchangedSince(t.peer, t.ns, t.since)) {
		return done + differ, failed, err
	}
	e.stats.aeRanges.Add(nranges)
	if xerr := e.exchange(ctx, t, spans); xerr != nil {
		failed += differ
		if err == nil {
			err = xerr
		}
		return done, failed, err
	}
	return done + differ, failed, err
}

// diffShard runs the Merkle diff of one shard with peer and returns the
// differing key-hash ranges.
func (e *Engine) diffShard(ctx context.Context, id treeID, peer uint64) ([]merkle.Range, error) {
	local, err := e.builtTree(ctx, id)
	if err != nil {
		return nil, err
	}
	d := merkle.NewDiffer(local, 4)
	for q, ok := d.Next(); ok; q, ok = d.Next() {
		body, err := e.remote(ctx, peer, request{op: opTree, ns: id.ns, shard: id.shard, query: q})
		if err != nil {
			return nil, fmt.Errorf("anti-entropy %s shard %d with node %d: %w", id.ns, id.shard, peer, err)
		}
		a, err := decodeAnswer(body)
		if err != nil {
			return nil, fmt.Errorf("anti-entropy answer from node %d: %w", peer, err)
		}
		if err := d.Receive(a); err != nil {
			return nil, fmt.Errorf("anti-entropy answer from node %d: %w", peer, err)
		}
	}
	return d.Ranges(), nil
}

// exchange brings this node and the peer level over spans, page by page
// of the peer's scan: it merges the peer's states here, then sends the
// peer this node's states in the same key interval that differ from the
// peer's (now that every key here holds at least what the peer holds).
func (e *Engine) exchange(ctx context.Context, t aeTask, spans []span) error {
	idx := newSpanIndex(spans)
	var after []byte
	for {
		body, err := e.remote(ctx, t.peer, request{op: opRanges, ns: t.ns, after: after, spans: spans})
		if err != nil {
			return fmt.Errorf("anti-entropy ranges of %s from node %d: %w", t.ns, t.peer, err)
		}
		if err := e.aeWait(ctx, len(body)); err != nil {
			return err
		}
		page, err := decodeRangesPage(body)
		if err == nil && page.next != nil && after != nil && bytes.Compare(page.next, after) <= 0 {
			err = fmt.Errorf("%w: page does not advance", ErrBadMessage) // would loop for ever
		}
		if err != nil {
			return fmt.Errorf("anti-entropy ranges of %s from node %d: %w", t.ns, t.peer, err)
		}
		have := make(map[string][]byte, len(page.entries))
		for _, ent := range page.entries {
			have[string(ent.Key)] = ent.Value
			st, err := versionvec.DecodeSiblings(ent.Value)
			if err != nil {
				return fmt.Errorf("anti-entropy state from node %d: %w", t.peer, err)
			}
			if _, err := e.mergeLocal(ctx, t.ns, ent.Key, st, t.lww); err != nil {
				return err
			}
			e.stats.aePulled.Add(1)
		}
		var ours []Entry
		if err := e.scanSpans(ctx, t.ns, idx, after, page.next, func(key, state []byte) {
			if !bytes.Equal(have[string(key)], state) {
				ours = append(ours, Entry{Key: key, Value: state})
			}
		}); err != nil {
			return err
		}
		if err := e.push(ctx, t.peer, t.ns, t.lww, ours); err != nil {
			return err
		}
		if page.next == nil {
			return nil
		}
		after = page.next
	}
}

// Anti-entropy limits. Beyond maxShardSpans differing ranges a shard's
// are sent as the one range covering them. A page of opRanges ends once
// the scan has read pageKeys keys or collected pageBytes of states, which
// bounds its reply and the time it takes against RequestTimeout. The store
// is scanned scanChunk keys at a time. pushParallel puts are in flight at
// once.
const (
	maxShardSpans = 64
	pageKeys      = 16 << 10
	pageBytes     = 4 << 20
	scanChunk     = 1000
	pushParallel  = 16
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
		if err := e.aeWait(ctx, len(ent.Key)+len(ent.Value)); err != nil {
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
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
	var (
		a    merkle.Answer
		qerr error
	)
	if err := e.withTree(ctx, treeID{req.ns, req.shard}, func(t *merkle.Tree) { a, qerr = t.Answer(req.query) }); err != nil {
		return nil, err
	}
	if qerr != nil {
		return nil, kv.Errorf(kv.CodeInvalid, "%w", qerr)
	}
	return appendAnswer(nil, a), nil
}

// serveRange returns the states of the shard's keys in a key-hash range
// (opRange, which peers of an older version send).
func (e *Engine) serveRange(ctx context.Context, req request) ([]byte, error) {
	if e.cfg.Shard == nil {
		return nil, kv.Errorf(kv.CodeDisabled, "anti-entropy is not configured on this node")
	}
	var out []Entry
	err := e.scanSpans(ctx, req.ns, newSpanIndex([]span{{shard: req.shard, rng: req.rng}}), nil, nil, func(key, state []byte) {
		out = append(out, Entry{Key: key, Value: state})
	})
	if err != nil {
		return nil, err
	}
	return appendEntries(nil, out), nil
}

// serveRanges returns one page of the states of the keys in req's spans:
// it scans the namespace after req.after until the end, pageKeys keys or
// pageBytes of matching states, and says where to resume.
func (e *Engine) serveRanges(ctx context.Context, req request) ([]byte, error) {
	if e.cfg.Shard == nil {
		return nil, kv.Errorf(kv.CodeDisabled, "anti-entropy is not configured on this node")
	}
	idx := newSpanIndex(req.spans)
	var (
		page          rangesPage
		scanned, size int
	)
	after := req.after
	for {
		entries, next, err := e.cfg.Store.Scan(ctx, req.ns, after, e.scanChunk)
		if err != nil {
			return nil, fmt.Errorf("scan %s: %w", req.ns, err)
		}
		for _, ent := range entries {
			if idx.contains(e.cfg.Shard(req.ns, ent.Key), merkle.KeyHash(ent.Key)) {
				page.entries = append(page.entries, ent)
				size += len(ent.Key) + len(ent.Value)
			}
		}
		scanned += len(entries)
		if next == nil {
			if req.from != 0 {
				e.noteExchanged(req.from, req.ns)
			}
			return appendRangesPage(nil, page), nil
		}
		after = next
		if scanned >= e.pageKeys || size >= pageBytes {
			page.next = after
			return appendRangesPage(nil, page), nil
		}
	}
}

// aeMinBurst is the smallest burst of the anti-entropy rate limit; a
// page larger than the burst waits for it a burst at a time.
const aeMinBurst = 64 << 10

// aeWait paces n bytes of anti-entropy traffic (Config.AntiEntropyBandwidth).
func (e *Engine) aeWait(ctx context.Context, n int) error {
	if e.aeLimit == nil {
		return nil
	}
	for n > 0 {
		chunk := min(n, e.aeLimit.Burst())
		if err := e.aeLimit.WaitN(ctx, chunk); err != nil {
			return fmt.Errorf("anti-entropy bandwidth limit: %w", err)
		}
		n -= chunk
	}
	return nil
}
