package primary

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// shard is one replica of a shard on this node.
//
// Goroutines (all stopped by the shard's context, a child of the
// engine's, and waited for by Engine.RemoveShard and Engine.Close):
//   - loop: the only goroutine that changes the log and the storage
//     marks. It appends client writes (primary), applies appends
//     (replica), reconciles, installs snapshots and persists epochs.
//   - tick: the control-plane client. It reports, renews the lease, ticks
//     the in-sync tracker and sends in-sync proposals.
//   - sender (one per other member, while primary of an epoch): streams
//     log entries and heartbeats to that replica.
//
// mu guards the in-memory state the goroutines share; it is never held
// across storage, network or Authority calls.
type shard struct {
	e  *Engine
	id int
	// cfg is the engine's Config with the shard's failover bounds
	// (ShardConfig.Failover).
	cfg Config
	// ctx ends the shard's goroutines and its storage, network and
	// Authority calls; its cause is ErrRemoved (RemoveShard) or
	// ErrStopped (Engine.Close). wg counts the shard's goroutines.
	ctx     context.Context
	cancel  context.CancelCauseFunc
	wg      sync.WaitGroup
	policy  failover.AckPolicy
	others  []failover.NodeID // members but this node
	writes  chan *writeReq
	appends chan inAppend
	posts   chan func()
	kick    chan struct{} // cap 1: state changed, persist it
	renew   chan struct{} // cap 1: renew the lease now
	isrKick chan struct{} // cap 1: an ack changed the in-sync set: propose now, not at the next tick
	stopped atomic.Bool

	mu struct {
		sync.Mutex
		st    state // persisted, except while dirty
		dirty bool  // st.Epoch or st.Primary changed and not yet persisted
		role  Role
		tail  []entry // retained log, ascending and contiguous, ending at st.Last

		// Primary of st.Epoch.
		termCancel context.CancelFunc
		lease      failover.Lease
		leaseSent  int64
		hasLease   bool
		isr        *failover.ISR
		peers      map[failover.NodeID]*peer
		waiters    []*writeReq // ascending LSN, not yet acknowledged
		degraded   uint64
		// degrading is set while writes are being admitted degraded,
		// so the start and the end of an episode are reported once.
		degrading bool
		// isrLeft and isrJoined count in-sync set changes (all epochs).
		isrLeft, isrJoined uint64

		// Replica.
		reconciled  failover.Epoch // the epoch whose history this log was checked against
		primaryLast failover.LSN   // the primary's last LSN as last heard
		heardAt     int64          // when the primary's latest append arrived; 0: not in this run
		caughtUpAt  int64          // when this node last knew it held all the primary had; 0: never
	}
}

// peer is what a primary's sender and the ack handler share about one
// replica.
type peer struct {
	acked   failover.LSN // highest LSN acked
	last    failover.LSN // the LSN of the latest ack: where the replica is
	reset   bool
	resetTo failover.LSN
	wake    chan struct{} // cap 1
}

type inAppend struct {
	from failover.NodeID
	at   int64
	m    appendMsg
}

// Write request states: the loop admits a pending request, the caller
// abandons one whose context ended first; whichever swaps first decides
// whether the outcome is known.
const (
	wPending int32 = iota
	wAdmitted
	wAbandoned
)

type writeReq struct {
	ctx     context.Context
	batch   kv.Batch
	state   atomic.Int32
	lsn     failover.LSN
	results []kv.Result
	done    chan error // cap 1
}

