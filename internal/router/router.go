package router

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/placement"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// Engine is what the router needs from the strong engine (raftstore).
type Engine interface {
	Write(ctx context.Context, group uint64, b kv.Batch) ([]kv.Result, error)
	ReadBarrier(ctx context.Context, group uint64) error
	// Replica identifies the local replica of a group (it changes when
	// the replica is removed and recreated; ok is false when there is
	// none), so a read can tell that its rows were deleted under it.
	Replica(group uint64) (id uint64, ok bool)
	// Leader is the group's leader as this node last saw it (0: none
	// known or no local replica).
	Leader(group uint64) uint64
}

// LocalStore is the node's state machine, read after a barrier.
type LocalStore interface {
	Get(ctx context.Context, ns string, key []byte) (kv.Value, bool, error)
	Scan(ctx context.Context, req kv.ScanRequest) (kv.ScanResult, error)
	Keyspace() []kv.NamespaceStats
	Count(ns string) int64
}

// Caller sends forwarded requests to other nodes.
type Caller interface {
	Call(ctx context.Context, to transport.NodeID, kind transport.Kind, payload []byte) ([]byte, error)
}

// Namespace is a namespace's layout as the router needs it.
type Namespace struct {
	Name   string
	Shards int
	// Groups[s] is shard s's Raft group id.
	Groups []uint64
	// Replicas[s] are the nodes with a replica of shard s, preferred
	// leader first.
	Replicas [][]uint64
	// Policy is the namespace's policy: a strong one is served by the
	// Raft groups, an eventual or weak one by the leaderless engine, a
	// replication=primary one by the primary/replica engine.
	Policy kv.Policy
	// Primaries[s] is shard s's primary as the control plane last
	// recorded it (replication=primary; 0: none yet). Nodes with a
	// replica go by their engine's fresher word.
	Primaries []uint64
}

