package raftstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/raftlog"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// loop is the state owned by the node's single engine goroutine: every
// RawNode is touched only here.
type loop struct {
	n      *Node
	groups map[uint64]*group
	ticks  uint64
	// readGroups are groups with reads waiting to be issued this round.
	readGroups []*group
	readSeq    uint64
	// created numbers replicas as they are created, so a reader can tell
	// a replica from one recreated in its place (GroupStatus.created).
	created uint64
}

type group struct {
	created     uint64
	spec        GroupSpec
	rn          *raft.RawNode
	st          *raftlog.GroupStorage
	applied     uint64
	appliedTerm uint64
	confState   *pb.ConfState
	lead        uint64
	// hsTerm and hsVote are the last hard state handed to the log.
	hsTerm, hsVote uint64
	// confChanged asks for the status to be published after this round.
	confChanged bool
	// The read lease (Config.LeaseReads): valid in leaseTerm until
	// leaseUntil, never from a round that started before transferAt (the
	// last time a leadership transfer was seen).
	leaseUntil time.Time
	leaseTerm  uint64
	transferAt time.Time
	// noVoteUntil keeps a restarted replica from voting for an election
	// timeout (lease reads only): it forgot which leader it heard from, so
	// it would otherwise vote at once and break that leader's lease.
	noVoteUntil time.Time
	// tomb is what an earlier, deleted replica of the group on this node
	// left (nil: none): votes it would have refused are dropped.
	tomb *tombstone
	// campaignAt, when set, is the applied index after which this replica
	// starts an election: raft refuses to campaign while the bootstrap's
	// conf changes are unapplied.
	campaignAt uint64

	proposals  map[uint64]*proposal // accepted by raft, by id
	unproposed []*proposal          // raft had no leader; retried each tick
	newReads   []*readWaiter
	issued     map[string]*readBatch
	applyWait  []*readBatch
}

type proposal struct {
	id   uint64
	ctx  context.Context
	data []byte
	// cc, when set, makes this a membership change instead of a write.
	cc *pb.ConfChangeV2
	// state decides, race-free between the loop and the waiting caller,
	// whether a timeout means "never written" (UNAVAILABLE) or "outcome
	// unknown" (TIMEOUT): the loop moves pending->offered before handing
	// the entry to raft, the caller moves pending->abandoned when it gives
	// up; whoever loses sees the other's decision.
	state atomic.Int32
	done  chan proposalResult
}

const (
	propPending int32 = iota
	propOffered
	propAbandoned
)

type proposalResult struct {
	results []kv.Result
	err     error
}

type readWaiter struct {
	ctx  context.Context
	done chan error
}

type readBatch struct {
	waiters []*readWaiter
	issued  uint64    // tick
	start   time.Time // when the ReadIndex round was started (lease)
	index   uint64
}

func newLoop(n *Node) *loop {
	return &loop{n: n, groups: make(map[uint64]*group)}
}

func (l *loop) run() {
	defer close(l.n.done)
	defer l.shutdown()
	t := time.NewTicker(l.n.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-l.n.ctx.Done():
			return
		case <-t.C:
			l.tick()
		case in := <-l.n.inbox:
			l.step(in)
		case f := <-l.n.funcs:
			f(l)
		}
		// Take whatever else is waiting, up to a bound, so one Ready round
		// (one fsync) covers as much work as possible.
	drain:
		for i := 0; i < 1024; i++ {
			select {
			case in := <-l.n.inbox:
				l.step(in)
			case f := <-l.n.funcs:
				f(l)
			default:
				break drain
			}
		}
		l.issueReads()
		if err := l.handleReady(); err != nil {
			if l.n.ctx.Err() != nil {
				return // closing: the state machine refused the last apply; a restart replays it
			}
			l.n.cfg.Logger.Error("raftstore: engine stopped", "node", l.n.cfg.NodeID, "err", err)
			l.n.cancel()
			return
		}
	}
}

// shutdown answers everything still waiting.
func (l *loop) shutdown() {
	for _, g := range l.groups {
		l.dropGroupWaiters(g)
	}
	// Requests queued but never run get their answer from ErrClosed via
	// n.done in exec; proposals posted without waiting see n.done too.
}

func (l *loop) dropGroupWaiters(g *group) {
	for _, p := range g.proposals {
		p.done <- proposalResult{err: kv.Errorf(kv.CodeTimeout, "outcome unknown: node %d stopped before the write committed", l.n.cfg.NodeID)}
	}
	for _, p := range g.unproposed {
		p.done <- proposalResult{err: ErrClosed}
	}
	for _, w := range g.newReads {
		w.done <- ErrClosed
	}
	for _, b := range g.issued {
		finishReads(b, ErrClosed)
	}
	for _, b := range g.applyWait {
		finishReads(b, ErrClosed)
	}
	g.proposals, g.unproposed, g.newReads, g.issued, g.applyWait = map[uint64]*proposal{}, nil, nil, map[string]*readBatch{}, nil
}