func newShard(e *Engine, id int, cfg Config, sc ShardConfig) (*shard, error) {
	s := &shard{e: e, id: id, cfg: cfg, policy: sc.Policy,
		writes:  make(chan *writeReq, 4*cfg.MaxWriteBatch),
		appends: make(chan inAppend, 256),
		posts:   make(chan func(), 16),
		kick:    make(chan struct{}, 1),
		renew:   make(chan struct{}, 1),
		isrKick: make(chan struct{}, 1),
	}
	for _, m := range sc.Members {
		if m != cfg.NodeID && !slices.Contains(s.others, m) {
			s.others = append(s.others, m)
		}
	}
	s.mu.st = state{TailStart: 1}
	raw, ok, err := e.store.Mark(stateKey(id))
	if err != nil {
		return nil, err
	}
	if ok {
		if s.mu.st, err = decodeState(raw); err != nil {
			return nil, err
		}
	}
	for lsn := s.mu.st.TailStart; lsn <= s.mu.st.Last; lsn++ {
		raw, ok, err := e.store.Mark(logKey(id, lsn))
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: log entry %d missing (tail starts at %d, last %d)", ErrCorrupt, lsn, s.mu.st.TailStart, s.mu.st.Last)
		}
		en, err := decodeLogMark(lsn, raw)
		if err != nil {
			return nil, err
		}
		s.mu.tail = append(s.mu.tail, en)
	}
	if n := len(s.mu.tail); n > 0 {
		// Stamp new writes after the newest one this log holds.
		if b, err := kv.DecodeBatch(s.mu.tail[n-1].Data); err == nil {
			e.hlc.Observe(b.Timestamp)
		}
	}
	s.ctx, s.cancel = context.WithCancelCause(e.ctx)
	return s, nil
}

func (s *shard) start() {
	s.goFn(s.loop)
	s.goFn(s.tick)
}

// goFn starts fn as one of the shard's goroutines, which the engine also
// counts.
func (s *shard) goFn(fn func()) {
	s.e.wg.Add(1)
	s.wg.Add(1)
	go func() {
		defer s.e.wg.Done()
		defer s.wg.Done()
		fn()
	}()
}

// stopErr says why a stopped shard serves nothing: ErrRemoved,
// ErrStopped for a closed engine, or ErrStopped for failed storage.
func (s *shard) stopErr() error {
	if err := context.Cause(s.ctx); err != nil {
		return err
	}
	return ErrStopped
}

// deleteState deletes the shard's persisted position and retained log
// (RemoveShard, once the shard's goroutines have ended).
func (s *shard) deleteState(ctx context.Context) error {
	// A storage call the shard abandoned when it stopped may still be
	// queued in the store, which applies batches in order: once an empty
	// batch is through, the marks read below are the last ones.
	if _, err := s.e.store.Apply(ctx, kv.Batch{}); err != nil {
		return err
	}
	raw, ok, err := s.e.store.Mark(stateKey(s.id))
	if err != nil || !ok {
		return err
	}
	st, err := decodeState(raw)
	if err != nil {
		return err
	}
	b := kv.Batch{Marks: []kv.Mark{{Key: stateKey(s.id)}}}
	for lsn := st.TailStart; lsn <= st.Last; lsn++ {
		b.Marks = append(b.Marks, kv.Mark{Key: logKey(s.id, lsn)})
	}
	_, err = s.e.store.Apply(ctx, b)
	return err
}

func (s *shard) clock() int64 { return s.cfg.Clock() }

