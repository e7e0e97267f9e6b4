package primary

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// applyAppend is the replica side of log shipping (on the loop): fence by
// epoch, reconcile once per epoch, catch up by snapshot when behind the
// primary's tail, apply the new entries in order, and ack.
func (s *shard) applyAppend(a inAppend) {
	m := a.m
	s.mu.Lock()
	v, _ := failover.Check(s.mu.st.Epoch, m.Epoch)
	switch v {
	case failover.RefuseStale:
		mine := s.mu.st.Epoch
		s.mu.Unlock()
		_ = s.e.ep.Send(transport.NodeID(a.from), KindPrimary, encodeStale(staleMsg{Shard: s.id, Epoch: mine}))
		return
	case failover.StepDown:
		s.stepDownLocked(m.Epoch, a.from, fmt.Sprintf("append of epoch %d from node %d", m.Epoch, a.from))
	}
	if s.mu.st.Primary == 0 {
		s.mu.st.Primary, s.mu.dirty = a.from, true
	}
	if s.mu.role == Primary || s.mu.st.Primary != a.from {
		// Two senders in one epoch cannot happen (one promotion per
		// epoch); ignore rather than trust either.
		s.mu.Unlock()
		return
	}
	s.mu.primaryLast = max(s.mu.primaryLast, m.PrimaryLast)
	s.mu.heardAt = max(s.mu.heardAt, a.at)
	needReconcile := s.mu.reconciled < m.Epoch
	s.mu.Unlock()
	s.persistIfDirty()
	if needReconcile {
		if err := s.reconcile(m); err != nil {
			return
		}
	}
	s.mu.Lock()
	needSnap := s.mu.st.NeedSnapshot || s.mu.st.Last+1 < m.TailStart
	s.mu.Unlock()
	if needSnap {
		if err := s.fetchSnapshot(a.from, m.Epoch); err != nil {
			return
		}
	}

	s.mu.Lock()
	st := s.mu.st
	s.mu.Unlock()
	var batches []kv.Batch
	var ents []entry
	reset := false
	for _, en := range m.Entries {
		if en.LSN <= st.Last {
			continue // a resend
		}
		if en.LSN != st.Last+1 {
			reset = true // a gap: something was lost on the way
			break
		}
		b, err := kv.DecodeBatch(en.Data)
		if err != nil || b.Revision != uint64(en.LSN) {
			return // corrupt: leave it to the resend
		}
		// A promoted replica must stamp later writes after these.
		s.e.hlc.Observe(b.Timestamp)
		b.Marks = s.logMarks(&st, en)
		batches, ents = append(batches, b), append(ents, en)
	}
	if len(batches) > 0 {
		if _, err := s.e.store.ApplyAll(s.ctx, batches); err != nil {
			s.stop(err)
			return
		}
	}
	s.mu.Lock()
	s.extendTailLocked(st, ents)
	if st.Last >= m.PrimaryLast {
		s.mu.caughtUpAt = a.at
	}
	s.mu.Unlock()
	_ = s.e.ep.Send(transport.NodeID(a.from), KindPrimary, encodeAck(ackMsg{Shard: s.id, Epoch: m.Epoch, Applied: st.Last, Reset: reset}))
}

