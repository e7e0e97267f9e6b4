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
	o := node.WriteOptions{N: n.Policy.Replicas, W: n.Policy.W, Sloppy: n.Policy.Consistency == kv.ConsistencyEventual}
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
	o := node.ReadOptions{N: n.Policy.Replicas, R: n.Policy.R}
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

// applyEventual runs a batch on a leaderless namespace: plain sets and
// deletes only, one key at a time (no atomicity across keys, no
// conditions, no expiry: those need a strong namespace).
func (r *Router) applyEventual(ctx context.Context, n *Namespace, b kv.Batch) ([]kv.Result, error) {
	if r.cfg.Leaderless == nil {
		return nil, kv.Errorf(kv.CodeNotSupported, "namespace %q is %s, and this node runs no leaderless engine", n.Name, n.Policy.Consistency)
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
		if err := r.eventualWrite(ctx, n, op); err != nil {
			return nil, err
		}
		// DEL counts every key it was asked to delete: knowing whether one
		// existed would need a read of R replicas.
		res[i] = kv.Result{Applied: true, Count: 1, Cur: kv.Value{Data: op.Value}, Exists: op.Kind == kv.OpSet, PrevExists: op.Kind == kv.OpDelete}
	}
	return res, nil
}

// eventualWrite writes one key, coordinated here if this node is one of
// the key's home replicas, else by the first home replica it reaches.
func (r *Router) eventualWrite(ctx context.Context, n *Namespace, op kv.Op) error {
	shard := placement.ShardOf(n.Name, op.Key, n.Shards)
	q, _ := kv.QuorumFrom(ctx)
	if q.W != 0 {
		if err := overrideQuorum(n, "w", q.W); err != nil {
			return err
		}
	}
	if slices.Contains(n.Replicas[shard], r.cfg.Self) {
		return r.eventualWriteHere(ctx, n, op.Kind == kv.OpDelete, op.Key, op.Value, q.W)
	}
	kind := byte(opEventualPut)
	if op.Kind == kv.OpDelete {
		kind = opEventualDelete
	}
	msg := appendHeader(nil, kind, 0)
	msg = appendBytes(msg, []byte(n.Name))
	msg = appendBytes(msg, op.Key)
	msg = appendBytes(msg, op.Value)
	msg = binary.AppendUvarint(msg, uint64(q.W))
	_, err := r.forward(ctx, n, shard, msg)
	return err
}

func (r *Router) eventualWriteHere(ctx context.Context, n *Namespace, del bool, key, value []byte, w int) error {
	opts, err := r.writeOptions(kv.WithQuorum(ctx, kv.Quorum{W: w}), n)
	if err != nil {
		return err
	}
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
		Answered: res.Answered, Agreed: res.Agreed, Required: res.Required, Repaired: res.Repaired}, nil
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

// serveEventual answers a forwarded write of a leaderless namespace.
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
	if err := r.eventualWriteHere(ctx, n, op == opEventualDelete, key, value, int(w)); err != nil {
		if errors.Is(err, node.ErrNotReplica) {
			return nil, kv.Errorf(kv.CodeUnavailable, "node %d is no longer a home replica of %q in %q", r.cfg.Self, key, ns)
		}
		return nil, err
	}
	return binary.AppendUvarint(nil, 1), nil
}