func finishReads(b *readBatch, err error) {
	for _, w := range b.waiters {
		w.done <- err
	}
}

func (l *loop) createGroup(spec GroupSpec) error {
	if _, ok := l.groups[spec.ID]; ok {
		return nil
	}
	cfg := &l.n.cfg
	st := cfg.Log.Group(spec.ID)
	hs, cs, err := st.InitialState()
	if err != nil {
		return fmt.Errorf("raftstore: group %d: %w", spec.ID, err)
	}
	applied, appliedTerm, err := l.readApplied(spec.ID)
	if err != nil {
		return err
	}
	last, err := st.LastIndex()
	if err != nil {
		return err
	}
	if applied > 0 && applied <= last {
		// Raft resumes from the conf state as of the applied index. The
		// log's copy is saved (synced) when a change is applied, but the
		// state machine's applied index may have lost its last rounds in
		// a crash: the state machine's own copy, written with the applied
		// mark, is the one that matches it.
		if v, ok, err := cfg.Store.Mark(confMarkKey(spec.ID)); err != nil {
			return fmt.Errorf("raftstore: group %d: conf mark: %w", spec.ID, err)
		} else if ok {
			csm := new(pb.ConfState)
			if err := proto.Unmarshal(v, csm); err != nil {
				return fmt.Errorf("raftstore: group %d: conf mark: %w", spec.ID, err)
			}
			if !proto.Equal(csm, cs) {
				b := cfg.Log.NewBatch()
				b.SetConfState(spec.ID, csm)
				if err := b.Commit(true); err != nil {
					return fmt.Errorf("raftstore: group %d: restore conf state: %w", spec.ID, err)
				}
				cs = csm
			}
		}
	} else if applied == 0 && last > 0 && len(confStateVoters(cs))+len(cs.GetLearners()) > 0 {
		// Nothing applied survived (a crash before the state machine's
		// first sync) but the log's conf state did: raft replays the log
		// from its first entry, conf changes included, so it must start
		// from the empty configuration they were applied to.
		if first, err := st.FirstIndex(); err == nil && first == 1 {
			b := cfg.Log.NewBatch()
			b.SetConfState(spec.ID, &pb.ConfState{})
			if err := b.Commit(true); err != nil {
				return fmt.Errorf("raftstore: group %d: reset conf state: %w", spec.ID, err)
			}
			cs = &pb.ConfState{}
		}
	}
	if applied > last || hs.GetCommit() < applied {
		// The state machine is ahead of the log: a snapshot was installed
		// and synced but the crash came before the log recorded it (or
		// the commit index did not reach disk). Make the log agree.
		b := cfg.Log.NewBatch()
		if applied > last {
			v, ok, err := cfg.Store.Mark(confMarkKey(spec.ID))
			if err != nil || !ok {
				return fmt.Errorf("raftstore: group %d: state machine at %d beyond log %d without a conf state (%v)", spec.ID, applied, last, err)
			}
			csm := new(pb.ConfState)
			if err := proto.Unmarshal(v, csm); err != nil {
				return fmt.Errorf("raftstore: group %d: conf mark: %w", spec.ID, err)
			}
			b.ApplySnapshot(spec.ID, &pb.SnapshotMetadata{Index: &applied, Term: &appliedTerm, ConfState: csm})
			cs = csm
		}
		nhs := proto.Clone(hs).(*pb.HardState)
		nhs.Commit = &applied
		if nhs.GetTerm() < appliedTerm {
			nhs.Term = &appliedTerm
		}
		b.SetHardState(spec.ID, nhs)
		if err := b.Commit(true); err != nil {
			return fmt.Errorf("raftstore: group %d: reconcile log: %w", spec.ID, err)
		}
	}
	var tomb *tombstone
	if v, ok, err := cfg.Store.Mark(tombMarkKey(spec.ID)); err != nil {
		return fmt.Errorf("raftstore: group %d: tombstone: %w", spec.ID, err)
	} else if ok {
		t, err := parseTombstone(v)
		if err != nil {
			return err
		}
		tomb = &t
		if last == 0 && hs.GetTerm() < t.term {
			// Recreated in place of a deleted replica: start at its term.
			b := cfg.Log.NewBatch()
			term := t.term
			b.SetHardState(spec.ID, &pb.HardState{Term: &term})
			if err := b.Commit(true); err != nil {
				return fmt.Errorf("raftstore: group %d: tombstone term: %w", spec.ID, err)
			}
			hs = &pb.HardState{Term: &term}
		}
	}
	rc := &raft.Config{
		ID:                        cfg.NodeID,
		ElectionTick:              cfg.ElectionTicks,
		HeartbeatTick:             cfg.HeartbeatTicks,
		Storage:                   st,
		Applied:                   applied,
		MaxSizePerMsg:             1 << 20,
		MaxCommittedSizePerReady:  32 << 20,
		MaxUncommittedEntriesSize: 64 << 20,
		MaxInflightMsgs:           cfg.MaxInflight,
		CheckQuorum:               true,
		PreVote:                   true,
		// Not ReadOnlyLeaseBased: porcupine caught it serving stale reads
		// after leader transfers and partitions (see docs/cluster.md).
		ReadOnlyOption:    raft.ReadOnlySafe,
		StepDownOnRemoval: true,
		Logger:            raftLogger{cfg.Logger.With("group", spec.ID)},
	}
	rn, err := raft.NewRawNode(rc)
	if err != nil {
		return fmt.Errorf("raftstore: group %d: %w", spec.ID, err)
	}
	last, _ = st.LastIndex()
	if last == 0 && raft.IsEmptyHardState(hs) && slices.Contains(spec.Peers, cfg.NodeID) {
		peers := make([]raft.Peer, len(spec.Peers))
		for i, id := range spec.Peers {
			peers[i] = raft.Peer{ID: id}
		}
		if err := rn.Bootstrap(peers); err != nil {
			return fmt.Errorf("raftstore: group %d: bootstrap: %w", spec.ID, err)
		}
	}
	l.created++
	g := &group{
		tomb:    tomb,
		created: l.created,
		spec:    spec, rn: rn, st: st,
		applied: applied, appliedTerm: appliedTerm, confState: cs,
		hsTerm: hs.GetTerm(), hsVote: hs.GetVote(),
		proposals: make(map[uint64]*proposal),
		issued:    make(map[string]*readBatch),
	}
	if cfg.LeaseReads && last > 0 {
		g.noVoteUntil = time.Now().Add(time.Duration(cfg.ElectionTicks) * cfg.TickInterval)
	}
	if last == 0 && spec.Campaign && slices.Contains(spec.Peers, cfg.NodeID) {
		g.campaignAt = uint64(len(spec.Peers))
	}
	l.groups[spec.ID] = g
	l.publish(g)
	return nil
}