// reconcile checks this log against the history of the primary of
// m.Epoch (failover.LostWrites). Entries the primary's log does not hold
// are moved aside into LostNamespace, counted, and removed from the log;
// since their effects are still in the rows, the replica then needs a
// snapshot before it serves or applies anything.
//
// LostWrites sees only the retained tail. When the whole tail diverges,
// the divergence may start before it; this node's own epoch history says
// where, and the entries before the tail are counted as lost without
// their contents (Status.LostUnrecorded).
func (s *shard) reconcile(m appendMsg) error {
	s.mu.Lock()
	st := s.mu.st
	suffix := make([]failover.Entry, len(s.mu.tail))
	for i, en := range s.mu.tail {
		suffix[i] = failover.Entry{LSN: en.LSN, Epoch: en.Epoch}
	}
	tail := s.mu.tail
	first := s.tailFirstLocked()
	s.mu.Unlock()
	lost, err := failover.LostWrites(suffix, m.History)
	if err != nil {
		return err
	}
	cut := st.Last + 1 // the first LSN not kept
	if len(lost) > 0 {
		cut = lost[0].LSN
	}
	if cut == first && first > 1 {
		if d, ok := divergence(st.History, m.History, first-1); ok {
			cut = d
		}
	}
	if cut > st.Last {
		s.mu.Lock()
		s.mu.st.History = m.History
		s.mu.reconciled = m.Epoch
		s.mu.dirty = true
		s.mu.Unlock()
		return nil
	}
	keep := len(tail) - len(lost)
	b := kv.Batch{Now: s.cfg.Now().UnixMilli()}
	tooLarge := uint64(0)
	for _, en := range tail[keep:] {
		b.Marks = append(b.Marks, kv.Mark{Key: logKey(s.id, en.LSN)})
		if len(en.Data) > kv.DefaultMaxValueSize {
			tooLarge++ // over the store's default value limit: count it only
			continue
		}
		b.Ops = append(b.Ops, kv.Op{Kind: kv.OpSet, Namespace: LostNamespace, Key: lostKey(s.id, en.Epoch, en.LSN), Value: en.Data})
	}
	beyond := uint64(0) // lost entries that had left the tail
	if cut < first {
		beyond = uint64(first - cut)
	}
	st.Last = cut - 1
	st.LastEpoch = epochAt(m.History, st.Last)
	st.TailStart = min(st.TailStart, st.Last+1)
	st.NeedSnapshot = true
	st.Lost += uint64(len(lost)) + beyond
	st.LostUnrecorded += tooLarge + beyond
	st.History = m.History
	b.Marks = append(b.Marks, kv.Mark{Key: stateKey(s.id), Value: encodeState(&st)})
	if _, err := s.e.store.Apply(s.ctx, b); err != nil {
		s.stop(err)
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.st.Last, s.mu.st.LastEpoch, s.mu.st.TailStart = st.Last, st.LastEpoch, st.TailStart
	s.mu.st.NeedSnapshot, s.mu.st.Lost, s.mu.st.LostUnrecorded, s.mu.st.History = true, st.Lost, st.LostUnrecorded, st.History
	if cut < first {
		keep = 0
	}
	s.mu.tail = s.mu.tail[:keep:keep]
	s.mu.reconciled = m.Epoch
	s.mu.caughtUpAt = 0
	return nil
}

// divergence returns the first LSN up to last at which logs with
// histories own and theirs hold entries of different epochs. Both
// epochs are constant between epoch starts, so only starts need checking.
func divergence(own, theirs []failover.EpochStart, last failover.LSN) (failover.LSN, bool) {
	if last < 1 {
		return 0, false
	}
	points := []failover.LSN{1}
	for _, h := range [][]failover.EpochStart{own, theirs} {
		for _, es := range h {
			if es.Start <= last {
				points = append(points, es.Start)
			}
		}
	}
	slices.Sort(points)
	for _, p := range points {
		if epochAt(own, p) != epochAt(theirs, p) {
			return p, true
		}
	}
	return 0, false
}

// epochAt is the epoch of the entry at lsn in a log with history h.
func epochAt(h []failover.EpochStart, lsn failover.LSN) failover.Epoch {
	i := sort.Search(len(h), func(i int) bool { return h[i].Start > lsn })
	if i == 0 {
		return 0
	}
	return h[i-1].Epoch
}

// fetchSnapshot copies the shard from the primary of epoch and installs
// it (on the loop).
func (s *shard) fetchSnapshot(from failover.NodeID, epoch failover.Epoch) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.SnapshotTimeout)
	defer cancel()
	reply, err := s.e.ep.Call(ctx, transport.NodeID(from), KindPrimary, encodeSnapshotReq(snapshotReq{Shard: s.id, Epoch: epoch}))
	if err != nil {
		return fmt.Errorf("snapshot of shard %d from node %d: %w", s.id, from, err)
	}
	snap, err := decodeSnapshot(reply)
	if err != nil {
		return fmt.Errorf("snapshot of shard %d from node %d: %w", s.id, from, err)
	}
	if snap.Epoch != epoch {
		s.observeEpoch(snap.Epoch, 0)
		return fmt.Errorf("snapshot of shard %d from node %d: %w: epoch %d, want %d", s.id, from, failover.ErrStaleEpoch, snap.Epoch, epoch)
	}
	return s.installSnapshot(snap)
}