func nudge(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// stop marks the shard failed (its storage refused a write, leaving the
// log and the rows in an unknown relation): it serves nothing more. A
// storage call cut short because the shard is stopping is no failure.
func (s *shard) stop(err error) {
	why := fmt.Sprintf("storage failed: %v", err)
	if s.ctx.Err() != nil {
		why = s.stopErr().Error()
	}
	s.stopped.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stepDownLocked(s.mu.st.Epoch, s.mu.st.Primary, why)
}

// loop owns the log: see the shard's comment.
func (s *shard) loop() {
	ctx := s.ctx
	for {
		s.persistIfDirty()
		if s.stopped.Load() {
			<-ctx.Done()
			return
		}
		select {
		case <-ctx.Done():
			s.mu.Lock()
			stopped := s.stopErr()
			for _, w := range s.mu.waiters {
				w.done <- kv.Errorf(kv.CodeTimeout, "outcome unknown: shard %d: %w", s.id, stopped)
			}
			s.mu.waiters = nil
			s.stepDownLocked(s.mu.st.Epoch, s.mu.st.Primary, stopped.Error())
			s.mu.Unlock()
			return
		case <-s.kick:
		case f := <-s.posts:
			f()
		case w := <-s.writes:
			ws := []*writeReq{w}
		more:
			for len(ws) < s.cfg.MaxWriteBatch {
				select {
				case w := <-s.writes:
					ws = append(ws, w)
				default:
					break more
				}
			}
			s.appendWrites(ws)
		case a := <-s.appends:
			s.applyAppend(a)
		}
	}
}

// persistIfDirty writes a changed epoch before the loop acts on anything
// else, so a restart never brings an older epoch back (failover.StepDown).
func (s *shard) persistIfDirty() {
	s.mu.Lock()
	if !s.mu.dirty || s.stopped.Load() {
		s.mu.Unlock()
		return
	}
	st := s.mu.st
	s.mu.dirty = false
	s.mu.Unlock()
	if _, err := s.e.store.Apply(s.ctx, kv.Batch{Marks: []kv.Mark{{Key: stateKey(s.id), Value: encodeState(&st)}}}); err != nil {
		s.stop(err)
	}
}

// logMarks returns the marks that persist en with st advanced to it: the
// entry, the deletion of entries falling out of the retained tail, and
// the state. It updates st.
func (s *shard) logMarks(st *state, en entry) []kv.Mark {
	marks := []kv.Mark{{Key: logKey(s.id, en.LSN), Value: encodeLogMark(en)}}
	st.Last, st.LastEpoch = en.LSN, en.Epoch
	if keep := failover.LSN(s.cfg.TailEntries); en.LSN >= keep {
		for ; st.TailStart <= en.LSN-keep; st.TailStart++ {
			marks = append(marks, kv.Mark{Key: logKey(s.id, st.TailStart)})
		}
	}
	return append(marks, kv.Mark{Key: stateKey(s.id), Value: encodeState(st)})
}

// extendTailLocked appends entries applied with st now persisted, and
// forgets old entries in chunks so that trimming costs O(1) per entry.
func (s *shard) extendTailLocked(st state, ents []entry) {
	s.mu.st.Last, s.mu.st.LastEpoch, s.mu.st.TailStart = st.Last, st.LastEpoch, st.TailStart
	s.mu.tail = append(s.mu.tail, ents...)
	if n := len(s.mu.tail); n > s.cfg.TailEntries+s.cfg.TailEntries/4 {
		i, _ := slices.BinarySearchFunc(s.mu.tail, st.TailStart, func(e entry, l failover.LSN) int { return int(e.LSN) - int(l) })
		s.mu.tail = slices.Clone(s.mu.tail[i:])
	}
}

// tailFirstLocked is the first LSN the tail holds (st.Last+1 when empty).
func (s *shard) tailFirstLocked() failover.LSN {
	if len(s.mu.tail) == 0 {
		return s.mu.st.Last + 1
	}
	return s.mu.tail[0].LSN
}

// ---- primary: writes ----

func (s *shard) write(ctx context.Context, b kv.Batch) ([]kv.Result, error) {
	if s.stopped.Load() {
		return nil, kv.Errorf(kv.CodeUnavailable, "shard %d: %w", s.id, s.stopErr())
	}
	s.mu.Lock()
	if s.mu.role != Primary {
		err := s.notPrimaryLocked()
		s.mu.Unlock()
		return nil, err
	}
	s.mu.Unlock()
	w := &writeReq{ctx: ctx, batch: b, done: make(chan error, 1)}
	select {
	case s.writes <- w:
	case <-ctx.Done():
		return nil, kv.Errorf(kv.CodeUnavailable, "shard %d: write not admitted: %w", s.id, ctx.Err())
	case <-s.ctx.Done():
		return nil, kv.Errorf(kv.CodeUnavailable, "shard %d: %w", s.id, s.stopErr())
	}
	var end error
	select {
	case err := <-w.done:
		if err != nil {
			return nil, err
		}
		return w.results, nil
	case <-ctx.Done():
		end = ctx.Err()
	case <-s.ctx.Done():
		end = s.stopErr()
	}
	if w.state.CompareAndSwap(wPending, wAbandoned) {
		return nil, kv.Errorf(kv.CodeUnavailable, "shard %d: write not admitted: %w", s.id, end)
	}
	return nil, kv.Errorf(kv.CodeTimeout, "outcome unknown: shard %d did not acknowledge the write in time: %w", s.id, end)
}

func (s *shard) notPrimaryLocked() error {
	if s.mu.st.Primary == 0 || s.mu.st.Primary == s.cfg.NodeID {
		return kv.Errorf(kv.CodeNotLeader, "shard %d: %w: primary of epoch %d unknown", s.id, ErrNotPrimary, s.mu.st.Epoch)
	}
	return kv.Errorf(kv.CodeNotLeader, "shard %d: %w: node %d is primary of epoch %d", s.id, ErrNotPrimary, s.mu.st.Primary, s.mu.st.Epoch)
}

// admitLocked decides whether the primary takes new writes at now: it
// must be primary, hold its lease (failover.Lease.HolderCheck) and have
// the in-sync replicas its policy needs (AckPolicy.CanAcceptWrite).
func (s *shard) admitLocked(now int64) (degraded bool, err error) {
	switch {
	case s.stopped.Load():
		return false, kv.Errorf(kv.CodeUnavailable, "shard %d: %w", s.id, s.stopErr())
	case s.mu.role != Primary:
		return false, s.notPrimaryLocked()
	case !s.mu.hasLease:
		return false, kv.Errorf(kv.CodeUnavailable, "shard %d: %w: no grant yet in epoch %d", s.id, failover.ErrLeaseLost, s.mu.st.Epoch)
	}
	if err := s.mu.lease.HolderCheck(now, s.mu.leaseSent, s.cfg.Failover.MaxDrift); err != nil {
		return false, kv.Errorf(kv.CodeUnavailable, "shard %d: %w", s.id, err)
	}
	inSync := len(s.mu.isr.InSync())
	if s.policy.Mode == failover.AckSync {
		// Only replicas the control plane has recorded may be promoted:
		// count those, so that a failover after this write has a
		// candidate holding it.
		inSync = s.mu.isr.Promotable()
	}
	degraded, err = s.policy.CanAcceptWrite(inSync)
	if err != nil {
		return false, kv.Errorf(kv.CodeUnavailable, "shard %d: %w", s.id, err)
	}
	return degraded, nil
}

// appendWrites admits, appends and applies a group of client writes (one
// storage call), then hands them to the ack rule and wakes the senders.
func (s *shard) appendWrites(ws []*writeReq) {
	s.mu.Lock()
	degraded, err := s.admitLocked(s.clock())
	st := s.mu.st
	s.mu.Unlock()
	if err != nil {
		err = kv.NotAdmitted(err)
		for _, w := range ws {
			if w.state.CompareAndSwap(wPending, wAdmitted) {
				w.done <- err
			}
		}
		return
	}
	var batches []kv.Batch
	var ents []entry
	var taken []*writeReq
	for _, w := range ws {
		if w.ctx.Err() != nil || !w.state.CompareAndSwap(wPending, wAdmitted) {
			continue // its caller reports it as not admitted
		}
		b := w.batch
		b.Revision = uint64(st.Last + 1)
		if b.Now == 0 {
			b.Now = s.cfg.Now().UnixMilli()
		}
		if b.Timestamp.IsZero() {
			b.Timestamp = s.e.hlc.Now()
		}
		b.Marks = nil
		en := entry{LSN: st.Last + 1, Epoch: st.Epoch, Data: kv.AppendBatch(nil, &b)}
		b.Marks = s.logMarks(&st, en)
		batches, ents, taken = append(batches, b), append(ents, en), append(taken, w)
	}
	if len(taken) == 0 {
		return
	}
	results, err := s.e.store.ApplyAll(s.ctx, batches)
	if err != nil {
		if s.ctx.Err() != nil {
			err = s.stopErr() // cut short by RemoveShard or Close
		}
		for _, w := range taken {
			w.done <- kv.Errorf(kv.CodeTimeout, "outcome unknown: shard %d: %w", s.id, err)
		}
		s.stop(err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.extendTailLocked(st, ents)
	for i, w := range taken {
		w.lsn, w.results = ents[i].LSN, results[i]
	}
	if s.mu.role != Primary || s.mu.st.Epoch != st.Epoch {
		// Stepped down while applying: the entries are in this log, but
		// whether the new primary has them is not for us to say.
		for _, w := range taken {
			w.done <- kv.Errorf(kv.CodeTimeout, "outcome unknown: shard %d: primary of epoch %d stepped down", s.id, st.Epoch)
		}
		return
	}
	if degraded {
		s.mu.degraded += uint64(len(taken))
	}
	if degraded != s.mu.degrading {
		s.mu.degrading = degraded
		if degraded {
			s.cfg.Logger.Warn("primary: taking writes with fewer in-sync replicas than the policy needs (allow_degrade): a failover may lose them",
				"shard", s.id, "epoch", st.Epoch, "in_sync", s.mu.isr.InSync(), "need", s.policy.K)
		} else {
			s.cfg.Logger.Info("primary: enough in-sync replicas again; writes are no longer degraded", "shard", s.id, "epoch", st.Epoch)
		}
	}
	_ = s.mu.isr.Appended(st.Last, s.clock()) // LSNs only grow here
	s.mu.waiters = append(s.mu.waiters, taken...)
	s.releaseLocked()
	for _, p := range s.mu.peers {
		nudge(p.wake)
	}
}

// releaseLocked acknowledges the waiting writes the ack policy now
// allows. Acks cover every LSN up to theirs, so the acknowledged writes
// are a prefix of the waiters.
func (s *shard) releaseLocked() {
	if s.mu.isr == nil {
		return
	}
	required := s.mu.isr.Required()
	n := 0
	for _, w := range s.mu.waiters {
		if !s.policy.Acked(required, s.mu.isr.AckedBy(w.lsn)) {
			break
		}
		w.done <- nil
		n++
	}
	s.mu.waiters = slices.Delete(s.mu.waiters, 0, n)
}

// stepDownLocked moves to epoch (never backwards) with primary as its
// primary (0: unknown). A primary stops: no more writes, senders end,
// pending acknowledgements are abandoned (their outcome is unknown).
func (s *shard) stepDownLocked(epoch failover.Epoch, primary failover.NodeID, why string) {
	if epoch > s.mu.st.Epoch {
		s.mu.st.Epoch, s.mu.st.Primary, s.mu.dirty = epoch, primary, true
	}
	if s.mu.role != Primary {
		return
	}
	s.mu.role = Replica
	s.mu.termCancel()
	for _, w := range s.mu.waiters {
		w.done <- kv.Errorf(kv.CodeTimeout, "outcome unknown: shard %d: primary stepped down: %s", s.id, why)
	}
	s.mu.waiters, s.mu.isr, s.mu.peers = nil, nil, nil
	// It held everything written until its lease ran out: no one else
	// could write before then.
	if s.mu.hasLease {
		s.mu.caughtUpAt = min(s.clock(), s.mu.lease.HolderValidUntil(s.mu.leaseSent, s.cfg.Failover.MaxDrift))
	}
	s.mu.hasLease = false
}

// observeEpoch steps down to a newer epoch learnt from a message.
func (s *shard) observeEpoch(epoch failover.Epoch, primary failover.NodeID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch > s.mu.st.Epoch {
		s.stepDownLocked(epoch, primary, fmt.Sprintf("epoch %d seen", epoch))
		nudge(s.kick)
	}
}

// takeOffice makes this node primary of a.Epoch (on the loop).
func (s *shard) takeOffice(a Assignment) {
	s.mu.Lock()
	if s.stopped.Load() || a.Epoch < s.mu.st.Epoch || (a.Epoch == s.mu.st.Epoch && s.mu.role == Primary) || s.mu.st.NeedSnapshot {
		s.mu.Unlock()
		return
	}
	isr, err := failover.NewISR(s.cfg.Failover, a.ISR, s.others, s.mu.st.Last, s.clock())
	if err != nil {
		s.mu.Unlock()
		return
	}
	st := &s.mu.st
	st.Epoch, st.Primary = a.Epoch, s.cfg.NodeID
	// The history describes this log from here on: epochs that started
	// after its last entry wrote nothing it holds. A primary restarting
	// in its own epoch keeps that epoch's start.
	var h []failover.EpochStart
	for _, es := range st.History {
		if es.Start <= st.Last+1 && es.Epoch <= a.Epoch {
			h = append(h, es)
		}
	}
	if len(h) == 0 || h[len(h)-1].Epoch != a.Epoch {
		h = append(h, failover.EpochStart{Epoch: a.Epoch, Start: st.Last + 1})
	}
	st.History = h
	s.mu.dirty = true
	s.mu.role = Primary
	s.mu.isr = isr
	s.mu.reconciled = a.Epoch
	s.mu.hasLease = false
	s.mu.waiters = nil
	s.mu.peers = make(map[failover.NodeID]*peer)
	ctx, cancel := context.WithCancel(s.ctx)
	s.mu.termCancel = cancel
	for _, id := range s.others {
		s.mu.peers[id] = &peer{wake: make(chan struct{}, 1)}
	}
	epoch := a.Epoch
	s.mu.Unlock()
	// The new epoch and its history are durable before any write of it.
	s.persistIfDirty()
	for _, id := range s.others {
		s.goFn(func() { s.sender(ctx, id, epoch) })
	}
	nudge(s.renew)
	// The new epoch's record still needs confirming (failover.NewISR), but
	// not at once: the replicas' first acks come within a round trip, and
	// their joining proposes (onAck), so one control-plane write both
	// confirms the record and names them; with none alive, the next tick
	// confirms it.
}

// onAck records a replica's progress (on the delivery goroutine).
func (s *shard) onAck(from failover.NodeID, m ackMsg, at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Epoch > s.mu.st.Epoch {
		s.stepDownLocked(m.Epoch, 0, fmt.Sprintf("ack of epoch %d", m.Epoch))
		nudge(s.kick)
		return
	}
	p := s.mu.peers[from]
	if m.Epoch < s.mu.st.Epoch || s.mu.role != Primary || p == nil || m.Applied > s.mu.st.Last {
		return
	}
	if err := s.mu.isr.Ack(from, m.Applied, at); err != nil {
		return
	}
	p.last = m.Applied
	if m.Applied > p.acked {
		p.acked = m.Applied
		nudge(p.wake) // the inflight window moved
	}
	if m.Reset {
		p.reset, p.resetTo = true, m.Applied
		nudge(p.wake)
	}
	if s.mu.isr.Pending() {
		nudge(s.isrKick) // a replica joined: record it now, not at the next tick
	}
	s.releaseLocked()
}

// sender streams the log to one replica while this node is primary of
// epoch: entries as they are appended (at most MaxInflight unacked), and
// a heartbeat append every HeartbeatInterval. A replica that stops making
// progress is resent everything it has not acked.
func (s *shard) sender(ctx context.Context, to failover.NodeID, epoch failover.Epoch) {
	cfg := s.cfg
	hb := time.NewTicker(cfg.HeartbeatInterval)
	defer hb.Stop()
	var next failover.LSN
	var lastSent int64 = math.MinInt64 / 2
	var ackedAtTick failover.LSN
	tick := false
	for {
		now := s.clock()
		s.mu.Lock()
		p := s.mu.peers[to]
		if s.mu.role != Primary || s.mu.st.Epoch != epoch || p == nil {
			s.mu.Unlock()
			return
		}
		st := &s.mu.st
		if next == 0 {
			next = st.Last + 1
		}
		if p.reset {
			next, p.reset = p.resetTo+1, false
		}
		if tick {
			if p.acked == ackedAtTick && p.acked+1 < next {
				next = p.acked + 1 // no progress for a heartbeat: resend
			}
			ackedAtTick, tick = p.acked, false
		}
		// Never resend what the replica says it holds (a rewind above may
		// predate its first ack of this epoch).
		next = min(max(next, p.last+1), st.Last+1)
		first := s.tailFirstLocked()
		var ents []entry
		if next >= first {
			hi := min(st.Last, next+failover.LSN(cfg.MaxBatchEntries)-1, p.acked+failover.LSN(cfg.MaxInflight))
			if hi >= next {
				ents = slices.Clone(s.mu.tail[next-first : hi-first+1])
			}
		}
		msg := appendMsg{Shard: s.id, Epoch: epoch, PrimaryLast: st.Last, TailStart: first, History: st.History, Entries: ents}
		after := next + failover.LSN(len(ents))
		more := after <= st.Last && after <= p.acked+failover.LSN(cfg.MaxInflight)
		wake := p.wake
		s.mu.Unlock()
		sent := false
		if len(ents) > 0 || now-lastSent >= int64(cfg.HeartbeatInterval) {
			if err := s.e.ep.Send(transport.NodeID(to), KindPrimary, encodeAppend(&msg)); err == nil {
				next, lastSent, sent = after, now, true
			}
		}
		if more && sent {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-hb.C:
			tick = true
		}
	}
}

// ---- control plane client ----

// tick drives the Authority: reports, lease renewals, in-sync upkeep.
func (s *shard) tick() {
	cfg := s.cfg
	report := time.NewTicker(cfg.ReportInterval)
	defer report.Stop()
	renew := time.NewTicker(cfg.Failover.RenewInterval)
	defer renew.Stop()
	hb := time.NewTicker(cfg.HeartbeatInterval)
	defer hb.Stop()
	silent := time.NewTicker(cfg.SilentReportInterval)
	defer silent.Stop()
	s.report()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-report.C:
			s.report()
		case <-silent.C:
			if s.primarySilent() {
				s.report()
			}
		case <-renew.C:
			s.renewLease()
		case <-s.renew:
			s.renewLease()
		case <-hb.C:
			s.isrTick()
		case <-s.isrKick:
			s.isrTick()
		}
	}
}

// primarySilent says whether this replica's primary has been silent long
// enough that its lease may be ending: from 3/4 of a lease (no promotion
// can come sooner: the control plane waits a lease and a margin from the
// last renewal it granted, and renewals come every quarter lease) to four
// leases (a shard
// still without a new primary by then has no candidate, and fast
// reports would only load the control plane). It then reports at
// SilentReportInterval (see Config).
func (s *shard) primarySilent() bool {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.role == Primary || s.mu.heardAt == 0 {
		return false
	}
	lease := int64(s.cfg.Failover.LeaseDuration)
	silence := now - s.mu.heardAt
	return silence >= lease*3/4 && silence <= 4*lease
}

func (s *shard) rpcCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.cfg.RPCTimeout)
}