func (l *loop) readApplied(id uint64) (uint64, uint64, error) {
	v, ok, err := l.n.cfg.Store.Mark(appliedMarkKey(id))
	if err != nil || !ok {
		return 0, 0, err
	}
	return parseAppliedMark(v)
}

func (l *loop) removeGroup(id uint64) error {
	g := l.groups[id]
	if g == nil {
		return nil
	}
	l.dropGroupWaiters(g)
	delete(l.groups, id)
	l.n.statusMu.Lock()
	delete(l.n.status, id)
	l.n.statusMu.Unlock()
	// The replica's rows and marks go first, synced, with its tombstone: a
	// replica created here again later (a shard moved back) must start
	// empty but bound by the old one's term and log, and a log deleted
	// before them would leave a state machine ahead of its log.
	st := g.rn.Status()
	tomb := tombstone{term: max(g.hsTerm, st.HardState.GetTerm())}
	if last, err := g.st.LastIndex(); err == nil {
		if term, err := g.st.Term(last); err == nil {
			tomb.lastIndex, tomb.lastTerm = last, term
		}
	}
	if g.tomb != nil && tomb.admits(g.tomb.lastTerm, g.tomb.lastIndex) {
		// An earlier replica's log went further: keep the stricter bound.
		tomb.lastIndex, tomb.lastTerm = g.tomb.lastIndex, g.tomb.lastTerm
	}
	if g.tomb != nil {
		tomb.term = max(tomb.term, g.tomb.term)
	}
	purge := kv.Batch{
		Ops:    []kv.Op{{Kind: kv.OpFlush, Namespace: g.spec.Namespace}},
		Shard:  g.spec.Shard,
		Shards: g.spec.Shards,
		Marks:  []kv.Mark{{Key: appliedMarkKey(id)}, {Key: confMarkKey(id)}, tomb.mark(id)},
	}
	if _, err := l.n.cfg.Store.ApplyAll(l.n.ctx, []kv.Batch{purge}); err != nil {
		return fmt.Errorf("raftstore: group %d: delete the replica's rows: %w", id, err)
	}
	if err := l.n.cfg.Store.Sync(l.n.ctx); err != nil {
		return fmt.Errorf("raftstore: group %d: %w", id, err)
	}
	return l.n.cfg.Log.DeleteGroup(id)
}

func (l *loop) tick() {
	l.ticks++
	for _, g := range l.groups {
		g.rn.Tick()
		l.retryProposals(g)
		l.reissueReads(g)
		l.publish(g)
	}
}

