package router

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/leaderless"
	"github.com/fulcrumdb/fulcrum/internal/leaderless/node"
	"github.com/fulcrumdb/fulcrum/internal/placement"
	"github.com/fulcrumdb/fulcrum/internal/versionvec"
)

// Leaderless is what the router needs from the eventual/weak engine.
type Leaderless interface {
	Put(ctx context.Context, ns string, key, value []byte, opts node.WriteOptions) (node.WriteResult, error)
	Delete(ctx context.Context, ns string, key []byte, opts node.WriteOptions) (node.WriteResult, error)
	Get(ctx context.Context, ns string, key []byte, opts node.ReadOptions) (node.ReadResult, error)
}

// leaderlessNS reports whether a namespace is served by the leaderless
// engine.
func leaderlessNS(n *Namespace) bool {
	return n.Policy.Consistency == kv.ConsistencyEventual || n.Policy.Consistency == kv.ConsistencyWeak
}

func (r *Router) writeOptions(ctx context.Context, n *Namespace) (node.WriteOptions, error) {
	o := node.WriteOptions{N: n.Policy.Replicas, W: n.Policy.W, Sloppy: n.Policy.Consistency == kv.ConsistencyEventual,
		KeepSiblings: n.Policy.KeepSiblings()}
	if q, ok := kv.QuorumFrom(ctx); ok && q.W != 0 {
		if err := overrideQuorum(n, "w", q.W); err != nil {
			return o, err
		}
		o.W = q.W
	}
	return o, nil
}

// overrideQuorum checks a request's W or R against the namespace's.
func overrideQuorum(n *Namespace, what string, v int) error {
	if n.Policy.Consistency == kv.ConsistencyWeak && v != 1 {
		return kv.Errorf(kv.CodeInvalid, "%s %d: namespace %q is weak: one replica answers", what, v, n.Name)
	}
	if v < 1 || v > n.Policy.Replicas {
		return kv.Errorf(kv.CodeInvalid, "%s %d: want 1 to the namespace's replicas (%d)", what, v, n.Policy.Replicas)
	}
	return nil
}

func (r *Router) readOptions(ctx context.Context, n *Namespace) (node.ReadOptions, error) {
	o := node.ReadOptions{N: n.Policy.Replicas, R: n.Policy.R, KeepSiblings: n.Policy.KeepSiblings()}
	if q, ok := kv.QuorumFrom(ctx); ok && q.R != 0 {
		if err := overrideQuorum(n, "r", q.R); err != nil {
			return o, err
		}
		o.R = q.R
	}
	if n.Policy.Consistency == kv.ConsistencyEventual {
		o.Sloppy, o.Repair = true, leaderless.RepairAsync
		if n.Policy.ReadRepair == kv.ReadRepairBlocking {
			o.Repair = leaderless.RepairBlocking
		}
	}
	return o, nil
}