func (s *shard) report() {
	s.mu.Lock()
	st := s.mu.st
	s.mu.Unlock()
	if st.NeedSnapshot || s.stopped.Load() {
		return // not a candidate until repaired: do not look alive
	}
	ctx, cancel := s.rpcCtx()
	a, err := s.e.auth.Report(ctx, s.id, ReplicaStatus{Node: s.cfg.NodeID, Epoch: st.Epoch, Applied: st.Last, LastEpoch: st.LastEpoch})
	cancel()
	if err != nil {
		return
	}
	me := s.cfg.NodeID
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := &s.mu.st
	switch {
	case a.Primary == me && (a.Epoch > cur.Epoch || (a.Epoch == cur.Epoch && s.mu.role != Primary)):
		// The loop takes office; if it is busy, the next report retries.
		select {
		case s.posts <- func() { s.takeOffice(a) }:
		default:
		}
	case a.Epoch > cur.Epoch:
		s.stepDownLocked(a.Epoch, a.Primary, fmt.Sprintf("control plane is at epoch %d", a.Epoch))
		nudge(s.kick)
	case a.Primary == me && a.Epoch == cur.Epoch && s.mu.role == Primary && s.mu.isr != nil:
		// The record as committed: it settles an in-sync proposal whose
		// reply was lost (a write that timed out but committed is
		// refused as a conflict when resent, and that reply carries no
		// record), so its members stop being required.
		if err := s.mu.isr.Recorded(a.ISR); err == nil {
			s.releaseLocked()
		}
	case a.Epoch == cur.Epoch && cur.Primary == 0 && a.Primary != 0:
		cur.Primary, s.mu.dirty = a.Primary, true
		nudge(s.kick)
	}
}