// retryProposals re-offers proposals raft dropped for want of a leader,
// and answers those whose caller has given up.
func (l *loop) retryProposals(g *group) {
	for id, p := range g.proposals {
		if p.ctx.Err() != nil {
			delete(g.proposals, id) // the caller answered TIMEOUT itself
		}
	}
	keep := g.unproposed[:0]
	for _, p := range g.unproposed {
		if p.ctx.Err() != nil {
			continue // never entered the log; the caller answers UNAVAILABLE
		}
		if l.offer(g, p) {
			continue
		}
		keep = append(keep, p)
	}
	clear(g.unproposed[len(keep):])
	g.unproposed = keep
}

// offer hands p to raft; false means raft dropped it (no leader yet).
func (l *loop) offer(g *group, p *proposal) bool {
	if !p.state.CompareAndSwap(propPending, propOffered) {
		return true // the caller gave up and answered UNAVAILABLE
	}
	var err error
	if p.cc != nil {
		err = g.rn.ProposeConfChange(p.cc)
	} else {
		err = g.rn.Propose(p.data)
	}
	if errors.Is(err, raft.ErrProposalDropped) {
		// Not in any log. Going back to pending is safe: a caller that
		// looked meanwhile answered "unknown", which is always true.
		p.state.Store(propPending)
		return false
	}
	if err != nil {
		p.done <- proposalResult{err: kv.Errorf(kv.CodeInternal, "raftstore: propose: %w", err)}
		return true
	}
	g.proposals[p.id] = p
	l.n.metrics.proposals.Add(1)
	return true
}

func (l *loop) propose(id uint64, p *proposal) {
	g := l.groups[id]
	if g == nil {
		p.done <- proposalResult{err: kv.Errorf(kv.CodeUnavailable, "raftstore: group %d is not on node %d", id, l.n.cfg.NodeID)}
		return
	}
	if !l.offer(g, p) {
		g.unproposed = append(g.unproposed, p)
	}
}

func (l *loop) read(id uint64, w *readWaiter) {
	g := l.groups[id]
	if g == nil {
		w.done <- kv.Errorf(kv.CodeUnavailable, "raftstore: group %d is not on node %d", id, l.n.cfg.NodeID)
		return
	}
	if l.leaseRead(g, w) {
		return
	}
	if len(g.newReads) == 0 {
		l.readGroups = append(l.readGroups, g)
	}
	g.newReads = append(g.newReads, w)
}

// leaseRead serves w from the leader's lease if it holds one: at the
// commit index, which is final once the leader has committed in its own
// term.
func (l *loop) leaseRead(g *group, w *readWaiter) bool {
	if !l.n.cfg.LeaseReads {
		return false
	}
	st := g.rn.BasicStatus()
	if st.RaftState != raft.StateLeader || st.LeadTransferee != 0 {
		l.noteTransfer(g, st)
		return false
	}
	if st.HardState.GetTerm() != g.leaseTerm || !time.Now().Before(g.leaseUntil) {
		return false
	}
	commit := st.HardState.GetCommit()
	if t, err := g.st.Term(commit); err != nil || t != g.leaseTerm {
		return false // not committed in this term yet: the commit index may be stale
	}
	l.n.metrics.leaseReads.Add(1)
	if commit <= g.applied {
		w.done <- nil
		return true
	}
	g.applyWait = append(g.applyWait, &readBatch{waiters: []*readWaiter{w}, index: commit})
	return true
}

// noteTransfer drops the lease while a leadership transfer is under way.
func (l *loop) noteTransfer(g *group, st raft.BasicStatus) {
	if st.LeadTransferee != 0 {
		g.transferAt = time.Now()
		g.leaseUntil = time.Time{}
	}
}

// renewLease extends the lease after a ReadIndex round that started at
// start was confirmed by a quorum while this node led.
func (l *loop) renewLease(g *group, start time.Time) {
	if !l.n.cfg.LeaseReads || start.IsZero() {
		return
	}
	st := g.rn.BasicStatus()
	l.noteTransfer(g, st)
	if st.RaftState != raft.StateLeader || st.LeadTransferee != 0 || !start.After(g.transferAt) {
		return
	}
	until := start.Add(time.Duration(l.n.cfg.ElectionTicks)*l.n.cfg.TickInterval - l.n.cfg.MaxClockDrift)
	if term := st.HardState.GetTerm(); term != g.leaseTerm || until.After(g.leaseUntil) {
		g.leaseTerm, g.leaseUntil = term, until
	}
}

