package router

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/placement"
	"github.com/fulcrumdb/fulcrum/internal/primary"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// Primaries is what the router needs from the primary/replica engine of
// replication=primary namespaces. Its shard ids are the shards'
// replication group ids.
type Primaries interface {
	Write(ctx context.Context, shard int, b kv.Batch) ([]kv.Result, error)
	Read(ctx context.Context, shard int, ns string, key []byte, maxStaleness time.Duration) (primary.ReadResult, error)
	Status(shard int) (primary.Status, error)
}

func primaryNS(n *Namespace) bool { return n.Policy.Engine() == kv.EnginePrimary }

// errNoPrimary: the shard has no primary this node knows of (a failover
// is under way, or the first primary is not chosen yet).
var errNoPrimary = errors.New("no primary")

// primaryOf is where a shard's primary is: this node's engine's word when
// it holds a replica, else the control plane's record as last seen.
func (r *Router) primaryOf(n *Namespace, shard int) uint64 {
	if r.cfg.Primaries != nil && r.local(n, shard) {
		if st, err := r.cfg.Primaries.Status(int(n.Groups[shard])); err == nil && st.Primary != 0 {
			return uint64(st.Primary)
		}
	}
	if shard < len(n.Primaries) {
		return n.Primaries[shard]
	}
	return 0
}

// retryPrimary says whether a request refused by (what this node took
// for) the primary may be sent again: only refusals made before the
// write entered any log, which a failover in progress explains.
func retryPrimary(err error) bool {
	if errors.Is(err, errNoPrimary) || errors.Is(err, transport.ErrUnreachable) || errors.Is(err, transport.ErrUnknownPeer) ||
		errors.Is(err, primary.ErrNotPrimary) || errors.Is(err, failover.ErrLeaseLost) {
		return true
	}
	switch kv.CodeOf(err) {
	case kv.CodeNotLeader, kv.CodeStaleEpoch:
		return true
	}
	return false
}