// Config configures a Router.
type Config struct {
	Self       uint64
	Engine     Engine
	Store      LocalStore
	Transport  Caller
	Namespaces []Namespace
	// Leaderless serves eventual and weak namespaces (nil: they are
	// refused with NOT_SUPPORTED).
	Leaderless Leaderless
	// Primaries serves replication=primary namespaces (nil: refused with
	// NOT_SUPPORTED).
	Primaries Primaries
	// Refresh, if set, brings the namespace table up to date (SetNamespaces)
	// before a request for an unknown namespace is refused.
	Refresh func(ctx context.Context) error
	// ReadsToLeader sends a follower replica's reads to the shard's leader
	// (set with lease reads: the leader then answers without a quorum
	// round, where a follower would still need one).
	ReadsToLeader bool
	// Timeout is the deadline of requests that come without one
	// (default 2 s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// Router routes requests to shards. It implements the Store interfaces of
// the resp and httpapi front ends, and transport.Handler for forwarded
// requests.
type Router struct {
	cfg Config
	ns  atomic.Pointer[map[string]*Namespace]
	// nodes are the nodes holding a replica of any namespace, in id order
	// (the leaderless engine's fallbacks), computed with the table.
	nodes atomic.Pointer[[]uint64]
}

// New builds a router.
func New(cfg Config) (*Router, error) {
	if cfg.Engine == nil || cfg.Store == nil || cfg.Transport == nil {
		return nil, errors.New("router: Engine, Store and Transport are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Router{cfg: cfg}
	if err := r.SetNamespaces(cfg.Namespaces); err != nil {
		return nil, err
	}
	return r, nil
}

// SetNamespaces replaces the namespace table (the control plane calls it
// with every new view). Requests in flight keep the table they started
// with.
func (r *Router) SetNamespaces(list []Namespace) error {
	m := make(map[string]*Namespace, len(list))
	for i := range list {
		n := list[i]
		if n.Shards <= 0 || len(n.Groups) != n.Shards || len(n.Replicas) != n.Shards || (n.Primaries != nil && len(n.Primaries) != n.Shards) {
			return fmt.Errorf("router: namespace %q: %d shards but %d groups and %d replica sets", n.Name, n.Shards, len(n.Groups), len(n.Replicas))
		}
		m[n.Name] = &n
	}
	nodes := replicaNodes(m)
	r.nodes.Store(&nodes)
	r.ns.Store(&m)
	return nil
}

func (r *Router) namespace(ctx context.Context, name string) (*Namespace, error) {
	if n := (*r.ns.Load())[name]; n != nil {
		return n, nil
	}
	if r.cfg.Refresh != nil {
		// The namespace may be newer than this node's view.
		if err := r.cfg.Refresh(ctx); err != nil {
			return nil, kv.Errorf(kv.CodeUnavailable, "namespace %q is not known here and the cluster metadata cannot be read: %w", name, err)
		}
		if n := (*r.ns.Load())[name]; n != nil {
			return n, nil
		}
	}
	table := *r.ns.Load()
	if len(table) == 0 {
		return nil, kv.Errorf(kv.CodeUnavailable, "the cluster metadata is not available yet (the control plane has no quorum or is starting)")
	}
	names := make([]string, 0, len(table))
	for k := range table {
		names = append(names, k)
	}
	sort.Strings(names)
	return nil, kv.Errorf(kv.CodeNotFound, "namespace %q does not exist in this cluster (namespaces: %s)", name, strings.Join(names, ", "))
}

// withDeadline applies the default deadline to requests without one.
func (r *Router) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, r.cfg.Timeout)
}

func (r *Router) local(n *Namespace, shard int) bool {
	return slices.Contains(n.Replicas[shard], r.cfg.Self)
}

// Apply routes a batch: one write per shard it touches, in parallel.
func (r *Router) Apply(ctx context.Context, b kv.Batch) ([]kv.Result, error) {
	ctx, cancel := r.withDeadline(ctx)
	defer cancel()
	if len(b.Ops) == 0 {
		return nil, nil
	}
	n, err := r.namespace(ctx, b.Ops[0].Namespace)
	if err != nil {
		return nil, err
	}
	if leaderlessNS(n) {
		return r.applyEventual(ctx, n, b)
	}
	if _, _, err := causalContext(ctx, n, len(b.Ops)); err != nil {
		return nil, err // a causal context on a namespace without siblings
	}
	// Which shard each op goes to; a flush goes to all of them.
	type part struct {
		shard int
		idx   []int // positions in b.Ops
		batch kv.Batch
	}
	parts := make(map[int]*part)
	add := func(shard, i int) {
		p := parts[shard]
		if p == nil {
			p = &part{shard: shard, batch: kv.Batch{Now: b.Now, Timestamp: b.Timestamp, AllAbsent: b.AllAbsent}}
			parts[shard] = p
		}
		p.idx = append(p.idx, i)
		p.batch.Ops = append(p.batch.Ops, b.Ops[i])
	}
	for i := range b.Ops {
		op := &b.Ops[i]
		if op.Namespace != n.Name {
			return nil, kv.Errorf(kv.CodeInvalid, "one batch cannot span namespaces (%q and %q)", n.Name, op.Namespace)
		}
		if op.Kind == kv.OpFlush {
			for s := 0; s < n.Shards; s++ {
				add(s, i)
			}
			continue
		}
		add(placement.ShardOf(n.Name, op.Key, n.Shards), i)
	}
	if b.AllAbsent && len(parts) > 1 {
		return nil, kv.Errorf(kv.CodeInvalid, "the keys are in %d different shards; an all-or-nothing write (MSETNX) must keep to one shard", len(parts))
	}
	results := make([]kv.Result, len(b.Ops))
	write := r.write
	if primaryNS(n) {
		write = r.writePrimary
	}
	if len(parts) == 1 {
		for _, p := range parts {
			res, err := write(ctx, n, p.shard, p.batch)
			if err != nil {
				return nil, err
			}
			return mergeResults(results, b.Ops, p.idx, res), nil
		}
	}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	for _, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := write(ctx, n, p.shard, p.batch)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("shard %d: %w", p.shard, err))
				return
			}
			mergeResults(results, b.Ops, p.idx, res)
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		// Other shards may have applied their part: say so.
		return nil, &kv.Error{Code: kv.CodeOf(errs[0]), Err: errors.Join(errs...),
			Message: fmt.Sprintf("%d of %d shards failed (the others applied their part): %v", len(errs), len(parts), errs[0])}
	}
	return results, nil
}

// mergeResults puts a shard's results at their ops' positions; flush
// counts add up over shards.
func mergeResults(out []kv.Result, ops []kv.Op, idx []int, res []kv.Result) []kv.Result {
	for j, i := range idx {
		if j >= len(res) {
			break
		}
		if ops[i].Kind == kv.OpFlush {
			out[i].Count += res[j].Count
			out[i].Applied = out[i].Applied || res[j].Applied
			continue
		}
		out[i] = res[j]
	}
	return out
}