func (s *shard) renewLease() {
	s.mu.Lock()
	epoch, ok := s.mu.st.Epoch, s.mu.role == Primary
	s.mu.Unlock()
	if !ok {
		return
	}
	ctx, cancel := s.rpcCtx()
	sentAt := s.clock()
	l, err := s.e.auth.Renew(ctx, s.id, s.cfg.NodeID, epoch)
	cancel()
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.role != Primary || s.mu.st.Epoch != epoch || l.Epoch != epoch || l.Holder != s.cfg.NodeID {
		return
	}
	drift := s.cfg.Failover.MaxDrift
	if !s.mu.hasLease || l.HolderValidUntil(sentAt, drift) > s.mu.lease.HolderValidUntil(s.mu.leaseSent, drift) {
		s.mu.lease, s.mu.leaseSent, s.mu.hasLease = l, sentAt, true
	}
}

// isrTick re-evaluates the in-sync set's time bounds and sends the
// control plane a proposal when the set changed.
func (s *shard) isrTick() {
	s.mu.Lock()
	if s.mu.role != Primary || s.mu.isr == nil {
		s.mu.Unlock()
		return
	}
	s.mu.isr.Tick(s.clock())
	for _, ev := range s.mu.isr.Events() {
		if ev.Change == failover.Left {
			s.mu.isrLeft++
			s.cfg.Logger.Warn("primary: replica left the in-sync set", "shard", s.id, "epoch", s.mu.st.Epoch, "replica", ev.Replica, "reason", ev.Reason)
		} else {
			s.mu.isrJoined++
			s.cfg.Logger.Info("primary: replica joined the in-sync set", "shard", s.id, "epoch", s.mu.st.Epoch, "replica", ev.Replica)
		}
	}
	s.releaseLocked()
	p, ok := s.mu.isr.Propose()
	epoch := s.mu.st.Epoch
	s.mu.Unlock()
	if !ok {
		return
	}
	ctx, cancel := s.rpcCtx()
	rec, _ := s.e.auth.ProposeISR(ctx, s.id, p)
	cancel()
	if rec.Epoch == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.role != Primary || s.mu.st.Epoch != epoch || s.mu.isr == nil {
		return
	}
	if err := s.mu.isr.Recorded(rec); err != nil {
		s.stepDownLocked(rec.Epoch, 0, err.Error())
		nudge(s.kick)
		return
	}
	s.releaseLocked()
}