// issueReads starts one ReadIndex per group for all the reads that
// arrived this round: one quorum round trip serves them all.
func (l *loop) issueReads() {
	for _, g := range l.readGroups {
		if len(g.newReads) == 0 {
			continue
		}
		l.issue(g, &readBatch{waiters: g.newReads})
		g.newReads = nil
	}
	clear(l.readGroups)
	l.readGroups = l.readGroups[:0]
}

func (l *loop) issue(g *group, b *readBatch) {
	l.readSeq++
	rctx := binary.BigEndian.AppendUint64(nil, l.readSeq)
	b.issued = l.ticks
	b.start = time.Now()
	g.issued[string(rctx)] = b
	g.rn.ReadIndex(rctx)
	l.n.metrics.readIndex.Add(1)
}

// reissueReads repeats ReadIndex requests that got no answer within an
// election timeout: raft drops them silently when there is no leader or a
// message was lost.
func (l *loop) reissueReads(g *group) {
	for k, b := range g.issued {
		if l.ticks-b.issued < uint64(l.n.cfg.ElectionTicks) {
			continue
		}
		delete(g.issued, k)
		live := b.waiters[:0]
		for _, w := range b.waiters {
			if w.ctx.Err() == nil {
				live = append(live, w)
			}
		}
		if len(live) > 0 {
			b.waiters = live
			l.issue(g, b)
		}
	}
}

func (l *loop) readState(g *group, rs raft.ReadState) {
	b := g.issued[string(rs.RequestCtx)]
	if b == nil {
		return
	}
	delete(g.issued, string(rs.RequestCtx))
	l.renewLease(g, b.start)
	if rs.Index <= g.applied {
		finishReads(b, nil)
		return
	}
	b.index = rs.Index
	g.applyWait = append(g.applyWait, b)
}

func (l *loop) releaseReads(g *group) {
	keep := g.applyWait[:0]
	for _, b := range g.applyWait {
		if b.index <= g.applied {
			finishReads(b, nil)
			continue
		}
		keep = append(keep, b)
	}
	clear(g.applyWait[len(keep):])
	g.applyWait = keep
}

// step feeds a batch of raft messages from one node to their groups.
func (l *loop) step(in inbound) {
	rest := in.payload
	for len(rest) > 0 {
		gid, m, r, err := nextMessage(rest)
		if err != nil {
			l.n.metrics.badMessages.Add(1)
			l.n.cfg.Logger.Warn("raftstore: dropping bad message batch", "from", in.from, "err", err)
			return
		}
		rest = r
		g := l.groups[gid]
		if g == nil || m.GetFrom() != in.from {
			// Not (or no longer) ours, or forged: the sender's node must be
			// the raft sender, so a node cannot speak for another.
			l.n.metrics.droppedMessages.Add(1)
			continue
		}
		if t := m.GetType(); (t == pb.MsgVote || t == pb.MsgPreVote) && !g.noVoteUntil.IsZero() && time.Now().Before(g.noVoteUntil) {
			continue // as if lost: see group.noVoteUntil
		}
		if t := m.GetType(); (t == pb.MsgVote || t == pb.MsgPreVote) && g.tomb != nil && !g.tomb.admits(m.GetLogTerm(), m.GetIndex()) {
			continue // as if lost: see group.tomb
		}
		if m.GetType() == pb.MsgHeartbeat {
			// A replica deleted here and recreated empty (its shard moved
			// away and back) may hear from a leader that still remembers
			// its old progress and claims a commit index past the new
			// log; raft would take that for lost durable state and panic.
			// The log may count as committed only what it holds: those
			// entries came from a leader of this replica's current term,
			// and a leader never commits past what it has committed.
			if last, err := g.st.LastIndex(); err == nil && m.GetCommit() > last {
				m.Commit = &last
			}
		}
		_ = g.rn.Step(m) // local-only types and unknown peers are refused by raft
	}
}

type pendingReady struct {
	g  *group
	rd raft.Ready
	// early are the leader's appends and heartbeats, sent before the
	// round's log write; late is the rest, sent after it.
	early, late []*pb.Message
}

// splitMessages picks the messages that may leave before this round's
// entries are durable: a leader's MsgApp and MsgHeartbeat, when the round
// changes neither term nor vote. The leader counts its own copy of an
// entry only after Advance (once it is on disk), so a quorum still means
// a majority of fsynced logs, and the leader's fsync overlaps its
// followers' (Raft thesis 10.2.1). Everything else (votes, append
// responses) waits for the write.
func (p *pendingReady) splitMessages() {
	g, rd := p.g, &p.rd
	hs := rd.HardState
	stable := hs == nil || (hs.GetTerm() == g.hsTerm && hs.GetVote() == g.hsVote)
	leader := g.rn.BasicStatus().RaftState == raft.StateLeader
	for _, m := range rd.Messages {
		t := m.GetType()
		if stable && leader && (t == pb.MsgApp || t == pb.MsgHeartbeat) {
			p.early = append(p.early, m)
		} else {
			p.late = append(p.late, m)
		}
	}
	if hs != nil {
		g.hsTerm, g.hsVote = hs.GetTerm(), hs.GetVote()
	}
}