// Preference is a key's preference list for the leaderless engine: its
// shard's replicas, then every other node the router knows of in id order
// (the fallbacks of a sloppy quorum). Nil for a namespace it does not
// know.
func (r *Router) Preference(ns string, key []byte) []uint64 {
	n := (*r.ns.Load())[ns]
	if n == nil {
		return nil
	}
	home := n.Replicas[placement.ShardOf(ns, key, n.Shards)]
	out := slices.Clone(home)
	for _, id := range *r.nodes.Load() {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// replicaNodes lists every node that holds a replica of any namespace of
// a table, in order.
func replicaNodes(table map[string]*Namespace) []uint64 {
	var ids []uint64
	for _, n := range table {
		for _, set := range n.Replicas {
			for _, id := range set {
				if !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// causalContext returns the causal context a write request carries (nil:
// a blind write), refusing one that is malformed or that cannot apply: a
// context names what one read of one key returned, so it needs a one-key
// write of a leaderless namespace.
func causalContext(ctx context.Context, n *Namespace, ops int) ([]byte, versionvec.Vector, error) {
	cc, ok := kv.CausalContextFrom(ctx)
	if !ok {
		return nil, nil, nil
	}
	if !leaderlessNS(n) {
		return nil, nil, kv.Errorf(kv.CodeInvalid, "namespace %q is not eventual or weak: its writes take no causal context (it has no siblings)", n.Name)
	}
	if ops != 1 {
		return nil, nil, kv.Errorf(kv.CodeInvalid, "a causal context belongs to one key's read: write one key with it, not %d", ops)
	}
	vec, err := decodeCausalContext(cc)
	return cc, vec, err
}

// maxContextCounter bounds the counters of a client's causal context.
// Dots count microseconds since the epoch at least
// (versionvec.CounterFloor), about 2^51 today, so a real context is far
// below it; one above it is forged, and its counter would overflow the
// next dot the coordinator mints (versionvec panics on that).
const maxContextCounter = 1 << 62

// decodeCausalContext decodes a causal context (an encoded
// versionvec.Vector, as getEventual hands it out).
func decodeCausalContext(cc []byte) (versionvec.Vector, error) {
	vec, err := versionvec.Decode(cc)
	if err != nil {
		return nil, kv.Errorf(kv.CodeInvalid, "causal context is not one a read returned: %w", err)
	}
	for node, counter := range vec {
		if counter >= maxContextCounter {
			return nil, kv.Errorf(kv.CodeInvalid, "causal context is not one a read returned: counter %d of node %d is out of range", counter, node)
		}
	}
	return vec, nil
}

// applyEventual runs a batch on a leaderless namespace: plain sets and
// deletes only, one key at a time (no atomicity across keys, no
// conditions, no expiry: those need a strong namespace). A one-key write
// may carry the causal context of a read (kv.WithCausalContext).
func (r *Router) applyEventual(ctx context.Context, n *Namespace, b kv.Batch) ([]kv.Result, error) {
	if r.cfg.Leaderless == nil {
		return nil, kv.Errorf(kv.CodeNotSupported, "namespace %q is %s, and this node runs no leaderless engine", n.Name, n.Policy.Consistency)
	}
	cc, vec, err := causalContext(ctx, n, len(b.Ops))
	if err != nil {
		return nil, err
	}
	for _, op := range b.Ops {
		switch {
		case op.Kind != kv.OpSet && op.Kind != kv.OpDelete:
			return nil, kv.Errorf(kv.CodeNotSupported, "namespace %q is %s: only plain SET, GET and DEL (counters, appends and expiry need a strong namespace)", n.Name, n.Policy.Consistency)
		case op.Cond != kv.CondNone || b.AllAbsent:
			return nil, kv.Errorf(kv.CodeNotSupported, "namespace %q is %s: conditional writes (NX, XX, compare-and-set) need a strong namespace", n.Name, n.Policy.Consistency)
		case op.ExpireAt != 0 || op.KeepTTL:
			return nil, kv.Errorf(kv.CodeNotSupported, "namespace %q is %s: expiry is not supported there yet", n.Name, n.Policy.Consistency)
		}
	}
	res := make([]kv.Result, len(b.Ops))
	for i, op := range b.Ops {
		if err := r.eventualWrite(ctx, n, op, cc, vec); err != nil {
			return nil, err
		}
		// DEL counts every key it was asked to delete: knowing whether one
		// existed would need a read of R replicas.
		res[i] = kv.Result{Applied: true, Count: 1, Cur: kv.Value{Data: op.Value}, Exists: op.Kind == kv.OpSet, PrevExists: op.Kind == kv.OpDelete}
	}
	return res, nil
}

// eventualWrite writes one key, coordinated here if this node is one of
// the key's home replicas, else by the first home replica it reaches; cc
// is the write's causal context (nil: blind) and vec its decoded form.
func (r *Router) eventualWrite(ctx context.Context, n *Namespace, op kv.Op, cc []byte, vec versionvec.Vector) error {
	shard := placement.ShardOf(n.Name, op.Key, n.Shards)
	q, _ := kv.QuorumFrom(ctx)
	if q.W != 0 {
		if err := overrideQuorum(n, "w", q.W); err != nil {
			return err
		}
	}
	if slices.Contains(n.Replicas[shard], r.cfg.Self) {
		return r.eventualWriteHere(ctx, n, op.Kind == kv.OpDelete, op.Key, op.Value, q.W, vec)
	}
	_, err := r.forward(ctx, n, shard, appendEventualWrite(nil, n.Name, op, q.W, cc))
	return err
}

// appendEventualWrite encodes a forwarded write of a leaderless key:
// namespace, key, value and W, then, for a write with a causal context
// (the opEventual*Ctx kinds), the context. A write without one keeps the
// older kinds' encoding; a node too old to know the newer kinds refuses
// them instead of dropping the context (which would add a sibling).
func appendEventualWrite(dst []byte, ns string, op kv.Op, w int, cc []byte) []byte {
	kind := byte(opEventualPut)
	switch {
	case op.Kind == kv.OpDelete && cc != nil:
		kind = opEventualDeleteCtx
	case op.Kind == kv.OpDelete:
		kind = opEventualDelete
	case cc != nil:
		kind = opEventualPutCtx
	}
	dst = appendHeader(dst, kind, 0)
	dst = appendBytes(dst, []byte(ns))
	dst = appendBytes(dst, op.Key)
	dst = appendBytes(dst, op.Value)
	dst = binary.AppendUvarint(dst, uint64(w))
	if cc != nil {
		dst = appendBytes(dst, cc)
	}
	return dst
}

func (r *Router) eventualWriteHere(ctx context.Context, n *Namespace, del bool, key, value []byte, w int, vec versionvec.Vector) error {
	opts, err := r.writeOptions(kv.WithQuorum(ctx, kv.Quorum{W: w}), n)
	if err != nil {
		return err
	}
	opts.Context = vec
	if del {
		_, err = r.cfg.Leaderless.Delete(ctx, n.Name, key, opts)
	} else {
		_, err = r.cfg.Leaderless.Put(ctx, n.Name, key, value, opts)
	}
	return err
}

// getEventual reads a key of a leaderless namespace (any node can
// coordinate a read) from rq replicas (0: the namespace's R).
func (r *Router) getEventual(ctx context.Context, n *Namespace, key []byte, rq int) (kv.ReadMeta, error) {
	if r.cfg.Leaderless == nil {
		return kv.ReadMeta{}, kv.Errorf(kv.CodeNotSupported, "namespace %q is %s, and this node runs no leaderless engine", n.Name, n.Policy.Consistency)
	}
	if rq != 0 {
		q, _ := kv.QuorumFrom(ctx)
		q.R = rq
		ctx = kv.WithQuorum(ctx, q)
	}
	opts, err := r.readOptions(ctx, n)
	if err != nil {
		return kv.ReadMeta{}, err
	}
	res, err := r.cfg.Leaderless.Get(ctx, n.Name, key, opts)
	if err != nil {
		return kv.ReadMeta{}, err
	}
	return kv.ReadMeta{Found: res.Found, Value: res.Value, Timestamp: res.Timestamp.WallNanos, Logical: res.Timestamp.Logical,
		Writer: res.Dot.Node, Consistency: n.Policy.Consistency,
		Answered: res.Answered, Agreed: res.Agreed, Required: res.Required, Repaired: res.Repaired,
		Siblings: siblings(res.Siblings),
		// Never nil for a leaderless namespace: a key never written has
		// the empty context (a write passing it is blind).
		Context: res.Context.Encode()}, nil
}

// siblings lists a read's live siblings newest first (last writer wins
// order: timestamp, then writer, then counter), so the first is the value
// a plain GET returns and every replica lists them in the same order.
func siblings(live []versionvec.Sibling) []kv.Sibling {
	if len(live) == 0 {
		return nil
	}
	sorted := slices.Clone(live)
	slices.SortFunc(sorted, func(a, b versionvec.Sibling) int {
		switch {
		case a.Newer(b):
			return -1
		case b.Newer(a):
			return 1
		}
		return 0
	})
	out := make([]kv.Sibling, len(sorted))
	for i, s := range sorted {
		out[i] = kv.Sibling{Value: s.Value, Timestamp: s.Timestamp.WallNanos, Logical: s.Timestamp.Logical, Writer: s.Dot.Node}
	}
	return out
}

// GetMeta reads a key with what the answer is: for an eventual or weak
// namespace, how many replicas answered and agreed and whether a repair
// was sent, reading rq replicas (0: the namespace's R); for a strong one,
// a linearizable read (every replica agrees by construction; rq must be
// 0).
func (r *Router) GetMeta(ctx context.Context, ns string, key []byte, rq int) (kv.ReadMeta, error) {
	ctx, cancel := r.withDeadline(ctx)
	defer cancel()
	n, err := r.namespace(ctx, ns)
	if err != nil {
		return kv.ReadMeta{}, err
	}
	if leaderlessNS(n) {
		return r.getEventual(ctx, n, key, rq)
	}
	if primaryNS(n) {
		if rq != 0 {
			return kv.ReadMeta{}, kv.Errorf(kv.CodeInvalid, "namespace %q is replication=primary: one replica answers a read, not R", ns)
		}
		return r.getPrimary(ctx, n, key)
	}
	if rq != 0 {
		return kv.ReadMeta{}, kv.Errorf(kv.CodeInvalid, "namespace %q is strong: its reads need a Raft quorum, not R replicas", ns)
	}
	v, ok, err := r.Get(ctx, ns, key)
	if err != nil {
		return kv.ReadMeta{}, err
	}
	return kv.ReadMeta{Found: ok, Value: v.Data, Version: v.Version, ExpireAt: v.ExpireAt,
		Timestamp: v.Timestamp.WallNanos, Logical: v.Timestamp.Logical, Consistency: n.Policy.Consistency}, nil
}

// serveEventual answers a forwarded write of a leaderless namespace
// (appendEventualWrite's encoding).
func (r *Router) serveEventual(ctx context.Context, op byte, body []byte) ([]byte, error) {
	ns, rest, err := readBytes(body)
	if err != nil {
		return nil, err
	}
	key, rest, err := readBytes(rest)
	if err != nil {
		return nil, err
	}
	value, rest, err := readBytes(rest)
	if err != nil {
		return nil, err
	}
	w, k := binary.Uvarint(rest)
	if k <= 0 || w > kv.MaxReplicas {
		return nil, kv.Errorf(kv.CodeInvalid, "router: corrupt forwarded write")
	}
	var vec versionvec.Vector
	withContext := op == opEventualPutCtx || op == opEventualDeleteCtx
	if withContext {
		cc, _, err := readBytes(rest[k:])
		if err != nil {
			return nil, err
		}
		if vec, err = decodeCausalContext(cc); err != nil {
			return nil, err
		}
	}
	n, err := r.namespace(ctx, string(ns))
	if err != nil {
		return nil, err
	}
	if !leaderlessNS(n) {
		return nil, kv.Errorf(kv.CodeInvalid, "router: namespace %q is not leaderless", ns)
	}
	if r.cfg.Leaderless == nil {
		return nil, kv.Errorf(kv.CodeNotSupported, "node %d runs no leaderless engine", r.cfg.Self)
	}
	del := op == opEventualDelete || op == opEventualDeleteCtx
	if err := r.eventualWriteHere(ctx, n, del, key, value, int(w), vec); err != nil {
		if errors.Is(err, node.ErrNotReplica) {
			return nil, kv.Errorf(kv.CodeUnavailable, "node %d is no longer a home replica of %q in %q", r.cfg.Self, key, ns)
		}
		return nil, err
	}
	return binary.AppendUvarint(nil, 1), nil
}