// installSnapshot replaces the shard's rows of every owned namespace and
// the log position with the snapshot's, in one atomic batch.
func (s *shard) installSnapshot(snap snapshot) error {
	s.mu.Lock()
	st := s.mu.st
	s.mu.Unlock()
	if snap.Epoch < st.Epoch {
		return fmt.Errorf("snapshot of epoch %d: %w", snap.Epoch, failover.ErrStaleEpoch)
	}
	scope := s.e.scope(s.id)
	b := kv.Batch{Now: s.cfg.Now().UnixMilli(), Shard: scope.index, Shards: scope.shards}
	seen := map[string]bool{}
	flush := func(ns string) {
		if !seen[ns] && scope.covers(ns) {
			seen[ns] = true
			b.Ops = append(b.Ops, kv.Op{Kind: kv.OpFlush, Namespace: ns})
		}
	}
	for _, n := range s.e.store.Keyspace() {
		flush(n.Name)
	}
	for _, r := range snap.Rows {
		if !scope.covers(r.NS) {
			return fmt.Errorf("snapshot of shard %d: a row of namespace %q, which the shard does not hold", s.id, r.NS)
		}
		flush(r.NS)
		b.Ops = append(b.Ops, kv.Op{Kind: kv.OpRestore, Namespace: r.NS, Key: r.Key, Restored: r.Value})
		s.e.hlc.Observe(r.Value.Timestamp)
	}
	for lsn := st.TailStart; lsn <= st.Last; lsn++ {
		b.Marks = append(b.Marks, kv.Mark{Key: logKey(s.id, lsn)})
	}
	st.Last, st.LastEpoch, st.TailStart = snap.Last, snap.LastEpoch, snap.Last+1
	st.NeedSnapshot = false
	st.History = snap.History
	b.Marks = append(b.Marks, kv.Mark{Key: stateKey(s.id), Value: encodeState(&st)})
	if _, err := s.e.store.Apply(s.ctx, b); err != nil {
		s.stop(err)
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.st.Last, s.mu.st.LastEpoch, s.mu.st.TailStart = st.Last, st.LastEpoch, st.TailStart
	s.mu.st.NeedSnapshot, s.mu.st.History = false, st.History
	s.mu.tail = nil
	if snap.Epoch == s.mu.st.Epoch {
		s.mu.reconciled = snap.Epoch
	}
	return nil
}

// serveSnapshot answers a replica's snapshot request while this node is
// the primary of the epoch it names. The rows and the log position come
// from one storage view, so they agree.
func (s *shard) serveSnapshot(ctx context.Context, from failover.NodeID, req snapshotReq) ([]byte, error) {
	s.mu.Lock()
	role, epoch := s.mu.role, s.mu.st.Epoch
	var notPrimary error
	if role != Primary {
		notPrimary = s.notPrimaryLocked()
	}
	s.mu.Unlock()
	switch {
	case req.Epoch < epoch:
		return nil, kv.Errorf(kv.CodeStaleEpoch, "shard %d: snapshot for node %d: %w: request epoch %d, current %d", s.id, from, failover.ErrStaleEpoch, req.Epoch, epoch)
	case notPrimary != nil:
		return nil, notPrimary
	case req.Epoch > epoch:
		return nil, kv.Errorf(kv.CodeNotLeader, "shard %d: %w in epoch %d (at %d)", s.id, ErrNotPrimary, req.Epoch, epoch)
	}
	v, err := s.e.store.View()
	if err != nil {
		return nil, err
	}
	defer v.Close()
	raw, ok, err := v.Mark(stateKey(s.id))
	if err != nil {
		return nil, err
	}
	var st state
	if ok {
		if st, err = decodeState(raw); err != nil {
			return nil, err
		}
	}
	snap := snapshot{Epoch: epoch, Last: st.Last, LastEpoch: st.LastEpoch, History: st.History}
	scope := s.e.scope(s.id)
	for _, n := range s.e.store.Keyspace() {
		if !scope.covers(n.Name) {
			continue
		}
		err := v.ShardRows(ctx, n.Name, scope.index, scope.shards, func(key []byte, val kv.Value) error {
			val.Data = append([]byte(nil), val.Data...)
			snap.Rows = append(snap.Rows, row{NS: n.Name, Key: append([]byte(nil), key...), Value: val})
			return nil
		})
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil, kv.Errorf(kv.CodeTimeout, "shard %d: snapshot: %w", s.id, err)
			}
			return nil, err
		}
	}
	return encodeSnapshot(&snap), nil
}