func (r *Router) write(ctx context.Context, n *Namespace, shard int, b kv.Batch) ([]kv.Result, error) {
	group := n.Groups[shard]
	if r.local(n, shard) {
		// A follower hands the whole request to the leader: the leader
		// answers as soon as it has applied, one hop and one round
		// sooner than a follower that proposes and waits to learn the
		// commit. If the leader cannot be reached, propose here (raft
		// forwards it once there is a leader again).
		if lead := r.cfg.Engine.Leader(group); lead != 0 && lead != r.cfg.Self {
			req := appendHeader(nil, opWrite, group)
			req = kv.AppendBatch(req, &b)
			reply, err := r.cfg.Transport.Call(ctx, transport.NodeID(lead), transport.KindForward, req)
			if err == nil {
				return kv.DecodeResults(reply)
			}
			if !errors.Is(err, transport.ErrUnreachable) {
				return nil, err
			}
		}
		return r.cfg.Engine.Write(ctx, group, b)
	}
	req := appendHeader(nil, opWrite, group)
	req = kv.AppendBatch(req, &b)
	reply, err := r.forward(ctx, n, shard, req)
	if err != nil {
		return nil, err
	}
	return kv.DecodeResults(reply)
}

// Get is a linearizable read of one key.
func (r *Router) Get(ctx context.Context, ns string, key []byte) (kv.Value, bool, error) {
	ctx, cancel := r.withDeadline(ctx)
	defer cancel()
	n, err := r.namespace(ctx, ns)
	if err != nil {
		return kv.Value{}, false, err
	}
	if leaderlessNS(n) {
		m, err := r.getEventual(ctx, n, key, 0)
		if err != nil || !m.Found {
			return kv.Value{}, false, err
		}
		return kv.Value{Data: m.Value, Timestamp: hlc.Timestamp{WallNanos: m.Timestamp, Logical: m.Logical}}, true, nil
	}
	if primaryNS(n) {
		m, err := r.getPrimary(ctx, n, key)
		if err != nil || !m.Found {
			return kv.Value{}, false, err
		}
		return kv.Value{Data: m.Value, Version: m.Version, ExpireAt: m.ExpireAt, Timestamp: hlc.Timestamp{WallNanos: m.Timestamp, Logical: m.Logical}}, true, nil
	}
	shard := placement.ShardOf(ns, key, n.Shards)
	req := appendHeader(nil, opGet, n.Groups[shard])
	req = appendBytes(req, []byte(ns))
	req = appendBytes(req, key)
	if r.local(n, shard) {
		if lead := r.cfg.Engine.Leader(n.Groups[shard]); r.cfg.ReadsToLeader && lead != 0 && lead != r.cfg.Self {
			reply, err := r.cfg.Transport.Call(ctx, transport.NodeID(lead), transport.KindForward, req)
			if err == nil {
				return decodeGetReply(reply)
			}
			if !errors.Is(err, transport.ErrUnreachable) {
				return kv.Value{}, false, err
			}
			// The leader cannot be reached: read here (ReadIndex).
		}
		var v kv.Value
		var ok bool
		err := r.read(ctx, []uint64{n.Groups[shard]}, func() (err error) {
			v, ok, err = r.cfg.Store.Get(ctx, ns, key)
			return err
		})
		return v, ok && err == nil, err
	}
	reply, err := r.forward(ctx, n, shard, req)
	if err != nil {
		return kv.Value{}, false, err
	}
	return decodeGetReply(reply)
}

// Scan pages through a namespace's keys. It is linearizable: each shard
// is read after its barrier. A node with a replica of every shard reads
// them all locally; otherwise the shards are covered by as few nodes as
// possible (this one first), each reads the shards it covers, and the
// pages are merged in key order.
func (r *Router) Scan(ctx context.Context, req kv.ScanRequest) (kv.ScanResult, error) {
	ctx, cancel := r.withDeadline(ctx)
	defer cancel()
	n, err := r.namespace(ctx, req.Namespace)
	if err != nil {
		return kv.ScanResult{}, err
	}
	if leaderlessNS(n) {
		return kv.ScanResult{}, kv.Errorf(kv.CodeNotSupported, "namespace %q is %s: scans (KEYS, SCAN) are not supported there yet", n.Name, n.Policy.Consistency)
	}
	cover := r.cover(n)
	if primaryNS(n) {
		if cover, err = r.primaryCover(ctx, n); err != nil {
			return kv.ScanResult{}, err
		}
	}
	if mine, ok := cover[r.cfg.Self]; ok && len(cover) == 1 && len(mine) == n.Shards {
		return r.localScan(ctx, n, req, nil)
	}
	return r.mergedScan(ctx, n, req, cover)
}