// ---- status ----

func (s *shard) status() Status {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.mu.st
	out := Status{Shard: s.id, Role: s.mu.role, Epoch: st.Epoch, Primary: st.Primary, Applied: st.Last, LastEpoch: st.LastEpoch,
		Lost: st.Lost, LostUnrecorded: st.LostUnrecorded, Degraded: s.mu.degraded, NeedSnapshot: st.NeedSnapshot,
		ISRLeft: s.mu.isrLeft, ISRJoined: s.mu.isrJoined, Failover: s.cfg.Failover}
	never := Lag{Time: math.MaxInt64}
	switch {
	case s.mu.role == Primary:
		out.InSync = s.mu.isr.InSync()
		out.Lag = never
		if s.mu.hasLease {
			out.Lease = s.mu.lease
			until := s.mu.lease.HolderValidUntil(s.mu.leaseSent, s.cfg.Failover.MaxDrift)
			out.Lag = Lag{Time: time.Duration(max(0, now-until))}
		}
	case st.NeedSnapshot || s.mu.reconciled < st.Epoch || s.mu.caughtUpAt == 0:
		out.Lag = never
	default:
		out.Lag = Lag{Time: time.Duration(max(0, now-s.mu.caughtUpAt))}
		if s.mu.primaryLast > st.Last {
			out.Lag.LSN = uint64(s.mu.primaryLast - st.Last)
		}
	}
	return out
}