// pause waits before the attempt-th retry, or reports false when ctx
// would end first. The wait stays short (at most 20ms): it is added to
// every failover a client sees, and a refusal costs the refusing node
// little.
func pause(ctx context.Context, attempt int) bool {
	d := min(5*time.Millisecond<<min(attempt, 2), 20*time.Millisecond)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// writePrimary sends a shard's part of a batch to the shard's primary,
// following it through a failover until ctx ends.
func (r *Router) writePrimary(ctx context.Context, n *Namespace, shard int, b kv.Batch) ([]kv.Result, error) {
	if r.cfg.Primaries == nil {
		return nil, kv.Errorf(kv.CodeNotSupported, "namespace %q is replication=primary, which this node does not run", n.Name)
	}
	group := n.Groups[shard]
	// A flush must empty this shard's keys only.
	b.Shard, b.Shards = shard, n.Shards
	var req []byte
	var refusedSince time.Time
	for attempt := 0; ; attempt++ {
		var (
			res []kv.Result
			err error
		)
		switch target := r.primaryOf(n, shard); target {
		case 0:
			err = kv.Errorf(kv.CodeUnavailable, "shard %d of %q: %w (a failover is under way or the first primary is not chosen yet)", shard, n.Name, errNoPrimary)
		case r.cfg.Self:
			res, err = r.cfg.Primaries.Write(ctx, int(group), b)
		default:
			if req == nil {
				req = kv.AppendBatch(appendHeader(nil, opPrimaryWriteErr, group), &b)
			}
			var reply []byte
			if reply, err = r.cfg.Transport.Call(ctx, transport.NodeID(target), transport.KindForward, req); err == nil {
				res, err = decodePrimaryWrite(reply)
			}
		}
		if err == nil {
			return res, nil
		}
		if !retryPrimary(err) {
			if !errors.Is(err, kv.ErrNotAdmitted) {
				return nil, err
			}
			// Refused before entering any log for another reason (too few
			// in-sync replicas, as right after a promotion): worth another
			// try for a while, not for the whole deadline.
			if refusedSince.IsZero() {
				refusedSince = time.Now()
			} else if time.Since(refusedSince) > admitPatience {
				return nil, err
			}
		}
		if !pause(ctx, attempt) {
			return nil, err
		}
	}
}

// decodePrimaryWrite decodes a forwarded primary write's reply: the
// engine's error, then the results if there was none.
func decodePrimaryWrite(reply []byte) ([]kv.Result, error) {
	werr, rest, err := kv.DecodeError(reply)
	if err != nil {
		return nil, fmt.Errorf("primary write reply: %w", err)
	}
	if werr != nil {
		return nil, werr
	}
	return kv.DecodeResults(rest)
}

// admitPatience is how long writePrimary retries a write the primary
// refused before logging it for a reason a failover does not explain
// (kv.ErrNotAdmitted, e.g. not enough in-sync replicas). A new sync
// primary refuses writes until a replica's first ack is recorded, a few
// tens of milliseconds; a shard that stays short of replicas answers the
// refusal after this long.
const admitPatience = 500 * time.Millisecond

// getPrimary reads a key of a primary namespace: from the shard's
// primary, or from any replica when the request allows it (READONLY, or
// an active-active namespace), with the replica's lag.
func (r *Router) getPrimary(ctx context.Context, n *Namespace, key []byte) (kv.ReadMeta, error) {
	m, err := r.readPrimary(ctx, n, key)
	m.Consistency = "primary-" + n.Policy.Ack
	return m, err
}

func (r *Router) readPrimary(ctx context.Context, n *Namespace, key []byte) (kv.ReadMeta, error) {
	if r.cfg.Primaries == nil {
		return kv.ReadMeta{}, kv.Errorf(kv.CodeNotSupported, "namespace %q is replication=primary, which this node does not run", n.Name)
	}
	shard := placement.ShardOf(n.Name, key, n.Shards)
	group := n.Groups[shard]
	stale, anyReplica := replicaReads(ctx, n)
	if anyReplica && r.local(n, shard) {
		res, err := r.cfg.Primaries.Read(ctx, int(group), n.Name, key, stale)
		if err == nil || !errors.Is(err, primary.ErrTooStale) {
			return primaryMeta(res, err)
		}
		// Too stale here: the primary answers.
	}
	if !anyReplica {
		stale = 0
	}
	req := appendHeader(nil, opPrimaryGet, group)
	req = appendBytes(req, []byte(n.Name))
	req = appendBytes(req, key)
	req = binary.AppendVarint(req, int64(stale))
	if anyReplica && stale < 0 {
		// Any replica will do: the nearest reachable one.
		reply, err := r.forward(ctx, n, shard, req)
		if err != nil {
			return kv.ReadMeta{}, err
		}
		return decodePrimaryGet(reply)
	}
	for attempt := 0; ; attempt++ {
		var (
			m   kv.ReadMeta
			err error
		)
		switch target := r.primaryOf(n, shard); target {
		case 0:
			err = kv.Errorf(kv.CodeUnavailable, "shard %d of %q: %w (a failover is under way or the first primary is not chosen yet)", shard, n.Name, errNoPrimary)
		case r.cfg.Self:
			m, err = primaryMeta(r.cfg.Primaries.Read(ctx, int(group), n.Name, key, 0))
		default:
			var reply []byte
			if reply, err = r.cfg.Transport.Call(ctx, transport.NodeID(target), transport.KindForward, req); err == nil {
				return decodePrimaryGet(reply)
			}
		}
		if err == nil {
			return m, nil
		}
		// A replica's ErrTooStale for a primary read means it is no longer
		// primary (its lease lapsed): look again.
		if !retryPrimary(err) && !errors.Is(err, primary.ErrTooStale) || !pause(ctx, attempt) {
			return kv.ReadMeta{}, err
		}
	}
}

func primaryMeta(res primary.ReadResult, err error) (kv.ReadMeta, error) {
	if err != nil {
		return kv.ReadMeta{}, err
	}
	m := kv.ReadMeta{Found: res.Found, Role: res.Role.String(), Epoch: uint64(res.Epoch), LagEntries: res.Lag.LSN, Lag: res.Lag.Time}
	if res.Found {
		v := res.Value
		m.Value, m.Version, m.ExpireAt = v.Data, v.Version, v.ExpireAt
		m.Timestamp, m.Logical = v.Timestamp.WallNanos, v.Timestamp.Logical
	}
	return m, nil
}

func appendPrimaryGet(dst []byte, m kv.ReadMeta) []byte {
	if m.Found {
		dst = append(dst, 1)
		dst = kv.AppendValue(dst, kv.Value{Data: m.Value, Version: m.Version, ExpireAt: m.ExpireAt,
			Timestamp: hlc.Timestamp{WallNanos: m.Timestamp, Logical: m.Logical}})
	} else {
		dst = append(dst, 0)
	}
	dst = appendBytes(dst, []byte(m.Role))
	dst = binary.AppendUvarint(dst, m.Epoch)
	dst = binary.AppendUvarint(dst, m.LagEntries)
	return binary.AppendVarint(dst, int64(m.Lag))
}

func decodePrimaryGet(b []byte) (kv.ReadMeta, error) {
	bad := kv.Errorf(kv.CodeInternal, "router: corrupt primary read reply")
	if len(b) == 0 {
		return kv.ReadMeta{}, bad
	}
	var m kv.ReadMeta
	found := b[0] == 1
	b = b[1:]
	if found {
		v, rest, err := kv.DecodeValue(b)
		if err != nil {
			return kv.ReadMeta{}, fmt.Errorf("router: primary read reply: %w", err)
		}
		m.Found, m.Value, m.Version, m.ExpireAt = true, v.Data, v.Version, v.ExpireAt
		m.Timestamp, m.Logical = v.Timestamp.WallNanos, v.Timestamp.Logical
		b = rest
	}
	role, rest, err := readBytes(b)
	if err != nil {
		return kv.ReadMeta{}, bad
	}
	m.Role = string(role)
	var k int
	if m.Epoch, k = binary.Uvarint(rest); k <= 0 {
		return kv.ReadMeta{}, bad
	}
	rest = rest[k:]
	if m.LagEntries, k = binary.Uvarint(rest); k <= 0 {
		return kv.ReadMeta{}, bad
	}
	lag, k := binary.Varint(rest[k:])
	if k <= 0 {
		return kv.ReadMeta{}, bad
	}
	m.Lag = time.Duration(lag)
	return m, nil
}

// servePrimary answers a forwarded request of a primary namespace from
// this node's engine; it never forwards again.
func (r *Router) servePrimary(ctx context.Context, op byte, group uint64, body []byte) ([]byte, error) {
	if r.cfg.Primaries == nil {
		return nil, kv.Errorf(kv.CodeNotSupported, "node %d does not run replication=primary namespaces", r.cfg.Self)
	}
	switch op {
	case opPrimaryWrite, opPrimaryWriteErr:
		b, err := kv.DecodeBatch(body)
		if err != nil {
			return nil, err
		}
		res, err := r.cfg.Primaries.Write(ctx, int(group), b)
		if op == opPrimaryWrite {
			if err != nil {
				return nil, err
			}
			return kv.AppendResults(nil, res), nil
		}
		// The engine's error travels in the reply, not as the transport's
		// error frame, so that kv.ErrNotAdmitted survives the trip and the
		// forwarding node can retry (writePrimary).
		reply := kv.AppendError(nil, err)
		if err != nil {
			return reply, nil
		}
		return kv.AppendResults(reply, res), nil
	default:
		ns, rest, err := readBytes(body)
		if err != nil {
			return nil, err
		}
		key, rest, err := readBytes(rest)
		if err != nil {
			return nil, err
		}
		stale, k := binary.Varint(rest)
		if k <= 0 {
			return nil, kv.Errorf(kv.CodeInvalid, "router: corrupt primary read")
		}
		m, err := primaryMeta(r.cfg.Primaries.Read(ctx, int(group), string(ns), key, time.Duration(stale)))
		if err != nil {
			return nil, err
		}
		return appendPrimaryGet(nil, m), nil
	}
}

// replicaReads is the request's replica-read bound: READONLY's, or any
// lag in an active-active namespace. ok is false when the primary must
// answer.
func replicaReads(ctx context.Context, n *Namespace) (maxStaleness time.Duration, ok bool) {
	if d, ok := kv.ReplicaReadsFrom(ctx); ok {
		return d, true
	}
	if n.Policy.Availability == kv.AvailabilityActiveActive {
		return -1, true
	}
	return 0, false
}

// primaryCover assigns each shard of a primary namespace to the node
// whose copy a scan reads: the shard's primary, or, when replicas may
// answer, the nearest replica (as for any namespace).
func (r *Router) primaryCover(ctx context.Context, n *Namespace) (map[uint64][]int, error) {
	if r.cfg.Primaries == nil {
		return nil, kv.Errorf(kv.CodeNotSupported, "namespace %q is replication=primary, which this node does not run", n.Name)
	}
	if _, ok := replicaReads(ctx, n); ok {
		return r.cover(n), nil
	}
	out := make(map[uint64][]int)
	for s := 0; s < n.Shards; s++ {
		p := r.primaryOf(n, s)
		if p == 0 {
			return nil, kv.Errorf(kv.CodeUnavailable, "shard %d of %q: %w (a failover is under way or the first primary is not chosen yet)", s, n.Name, errNoPrimary)
		}
		out[p] = append(out[p], s)
	}
	return out, nil
}

// localPrimaryScan reads shards (nil: all) of a primary namespace from
// this node's copies: each must be the shard's primary holding its lease
// before and after the read (so the read falls within the lease), or,
// with replica reads, within the staleness bound.
func (r *Router) localPrimaryScan(ctx context.Context, n *Namespace, req kv.ScanRequest, shards []int) (kv.ScanResult, error) {
	if shards == nil {
		for s := 0; s < n.Shards; s++ {
			shards = append(shards, s)
		}
	} else {
		req.ShardSet, req.Shards = shards, n.Shards
	}
	stale, anyReplica := replicaReads(ctx, n)
	check := func() error {
		for _, s := range shards {
			st, err := r.cfg.Primaries.Status(int(n.Groups[s]))
			if err != nil {
				return err
			}
			switch {
			case anyReplica && stale >= 0 && st.Lag.Time > stale:
				return kv.Errorf(kv.CodeUnavailable, "shard %d of %q on node %d: %w: lag %v, bound %v", s, n.Name, r.cfg.Self, primary.ErrTooStale, st.Lag.Time, stale)
			case !anyReplica && (st.Role != primary.Primary || st.Lag.Time != 0):
				return kv.Errorf(kv.CodeNotLeader, "shard %d of %q: node %d is not its primary holding a lease (primary: node %d)", s, n.Name, r.cfg.Self, st.Primary)
			}
		}
		return nil
	}
	if err := check(); err != nil {
		return kv.ScanResult{}, err
	}
	res, err := r.cfg.Store.Scan(ctx, req)
	if err != nil {
		return kv.ScanResult{}, err
	}
	if err := check(); err != nil {
		return kv.ScanResult{}, err
	}
	return res, nil
}

// appendPrimaryScan encodes a scan of a primary namespace's shards for
// another node, with the request's replica-read bound (-2: none).
func appendPrimaryScan(ctx context.Context, req kv.ScanRequest) []byte {
	bound := int64(-2)
	if d, ok := kv.ReplicaReadsFrom(ctx); ok {
		bound = int64(max(d, -1))
	}
	msg := binary.AppendVarint(appendHeader(nil, opPrimaryScan, 0), bound)
	return appendScanRequest(msg, req)
}

// servePrimaryScan answers another node's scan of shards it covers.
func (r *Router) servePrimaryScan(ctx context.Context, from transport.NodeID, body []byte) ([]byte, error) {
	bound, k := binary.Varint(body)
	if k <= 0 {
		return nil, kv.Errorf(kv.CodeInvalid, "router: corrupt primary scan from node %d", from)
	}
	if bound != -2 {
		ctx = kv.WithReplicaReads(ctx, time.Duration(bound))
	}
	req, err := decodeScanRequest(body[k:])
	if err != nil {
		return nil, err
	}
	n, err := r.namespace(ctx, req.Namespace)
	if err != nil {
		return nil, err
	}
	if !primaryNS(n) || req.Shards != n.Shards || r.cfg.Primaries == nil {
		return nil, kv.Errorf(kv.CodeUnavailable, "scan of %q: the nodes disagree on its layout", n.Name)
	}
	for _, s := range req.ShardSet {
		if s < 0 || s >= n.Shards || !r.local(n, s) {
			return nil, kv.Errorf(kv.CodeUnavailable, "node %d has no replica of shard %d of %q", r.cfg.Self, s, n.Name)
		}
	}
	res, err := r.localPrimaryScan(ctx, n, req, req.ShardSet)
	if err != nil {
		return nil, err
	}
	return appendScanResult(nil, res), nil
}