// localScan reads shards (nil: all) of the namespace from this node's
// replicas after their barriers.
func (r *Router) localScan(ctx context.Context, n *Namespace, req kv.ScanRequest, shards []int) (kv.ScanResult, error) {
	if primaryNS(n) {
		return r.localPrimaryScan(ctx, n, req, shards)
	}
	if shards == nil {
		for s := 0; s < n.Shards; s++ {
			shards = append(shards, s)
		}
	} else {
		req.ShardSet, req.Shards = shards, n.Shards
	}
	groups := make([]uint64, len(shards))
	for i, s := range shards {
		groups[i] = n.Groups[s]
	}
	var res kv.ScanResult
	err := r.read(ctx, groups, func() (err error) {
		res, err = r.cfg.Store.Scan(ctx, req)
		return err
	})
	return res, err
}

// barriers waits for the read barriers of groups, in parallel when there
// are several (a single key's read, the hot path, spawns nothing).
func (r *Router) barriers(ctx context.Context, groups []uint64) error {
	if len(groups) == 1 {
		return r.cfg.Engine.ReadBarrier(ctx, groups[0])
	}
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.cfg.Engine.ReadBarrier(ctx, g)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// read runs read (of the local state machine) after the read barriers of
// groups, and fails with UNAVAILABLE if a local replica of one of them
// was removed meanwhile (a shard moving away deletes its rows): what read
// saw is then discarded.
func (r *Router) read(ctx context.Context, groups []uint64, read func() error) error {
	replicas := make([]uint64, len(groups))
	for i, g := range groups {
		id, ok := r.cfg.Engine.Replica(g)
		if !ok {
			return kv.Errorf(kv.CodeUnavailable, "group %d has no replica on node %d (moved away?)", g, r.cfg.Self)
		}
		replicas[i] = id
	}
	if err := r.barriers(ctx, groups); err != nil {
		return err
	}
	if err := read(); err != nil {
		return err
	}
	for i, g := range groups {
		if id, ok := r.cfg.Engine.Replica(g); !ok || id != replicas[i] {
			return kv.Errorf(kv.CodeUnavailable, "group %d: the replica on node %d was removed during the read", g, r.cfg.Self)
		}
	}
	return nil
}

// cover assigns every shard to a node with a replica of it: this node
// takes its own, then the node holding most of the rest, and so on (ties
// to the smaller id).
func (r *Router) cover(n *Namespace) map[uint64][]int {
	out := make(map[uint64][]int)
	left := make(map[int]bool, n.Shards)
	for s := 0; s < n.Shards; s++ {
		if r.local(n, s) {
			out[r.cfg.Self] = append(out[r.cfg.Self], s)
		} else {
			left[s] = true
		}
	}
	for len(left) > 0 {
		count := make(map[uint64]int)
		for s := range left {
			for _, id := range n.Replicas[s] {
				count[id]++
			}
		}
		var best uint64
		for id, c := range count {
			if best == 0 || c > count[best] || (c == count[best] && id < best) {
				best = id
			}
		}
		for s := 0; s < n.Shards; s++ {
			if left[s] && slices.Contains(n.Replicas[s], best) {
				out[best] = append(out[best], s)
				delete(left, s)
			}
		}
	}
	return out
}

// mergedScan asks each node of the cover for a page of its shards and
// merges them. Each page holds every key its node examined (Match runs
// here), so below the smallest resume point of the pages that stopped
// early, every shard's keys have been seen: the merged page ends there.
func (r *Router) mergedScan(ctx context.Context, n *Namespace, req kv.ScanRequest, cover map[uint64][]int) (kv.ScanResult, error) {
	type page struct {
		res kv.ScanResult
		err error
	}
	pages := make(map[uint64]*page, len(cover))
	var wg sync.WaitGroup
	for id, shards := range cover {
		p := &page{}
		pages[id] = p
		wg.Add(1)
		go func() {
			defer wg.Done()
			if id == r.cfg.Self {
				local := req
				local.Match = nil
				p.res, p.err = r.localScan(ctx, n, local, shards)
				return
			}
			sub := req
			sub.ShardSet, sub.Shards = shards, n.Shards
			msg := appendScanRequest(appendHeader(nil, opScan, 0), sub)
			if primaryNS(n) {
				msg = appendPrimaryScan(ctx, sub)
			}
			reply, err := r.cfg.Transport.Call(ctx, transport.NodeID(id), transport.KindForward, msg)
			if err != nil {
				if errors.Is(err, transport.ErrUnreachable) || errors.Is(err, transport.ErrUnknownPeer) {
					err = &kv.Error{Code: kv.CodeUnavailable, Err: err,
						Message: fmt.Sprintf("scan of %q: node %d (shards %v) is unreachable from node %d", n.Name, id, shards, r.cfg.Self)}
				}
				p.err = err
				return
			}
			p.res, p.err = decodeScanResult(reply)
		}()
	}
	wg.Wait()
	var entries []kv.KeyValue
	var cut []byte
	for _, p := range pages {
		if p.err != nil {
			return kv.ScanResult{}, p.err
		}
		entries = append(entries, p.res.Entries...)
		if p.res.Next != nil && (cut == nil || bytes.Compare(p.res.Next, cut) < 0) {
			cut = p.res.Next
		}
	}
	slices.SortFunc(entries, func(a, b kv.KeyValue) int { return bytes.Compare(a.Key, b.Key) })
	var out kv.ScanResult
	if cut != nil {
		i := sort.Search(len(entries), func(i int) bool { return bytes.Compare(entries[i].Key, cut) > 0 })
		entries = entries[:i]
		out.Next = cut
	}
	if limit := max(req.Limit, 0); limit == 0 && len(entries) > 100 || limit > 0 && len(entries) > limit {
		if limit == 0 {
			limit = 100
		}
		entries = entries[:limit]
		out.Next = append([]byte{}, entries[limit-1].Key...)
	}
	for _, e := range entries {
		if req.Match == nil || req.Match(e.Key) {
			out.Entries = append(out.Entries, e)
		}
	}
	return out, nil
}

// Keyspace counts the keys of the replicas on this node; reserved
// namespaces (the control plane's) are not shown.
func (r *Router) Keyspace() []kv.NamespaceStats {
	all := r.cfg.Store.Keyspace()
	out := all[:0:0]
	for _, st := range all {
		if !strings.HasPrefix(st.Name, "_") {
			out = append(out, st)
		}
	}
	return out
}

// Count counts a namespace's keys in the replicas on this node.
func (r *Router) Count(ns string) int64 { return r.cfg.Store.Count(ns) }

// forward sends a request to the shard's replicas in order until one can
// be reached. Only "unreachable" moves on to the next: any other outcome
// (including a timeout) is final, so a write is never applied twice.
func (r *Router) forward(ctx context.Context, n *Namespace, shard int, req []byte) ([]byte, error) {
	var last error
	for _, node := range n.Replicas[shard] {
		if node == r.cfg.Self {
			continue
		}
		reply, err := r.cfg.Transport.Call(ctx, transport.NodeID(node), transport.KindForward, req)
		if err == nil {
			return reply, nil
		}
		if !errors.Is(err, transport.ErrUnreachable) && !errors.Is(err, transport.ErrUnknownPeer) {
			return nil, err
		}
		last = err
	}
	return nil, &kv.Error{Code: kv.CodeUnavailable, Err: last,
		Message: fmt.Sprintf("shard %d of ns %q: no replica reachable from node %d", shard, n.Name, r.cfg.Self)}
}

// Forwarded request kinds.
const (
	opWrite          = 1
	opGet            = 2
	opScan           = 3
	opEventualPut    = 4
	opEventualDelete = 5
	opPrimaryWrite   = 6
	opPrimaryGet     = 7
	opPrimaryScan    = 8
	// Eventual writes carrying a causal context (see appendEventualWrite).
	opEventualPutCtx    = 9
	opEventualDeleteCtx = 10
	// A primary write whose reply carries the engine's error in the
	// payload (kv.AppendError, then the results), so that sentinels such
	// as kv.ErrNotAdmitted cross the wire. opPrimaryWrite is still served,
	// with the error as the transport's error frame, for older senders.
	opPrimaryWriteErr = 11
)

// appendScanRequest encodes what a remote needs of req (not Match).
func appendScanRequest(dst []byte, req kv.ScanRequest) []byte {
	dst = appendBytes(dst, []byte(req.Namespace))
	dst = appendBytes(dst, req.Prefix)
	if req.After != nil {
		dst = append(dst, 1)
		dst = appendBytes(dst, req.After)
	} else {
		dst = append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(max(req.Limit, 0)))
	if req.KeysOnly {
		dst = append(dst, 1)
	} else {
		dst = append(dst, 0)
	}
	dst = binary.AppendVarint(dst, req.Now)
	dst = binary.AppendUvarint(dst, uint64(max(req.Shards, 0)))
	dst = binary.AppendUvarint(dst, uint64(len(req.ShardSet)))
	for _, sh := range req.ShardSet {
		dst = binary.AppendUvarint(dst, uint64(sh))
	}
	return dst
}

func decodeScanRequest(src []byte) (kv.ScanRequest, error) {
	var req kv.ScanRequest
	bad := kv.Errorf(kv.CodeInvalid, "router: corrupt forwarded scan")
	ns, rest, err := readBytes(src)
	if err != nil {
		return req, err
	}
	prefix, rest, err := readBytes(rest)
	if err != nil || len(rest) == 0 {
		return req, bad
	}
	req.Namespace, req.Prefix = string(ns), prefix
	hasAfter := rest[0] == 1
	rest = rest[1:]
	if hasAfter {
		var after []byte
		if after, rest, err = readBytes(rest); err != nil {
			return req, err
		}
		req.After = append([]byte{}, after...)
	}
	limit, k := binary.Uvarint(rest)
	if k <= 0 || limit > 1<<20 || len(rest) < k+1 {
		return req, bad
	}
	req.Limit, req.KeysOnly = int(limit), rest[k] == 1
	now, k2 := binary.Varint(rest[k+1:])
	if k2 <= 0 {
		return req, bad
	}
	req.Now = now
	rest = rest[k+1+k2:]
	shards, k := binary.Uvarint(rest)
	if k <= 0 || shards > kv.MaxShards {
		return req, bad
	}
	rest = rest[k:]
	count, k := binary.Uvarint(rest)
	if k <= 0 || count > shards {
		return req, bad
	}
	rest = rest[k:]
	req.Shards = int(shards)
	for i := uint64(0); i < count; i++ {
		sh, k := binary.Uvarint(rest)
		if k <= 0 || sh >= shards {
			return req, bad
		}
		rest = rest[k:]
		req.ShardSet = append(req.ShardSet, int(sh))
	}
	if len(req.ShardSet) == 0 {
		return req, bad // a forwarded scan always names its shards
	}
	return req, nil
}

func appendScanResult(dst []byte, res kv.ScanResult) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(res.Entries)))
	for _, e := range res.Entries {
		dst = appendBytes(dst, e.Key)
		dst = kv.AppendValue(dst, e.Value)
	}
	if res.Next != nil {
		dst = append(dst, 1)
		return appendBytes(dst, res.Next)
	}
	return append(dst, 0)
}