// handleReady persists, sends and applies the Ready of every group that
// has one: one log batch (one fsync) and one message per destination.
func (l *loop) handleReady() error {
	var readies []pendingReady
	b := l.n.cfg.Log.NewBatch()
	sync := false
	for _, g := range l.groups {
		if !g.rn.HasReady() {
			continue
		}
		rd := g.rn.Ready()
		if !raft.IsEmptySnap(rd.Snapshot) {
			if err := l.installSnapshot(g, rd.Snapshot); err != nil {
				return err
			}
			b.ApplySnapshot(g.spec.ID, rd.Snapshot.GetMetadata())
		}
		if len(rd.Entries) > 0 {
			b.Append(g.spec.ID, rd.Entries)
		}
		if !raft.IsEmptyHardState(rd.HardState) {
			b.SetHardState(g.spec.ID, rd.HardState)
		}
		sync = sync || rd.MustSync
		readies = append(readies, pendingReady{g: g, rd: rd})
	}
	if len(readies) == 0 {
		return nil
	}
	for i := range readies {
		readies[i].splitMessages()
	}
	l.send(readies, true)
	if !b.Empty() {
		start := time.Now()
		if err := b.Commit(sync); err != nil {
			return fmt.Errorf("persist raft log: %w", err)
		}
		if sync {
			l.n.metrics.persist.Observe(since(start))
			l.n.metrics.persistSyncs.Add(1)
		}
	}
	l.send(readies, false)
	if err := l.apply(readies); err != nil {
		return err
	}
	for _, p := range readies {
		for _, rs := range p.rd.ReadStates {
			l.readState(p.g, rs)
		}
		if p.rd.SoftState != nil && p.rd.SoftState.Lead != p.g.lead {
			p.g.lead = p.rd.SoftState.Lead
			l.n.metrics.leaderChanges.Add(1)
		}
		p.g.rn.Advance(p.rd)
		// Campaign only once raft itself counts the bootstrap's conf
		// changes as applied, i.e. after Advance.
		if g := p.g; g.campaignAt != 0 && g.applied >= g.campaignAt {
			g.campaignAt = 0
			if g.rn.BasicStatus().Lead == 0 {
				_ = g.rn.Campaign() // best effort: elections happen anyway
			}
		}
		if l.n.cfg.LeaseReads {
			l.noteTransfer(p.g, p.g.rn.BasicStatus())
		}
		if p.rd.SoftState != nil || p.g.confChanged {
			p.g.confChanged = false
			l.publish(p.g)
		}
	}
	return l.maybeCompact(readies)
}

// send coalesces the early or the late messages of all groups per
// destination node.
func (l *loop) send(readies []pendingReady, early bool) {
	type snapSent struct {
		g  *group
		to uint64
	}
	var (
		out   = make(map[uint64][]byte)
		users = make(map[uint64][]*group)
		snaps []snapSent
	)
	for _, p := range readies {
		msgs := p.late
		if early {
			msgs = p.early
		}
		for _, m := range msgs {
			to := m.GetTo()
			if m.GetType() == pb.MsgSnap {
				if err := l.fillSnapshot(p.g, m); err != nil {
					l.n.cfg.Logger.Warn("raftstore: cannot build snapshot", "group", p.g.spec.ID, "to", to, "err", err)
					p.g.rn.ReportSnapshot(to, raft.SnapshotFailure)
					continue
				}
				snaps = append(snaps, snapSent{p.g, to})
			}
			buf, err := appendMessage(out[to], p.g.spec.ID, m)
			if err != nil {
				l.n.cfg.Logger.Error("raftstore: encode message", "err", err)
				continue
			}
			out[to] = buf
			if u := users[to]; len(u) == 0 || u[len(u)-1] != p.g {
				users[to] = append(u, p.g)
			}
		}
	}
	failed := make(map[uint64]bool)
	for to, payload := range out {
		if err := l.n.cfg.Transport.Send(transport.NodeID(to), transport.KindRaft, payload); err != nil {
			failed[to] = true
			for _, g := range users[to] {
				g.rn.ReportUnreachable(to)
			}
			continue
		}
		l.n.metrics.messagesSent.Add(1)
	}
	// There is no delivery receipt: report a snapshot as sent, and let the
	// follower's next response (or its absence) drive raft from there.
	for _, s := range snaps {
		status := raft.SnapshotFinish
		if failed[s.to] {
			status = raft.SnapshotFailure
		}
		s.g.rn.ReportSnapshot(s.to, status)
		l.n.metrics.snapshotsSent.Add(1)
	}
}

// applyRef ties a state machine batch back to what it came from.
type applyRef struct {
	g *group
	p *proposal
}

// apply applies the committed entries of all groups to the state machine
// in one call, then answers the proposals made here.
func (l *loop) apply(readies []pendingReady) error {
	var (
		batches []kv.Batch
		refs    []applyRef
	)
	confBatch := l.n.cfg.Log.NewBatch()
	for _, p := range readies {
		g := p.g
		for _, e := range p.rd.CommittedEntries {
			idx, term := e.GetIndex(), e.GetTerm()
			var b kv.Batch
			var ref = applyRef{g: g}
			switch e.GetType() {
			case pb.EntryNormal:
				if len(e.Data) == 0 {
					break // a new leader's no-op
				}
				from, dec, err := decodeEntry(e.Data)
				if from.node == l.n.cfg.NodeID && from.incarnation == l.n.incarnation {
					ref.p = g.proposals[from.id]
					delete(g.proposals, from.id)
				}
				if err != nil {
					// Every replica fails the same way on the same bytes, so
					// skipping keeps them identical.
					l.n.cfg.Logger.Error("raftstore: undecodable entry", "group", g.spec.ID, "index", idx, "err", err)
					if ref.p != nil {
						ref.p.done <- proposalResult{err: kv.Errorf(kv.CodeInternal, "raftstore: %w", err)}
						ref.p = nil
					}
					break
				}
				b = dec
				l.n.clock.Update(b.Timestamp)
			case pb.EntryConfChange, pb.EntryConfChangeV2:
				cs, ctx, err := l.applyConfChange(g, e)
				if err != nil {
					return err
				}
				confBatch.SetConfState(g.spec.ID, cs)
				cm, err := confMark(g.spec.ID, cs)
				if err != nil {
					return err
				}
				b.Marks = append(b.Marks, cm)
				if from, ok := decodeProposer(ctx); ok && from.node == l.n.cfg.NodeID && from.incarnation == l.n.incarnation {
					ref.p = g.proposals[from.id]
					delete(g.proposals, from.id)
				}
			}
			b.Revision = idx
			b.Shard, b.Shards = g.spec.Shard, g.spec.Shards
			b.Marks = append(b.Marks, appliedMark(g.spec.ID, idx, term))
			// The entry is in the synced Raft log and replayed from
			// there after a crash: no second fsync for its rows.
			b.Logged = true
			batches = append(batches, b)
			refs = append(refs, ref)
			g.applied, g.appliedTerm = idx, term
		}
	}
	if !confBatch.Empty() {
		// Synced before the applied marks can reach disk: a restart must
		// never resume after a conf change with the old membership.
		if err := confBatch.Commit(true); err != nil {
			return fmt.Errorf("persist conf state: %w", err)
		}
	}
	if len(batches) == 0 {
		return nil
	}
	results, err := l.n.cfg.Store.ApplyAll(l.n.ctx, batches)
	if err != nil {
		return fmt.Errorf("apply %d entries: %w", len(batches), err)
	}
	l.n.metrics.applied.Add(uint64(len(batches)))
	for _, p := range readies {
		if p.g.confChanged {
			// A membership change's proposer must see it in Status once
			// it returns (it is published again after Advance).
			l.publish(p.g)
		}
	}
	for i, ref := range refs {
		if ref.p != nil {
			ref.p.done <- proposalResult{results: results[i]}
		}
	}
	for _, p := range readies {
		l.releaseReads(p.g)
	}
	return nil
}

// applyConfChange applies a membership change and returns the new conf
// state and the change's context (who proposed it).
func (l *loop) applyConfChange(g *group, e *pb.Entry) (*pb.ConfState, []byte, error) {
	var cc pb.ConfChangeI
	var ctx []byte
	if e.GetType() == pb.EntryConfChange {
		var c pb.ConfChange
		if err := proto.Unmarshal(e.Data, &c); err != nil {
			return nil, nil, fmt.Errorf("group %d: conf change at %d: %w", g.spec.ID, e.GetIndex(), err)
		}
		cc, ctx = &c, c.Context
	} else {
		var c pb.ConfChangeV2
		if err := proto.Unmarshal(e.Data, &c); err != nil {
			return nil, nil, fmt.Errorf("group %d: conf change at %d: %w", g.spec.ID, e.GetIndex(), err)
		}
		cc, ctx = &c, c.Context
	}
	cs := g.rn.ApplyConfChange(cc)
	g.confState = cs
	g.confChanged = true
	return cs, ctx, nil
}