func decodeScanResult(src []byte) (kv.ScanResult, error) {
	var res kv.ScanResult
	bad := kv.Errorf(kv.CodeInternal, "router: corrupt forwarded scan reply")
	n, k := binary.Uvarint(src)
	if k <= 0 || n > uint64(len(src)) {
		return res, bad
	}
	src = src[k:]
	res.Entries = make([]kv.KeyValue, 0, n)
	for i := uint64(0); i < n; i++ {
		key, rest, err := readBytes(src)
		if err != nil {
			return res, bad
		}
		v, rest, err := kv.DecodeValue(rest)
		if err != nil {
			return res, bad
		}
		res.Entries = append(res.Entries, kv.KeyValue{Key: append([]byte(nil), key...), Value: v})
		src = rest
	}
	if len(src) == 0 {
		return res, bad
	}
	if src[0] == 1 {
		next, _, err := readBytes(src[1:])
		if err != nil {
			return res, bad
		}
		res.Next = append([]byte{}, next...)
	}
	return res, nil
}

func appendHeader(dst []byte, op byte, group uint64) []byte {
	dst = append(dst, op)
	return binary.AppendUvarint(dst, group)
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func readBytes(src []byte) ([]byte, []byte, error) {
	l, n := binary.Uvarint(src)
	if n <= 0 || l > uint64(len(src)-n) {
		return nil, nil, kv.Errorf(kv.CodeInvalid, "router: corrupt forwarded request")
	}
	return src[n : n+int(l)], src[n+int(l):], nil
}

func decodeGetReply(b []byte) (kv.Value, bool, error) {
	if len(b) == 0 {
		return kv.Value{}, false, kv.Errorf(kv.CodeInternal, "router: empty get reply")
	}
	if b[0] == 0 {
		return kv.Value{}, false, nil
	}
	v, _, err := kv.DecodeValue(b[1:])
	return v, err == nil, err
}

// Deliver implements transport.Handler; forwarding has no one-way messages.
func (r *Router) Deliver(transport.NodeID, transport.Kind, []byte) {}

// Serve answers a request forwarded by another node, with the caller's
// deadline.
func (r *Router) Serve(ctx context.Context, from transport.NodeID, kind transport.Kind, req []byte) ([]byte, error) {
	if len(req) == 0 {
		return nil, kv.Errorf(kv.CodeInvalid, "router: empty forwarded request")
	}
	op := req[0]
	group, n := binary.Uvarint(req[1:])
	if n <= 0 {
		return nil, kv.Errorf(kv.CodeInvalid, "router: corrupt forwarded request")
	}
	body := req[1+n:]
	switch op {
	case opEventualPut, opEventualDelete, opEventualPutCtx, opEventualDeleteCtx:
		return r.serveEventual(ctx, op, body)
	case opPrimaryWrite, opPrimaryWriteErr, opPrimaryGet:
		return r.servePrimary(ctx, op, group, body)
	case opPrimaryScan:
		return r.servePrimaryScan(ctx, from, body)
	case opWrite:
		b, err := kv.DecodeBatch(body)
		if err != nil {
			return nil, err
		}
		res, err := r.cfg.Engine.Write(ctx, group, b)
		if err != nil {
			return nil, err
		}
		return kv.AppendResults(nil, res), nil
	case opGet:
		ns, rest, err := readBytes(body)
		if err != nil {
			return nil, err
		}
		key, _, err := readBytes(rest)
		if err != nil {
			return nil, err
		}
		var v kv.Value
		var ok bool
		err = r.read(ctx, []uint64{group}, func() (err error) {
			v, ok, err = r.cfg.Store.Get(ctx, string(ns), key)
			return err
		})
		if err != nil {
			return nil, err
		}
		if !ok {
			return []byte{0}, nil
		}
		return kv.AppendValue([]byte{1}, v), nil
	case opScan:
		req, err := decodeScanRequest(body)
		if err != nil {
			return nil, err
		}
		n, err := r.namespace(ctx, req.Namespace)
		if err != nil {
			return nil, err
		}
		if req.Shards != n.Shards {
			return nil, kv.Errorf(kv.CodeUnavailable, "scan of %q: the nodes disagree on its shard count (%d here, %d asked)", n.Name, n.Shards, req.Shards)
		}
		for _, s := range req.ShardSet {
			if s < 0 || s >= n.Shards || !r.local(n, s) {
				// Never forward a forwarded scan: one hop only.
				return nil, kv.Errorf(kv.CodeUnavailable, "node %d has no replica of shard %d of %q (moved?)", r.cfg.Self, s, n.Name)
			}
		}
		res, err := r.localScan(ctx, n, req, req.ShardSet)
		if err != nil {
			return nil, err
		}
		return appendScanResult(nil, res), nil
	}
	return nil, kv.Errorf(kv.CodeInvalid, "router: unknown forwarded request %d from node %d", op, from)
}

// StaticLayout lays out a namespace over nodes with placement's
// rendezvous hashing; groups are numbered from firstGroup.
func StaticLayout(name string, shards, replicas int, nodes []uint64, firstGroup uint64) (Namespace, error) {
	ids := make([]placement.NodeID, len(nodes))
	byName := make(map[placement.NodeID]uint64, len(nodes))
	for i, id := range nodes {
		ids[i] = placement.NodeID(fmt.Sprint(id))
		byName[ids[i]] = id
	}
	a, err := placement.Assign(name, shards, replicas, ids)
	if err != nil {
		return Namespace{}, fmt.Errorf("router: lay out %q: %w", name, err)
	}
	n := Namespace{Name: name, Shards: shards}
	for s, set := range a {
		n.Groups = append(n.Groups, firstGroup+uint64(s))
		rs := make([]uint64, len(set))
		for i, id := range set {
			rs[i] = byName[id]
		}
		n.Replicas = append(n.Replicas, rs)
	}
	return n, nil
}