// fillSnapshot replaces the metadata-only snapshot raft asked to send
// with the shard's rows as of the last applied entry. That is at or past
// the compaction point raft chose, so the follower can continue from the
// log after it.
func (l *loop) fillSnapshot(g *group, m *pb.Message) error {
	view, err := l.n.cfg.Store.View()
	if err != nil {
		return err
	}
	defer view.Close()
	v, ok, err := view.Mark(appliedMarkKey(g.spec.ID))
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("nothing applied yet")
	}
	idx, term, err := parseAppliedMark(v)
	if err != nil {
		return err
	}
	data := []byte{snapshotFormat}
	err = view.ShardRows(l.n.ctx, g.spec.Namespace, g.spec.Shard, g.spec.Shards, func(key []byte, val kv.Value) error {
		data = appendRow(data, key, val)
		return nil
	})
	if err != nil {
		return err
	}
	m.Snapshot = &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{
		Index: &idx, Term: &term, ConfState: proto.Clone(g.confState).(*pb.ConfState),
	}}
	return nil
}

// installSnapshot replaces the shard's rows with a snapshot's, synced,
// before the log forgets the entries it replaces.
func (l *loop) installSnapshot(g *group, s *pb.Snapshot) error {
	meta := s.GetMetadata()
	b := kv.Batch{
		Ops:    []kv.Op{{Kind: kv.OpFlush, Namespace: g.spec.Namespace}},
		Shard:  g.spec.Shard,
		Shards: g.spec.Shards,
	}
	err := decodeRows(s.Data, func(key []byte, v kv.Value) {
		b.Ops = append(b.Ops, kv.Op{Kind: kv.OpRestore, Namespace: g.spec.Namespace, Key: key, Restored: v})
	})
	if err != nil {
		return fmt.Errorf("group %d: snapshot at %d: %w", g.spec.ID, meta.GetIndex(), err)
	}
	cm, err := confMark(g.spec.ID, meta.GetConfState())
	if err != nil {
		return err
	}
	b.Marks = []kv.Mark{appliedMark(g.spec.ID, meta.GetIndex(), meta.GetTerm()), cm}
	if _, err := l.n.cfg.Store.ApplyAll(l.n.ctx, []kv.Batch{b}); err != nil {
		return fmt.Errorf("group %d: install snapshot: %w", g.spec.ID, err)
	}
	if err := l.n.cfg.Store.Sync(l.n.ctx); err != nil {
		return fmt.Errorf("group %d: sync snapshot: %w", g.spec.ID, err)
	}
	g.applied, g.appliedTerm = meta.GetIndex(), meta.GetTerm()
	g.confState = meta.GetConfState()
	l.n.metrics.snapshotsApplied.Add(1)
	return nil
}

// maybeCompact trims logs that grew past CompactAfter applied entries,
// after syncing the state machine so the trimmed entries are never needed
// again.
func (l *loop) maybeCompact(readies []pendingReady) error {
	keep := l.n.cfg.CompactAfter / 4
	var due []*group
	for _, p := range readies {
		first, err := p.g.st.FirstIndex()
		if err != nil {
			return err
		}
		if p.g.applied > first+l.n.cfg.CompactAfter {
			due = append(due, p.g)
		}
	}
	if len(due) == 0 {
		return nil
	}
	if err := l.n.cfg.Store.Sync(l.n.ctx); err != nil {
		return fmt.Errorf("sync before compaction: %w", err)
	}
	for _, g := range due {
		if err := g.st.Compact(g.applied - keep); err != nil {
			return fmt.Errorf("group %d: compact to %d: %w", g.spec.ID, g.applied-keep, err)
		}
		l.n.metrics.compactions.Add(1)
	}
	return nil
}

// publish refreshes the group's status for readers outside the loop.
func (l *loop) publish(g *group) {
	s := g.rn.Status()
	last, _ := g.st.LastIndex()
	st := GroupStatus{
		ID: g.spec.ID, Namespace: g.spec.Namespace, Shard: g.spec.Shard,
		Leader: s.Lead, Term: s.HardState.GetTerm(), State: s.RaftState.String(),
		Commit: s.HardState.GetCommit(), Applied: g.applied, LastIndex: last,
		Voters:   confStateVoters(g.confState),
		Learners: append(append([]uint64(nil), g.confState.GetLearners()...), g.confState.GetLearnersNext()...),
		Joint:    len(g.confState.GetVotersOutgoing()) > 0,
		created:  g.created,
	}
	if s.RaftState == raft.StateLeader {
		st.Match = make(map[uint64]uint64, len(s.Progress))
		st.Active = make(map[uint64]bool, len(s.Progress))
		for id, pr := range s.Progress {
			st.Match[id] = pr.Match
			st.Active[id] = pr.RecentActive
		}
	}
	l.n.statusMu.Lock()
	l.n.status[g.spec.ID] = st
	l.n.statusMu.Unlock()
}
