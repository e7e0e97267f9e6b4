package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/primary"
)

// primaryPrefix keys the records of primary-replicated shards, by group.
const primaryPrefix = "primary/"

// PrimaryRecord is the control plane's committed word on one shard of a
// replication=primary namespace: who is primary in which epoch, and the
// epoch's in-sync set. It changes only by conditional writes of the meta
// group's leader, so each promotion and in-sync change happens once.
type PrimaryRecord struct {
	Group   uint64             `json:"group"`
	Epoch   failover.Epoch     `json:"epoch"`
	Primary failover.NodeID    `json:"primary"`
	ISR     failover.ISRRecord `json:"isr"`
	// Failovers counts promotions after the first; LastFailover is the
	// latest one's wall time (Unix ms) and Reason why it happened.
	Failovers    int    `json:"failovers"`
	LastFailover int64  `json:"last_failover,omitempty"`
	Reason       string `json:"reason,omitempty"`
	// MayLoseAcked: the latest promotion may have lost acknowledged
	// writes (async, semi, or sync degraded to an out-of-sync replica);
	// the old primary moves them aside and counts them when it returns.
	MayLoseAcked bool `json:"may_lose_acked,omitempty"`
}

// PrimariesConfig configures the failover authority.
type PrimariesConfig struct {
	Self uint64
	// Timeout is cluster.failover_timeout: the failover timeout of the
	// namespaces whose policy sets none (kv.Policy.FailoverTimeoutMs).
	Timeout time.Duration
	// Failover is those namespaces' bounds; zero derives them from
	// Timeout (failover.ConfigFor). A namespace with its own timeout gets
	// failover.ConfigFor of it. The engines must use the same per shard
	// (FailoverFor).
	Failover failover.Config
	// Leader returns the meta group's leader and term as this node sees
	// them (0 when none is known).
	Leader func() (leader, term uint64)
	// Clock is a monotonic clock (nanoseconds) for leases and the
	// failure detector. Nil means time since NewPrimaries.
	Clock  func() int64
	Logger *slog.Logger
}

// Primaries is the control plane's failover authority for primary
// namespaces: the failure detector (replicas report to it), the lease
// grants (primaries renew with it) and the promotions and in-sync set
// changes (committed as records). Every node has one; only the meta
// group's leader answers, the others refuse with NOT_LEADER naming it.
//
// Only the records are replicated. The leases and the failure detector
// live in the leader's memory, on its clock, so a new leader starts
// them afresh: it treats every primary's lease as granted when it took
// office (failover.Renew's rule for a new clock), which is safe because
// every grant the old leader made was confirmed by a read barrier, hence
// before the new leader was elected. A grant is answered only after such
// a barrier and a read of the shard's record: a record changed by a
// deposed leader's late promotion is caught there, and the new epoch's
// primary is then not granted a lease until every lease this leader gave
// the old one has run out.
type Primaries struct {
	svc *Service
	cfg PrimariesConfig

	mu struct {
		sync.Mutex
		office *office // nil: not in office
	}
}

// office is the authority's state for one leader term.
type office struct {
	term   uint64
	since  int64 // when this node took office, on Clock
	groups map[uint64]*primaryGroup
}

// primaryGroup is the leader's memory of one shard.
type primaryGroup struct {
	// fc is the shard's failover bounds, from its namespace's policy,
	// which never changes.
	fc      failover.Config
	mu      sync.Mutex
	rec     PrimaryRecord
	version uint64 // of rec's record; 0: no record yet
	lease   failover.Lease
	heard   map[failover.NodeID]heardReport
	// grantEnd is the latest ExpiredAt of any lease granted here;
	// blockedUntil holds off grants to a primary promoted behind this
	// leader's back until those have run out.
	grantEnd, blockedUntil int64
	// stale is set when a write of the record failed: it may still have
	// committed (a timeout), so the cached record and version are not to
	// be trusted until reread.
	stale bool
	// failures counts failed writes of the record, so that a reread can
	// tell whether another failed while it was reading.
	failures uint64
}

type heardReport struct {
	st primary.ReplicaStatus
	at int64
}

// NewPrimaries returns the authority of the service's cluster.
func NewPrimaries(svc *Service, cfg PrimariesConfig) *Primaries {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		start := time.Now()
		cfg.Clock = func() int64 { return int64(time.Since(start)) }
	}
	if cfg.Failover == (failover.Config{}) {
		cfg.Failover = failover.ConfigFor(cfg.Timeout)
	}
	return &Primaries{svc: svc, cfg: cfg}
}

// FailoverFor returns the failover timeout of a namespace with policy pol
// and the bounds its shards are held to, here and in the engines: the
// policy's own timeout, else the cluster's.
func (p *Primaries) FailoverFor(pol kv.Policy) (time.Duration, failover.Config) {
	if pol.FailoverTimeoutMs > 0 {
		d := time.Duration(pol.FailoverTimeoutMs) * time.Millisecond
		return d, failover.ConfigFor(d)
	}
	return p.cfg.Timeout, p.cfg.Failover
}

// inOffice returns this node's state as the authority, starting it
// afresh when the node has become leader in a new term. It fails with
// NOT_LEADER when the node is not the meta group's leader.
func (p *Primaries) inOffice(ctx context.Context) (*office, error) {
	leader, term := p.cfg.Leader()
	if leader != p.cfg.Self {
		p.mu.Lock()
		p.mu.office = nil
		p.mu.Unlock()
		if leader == 0 {
			return nil, kv.Errorf(kv.CodeUnavailable, "failover authority: the control plane has no leader")
		}
		return nil, kv.Errorf(kv.CodeNotLeader, "failover authority: node %d is not the control plane's leader; node %d is", p.cfg.Self, leader)
	}
	p.mu.Lock()
	o := p.mu.office
	p.mu.Unlock()
	if o != nil && o.term == term {
		return o, nil
	}
	// A new term: read everything committed before acting on it.
	if err := p.svc.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("failover authority: taking office: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.office == nil || p.mu.office.term != term {
		p.mu.office = &office{term: term, since: p.cfg.Clock(), groups: make(map[uint64]*primaryGroup)}
		p.cfg.Logger.Info("failover authority: in office", "term", term)
	}
	return p.mu.office, nil
}

// group returns the leader's state of a primary shard and its layout.
func (p *Primaries) group(o *office, id uint64) (*primaryGroup, kv.NamespaceInfo, kv.ShardInfo, error) {
	v := p.svc.View()
	ns, sh, ok := v.primaryShard(id)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !ok {
		if p.mu.office == o {
			delete(o.groups, id) // its namespace was dropped: forget it
		}
		return nil, ns, sh, kv.Errorf(kv.CodeNotFound, "failover authority: group %d is not a shard of a replication=primary namespace", id)
	}
	if p.mu.office != o {
		return nil, ns, sh, kv.Errorf(kv.CodeNotLeader, "failover authority: leadership changed")
	}
	g := o.groups[id]
	if g == nil {
		_, fc := p.FailoverFor(ns.Policy)
		g = &primaryGroup{fc: fc, heard: make(map[failover.NodeID]heardReport)}
		g.rec, g.version = v.Primaries[id], v.primaryVersions[id]
		g.rec.Group = id
		if g.rec.Primary != 0 {
			// Granted by a former leader, on its clock: count it as
			// granted when this leader took office.
			g.lease = failover.Lease{Holder: g.rec.Primary, Epoch: g.rec.Epoch, Granted: o.since, Duration: fc.LeaseDuration}
		}
		o.groups[id] = g
	}
	return g, ns, sh, nil
}

// Report records a replica's log position (the failure detector's
// heartbeat), decides a failover when the primary's lease has run out,
// and returns the shard's assignment.
func (p *Primaries) Report(ctx context.Context, group uint64, st primary.ReplicaStatus) (primary.Assignment, error) {
	o, err := p.inOffice(ctx)
	if err != nil {
		return primary.Assignment{}, err
	}
	g, ns, sh, err := p.group(o, group)
	if err != nil {
		return primary.Assignment{}, err
	}
	if !slices.Contains(sh.Replicas, uint64(st.Node)) {
		return primary.Assignment{}, kv.Errorf(kv.CodeInvalid, "failover authority: node %d is not a replica of group %d (%v)", st.Node, group, sh.Replicas)
	}
	if err := p.resync(ctx, g, group); err != nil {
		return primary.Assignment{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := p.cfg.Clock()
	g.heard[st.Node] = heardReport{st: st, at: now}
	if d, ok := p.decide(g, ns, sh, now, o.since); ok {
		if err := p.promote(ctx, g, d); err != nil {
			p.cfg.Logger.Warn("failover authority: promotion not recorded", "group", group, "node", d.Node, "epoch", d.Epoch, "err", err)
		}
	}
	return primary.Assignment{Epoch: g.rec.Epoch, Primary: g.rec.Primary, ISR: g.rec.ISR}, nil
}

// decide applies failover.Decide, with the first primary chosen by the
// namespace's availability pattern.
func (p *Primaries) decide(g *primaryGroup, ns kv.NamespaceInfo, sh kv.ShardInfo, now, since int64) (failover.Decision, bool) {
	fc := g.fc
	alive := func(id uint64) (heardReport, bool) {
		h, ok := g.heard[failover.NodeID(id)]
		return h, ok && now-h.at < int64(fc.LeaseDuration)
	}
	var reps []failover.Replica
	for _, id := range sh.Replicas {
		h, ok := alive(id)
		reps = append(reps, failover.Replica{ID: failover.NodeID(id), Applied: h.st.Applied, LastEpoch: h.st.LastEpoch,
			InSync: g.rec.ISR.Epoch == g.rec.Epoch && slices.Contains(g.rec.ISR.Members, failover.NodeID(id)), Alive: ok})
	}
	s := failover.Shard{Epoch: g.rec.Epoch, Primary: g.rec.Primary, Lease: g.lease, Policy: AckPolicy(ns.Policy)}
	if s.Epoch == 0 {
		// The first primary: nobody holds anything, so nobody can lose
		// it. Wait briefly for the preferred node (the availability
		// pattern's choice) to report before settling for another.
		s.Policy.Mode = failover.AckAsync
		pref := preferredPrimary(ns, sh)
		if _, ok := alive(pref); ok {
			return failover.Decision{Action: failover.Promote, Node: failover.NodeID(pref), Epoch: 1,
				Lease:  failover.Lease{Holder: failover.NodeID(pref), Epoch: 1, Granted: now, Duration: fc.LeaseDuration},
				ISR:    failover.ISRRecord{Epoch: 1},
				Reason: fmt.Sprintf("first primary (%s)", ns.Policy.Availability)}, true
		}
		if now-since < 2*int64(fc.LeaseDuration) {
			return failover.Decision{}, false
		}
	}
	d := failover.Decide(s, reps, now, fc)
	return d, d.Action == failover.Promote
}

// preferredPrimary is where the availability pattern puts a shard's
// first primary: active-passive on one node for every shard (the highest
// id among the replicas, so the same node wherever it can be, and not
// the lowest, which the control plane's own leadership prefers: losing
// both at once costs an election before the failover can start),
// active-active on the shard's preferred replica, which placement
// spreads over the nodes.
func preferredPrimary(ns kv.NamespaceInfo, sh kv.ShardInfo) uint64 {
	if len(sh.Replicas) == 0 {
		return 0
	}
	if ns.Policy.Availability == kv.AvailabilityActiveActive {
		return sh.Replicas[0]
	}
	return slices.Max(sh.Replicas)
}

// AckPolicy is the ack rule of a replication=primary namespace's policy
// in failover's terms (for the engines and for Decide).
func AckPolicy(p kv.Policy) failover.AckPolicy {
	mode, err := failover.ParseAckMode(p.Ack)
	if err != nil {
		mode = failover.AckSync // validated at creation; the safest reading otherwise
	}
	return failover.AckPolicy{Mode: mode, K: p.AckReplicas, AllowDegrade: p.AllowDegrade}
}

// promote commits a promotion, conditional on the record being the one
// it was decided from. Called with g.mu held.
func (p *Primaries) promote(ctx context.Context, g *primaryGroup, d failover.Decision) error {
	rec := g.rec
	first := rec.Epoch == 0
	rec.Epoch, rec.Primary, rec.ISR = d.Epoch, d.Node, d.ISR
	rec.Reason, rec.MayLoseAcked = d.Reason, d.MayLoseAcked && !first
	if !first {
		rec.Failovers++
		rec.LastFailover = p.svc.cfg.Now().UnixMilli()
	}
	ver, err := p.writeRecord(ctx, rec, g.version)
	if err != nil {
		g.stale = true
		g.failures++
		return err
	}
	g.rec, g.version, g.lease = rec, ver, d.Lease
	g.grantEnd = max(g.grantEnd, d.Lease.ExpiredAt(g.fc.Margin))
	p.cfg.Logger.Info("failover authority: primary promoted", "group", rec.Group, "node", rec.Primary, "epoch", rec.Epoch, "reason", rec.Reason)
	return nil
}

// writeRecord writes rec if its record is still at version base (0:
// absent) and returns the new version.
func (p *Primaries) writeRecord(ctx context.Context, rec PrimaryRecord, base uint64) (uint64, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	op := kv.Op{Kind: kv.OpSet, Key: primaryKey(rec.Group), Value: data, Cond: kv.CondAbsent}
	if base != 0 {
		op.Cond, op.IfVersion = kv.CondVersion, base
	}
	op.Namespace = MetaNamespace
	res, err := p.svc.cfg.Engine.Write(ctx, MetaGroup, kv.Batch{Ops: []kv.Op{op}})
	if err != nil {
		return 0, fmt.Errorf("failover authority: record of group %d: %w", rec.Group, err)
	}
	if len(res) != 1 || res[0].Err != nil {
		return 0, fmt.Errorf("failover authority: record of group %d: %v", rec.Group, res)
	}
	if !res[0].Applied {
		return 0, kv.Errorf(kv.CodeConflict, "failover authority: record of group %d changed concurrently", rec.Group)
	}
	p.svc.kick()
	return res[0].Cur.Version, nil
}

func primaryKey(group uint64) []byte {
	return []byte(primaryPrefix + strconv.FormatUint(group, 10))
}

// readRecord reads a shard's record from the local replica, which must
// have passed a read barrier.
func (p *Primaries) readRecord(ctx context.Context, group uint64) (PrimaryRecord, uint64, error) {
	key := primaryKey(group)
	// The prefix also matches longer group ids; the first entry is the
	// exact key when it exists.
	res, err := p.svc.cfg.Store.Scan(ctx, kv.ScanRequest{Namespace: MetaNamespace, Prefix: key, Limit: 1})
	if err != nil {
		return PrimaryRecord{}, 0, err
	}
	if len(res.Entries) == 0 || string(res.Entries[0].Key) != string(key) {
		return PrimaryRecord{Group: group}, 0, nil
	}
	var rec PrimaryRecord
	if err := json.Unmarshal(res.Entries[0].Value.Data, &rec); err != nil {
		return PrimaryRecord{}, 0, fmt.Errorf("failover authority: record of group %d: %w", group, err)
	}
	return rec, res.Entries[0].Value.Version, nil
}

// Renew grants holder another lease of epoch. It answers only after a
// read barrier of the meta group confirmed this node still leads (so no
// successor took office before the request was sent) and the record
// still names holder in epoch.
func (p *Primaries) Renew(ctx context.Context, group uint64, holder failover.NodeID, epoch failover.Epoch) (failover.Lease, error) {
	o, err := p.inOffice(ctx)
	if err != nil {
		return failover.Lease{}, err
	}
	g, _, _, err := p.group(o, group)
	if err != nil {
		return failover.Lease{}, err
	}
	if err := p.svc.cfg.Engine.ReadBarrier(ctx, MetaGroup); err != nil {
		return failover.Lease{}, fmt.Errorf("failover authority: confirming leadership: %w", err)
	}
	rec, ver, err := p.readRecord(ctx, group)
	if err != nil {
		return failover.Lease{}, err
	}
	if leader, term := p.cfg.Leader(); leader != p.cfg.Self || term != o.term {
		return failover.Lease{}, kv.Errorf(kv.CodeNotLeader, "failover authority: leadership changed during the renewal")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := p.cfg.Clock()
	p.adopt(g, rec, ver, now)
	if now < g.blockedUntil && holder == g.rec.Primary {
		return failover.Lease{}, kv.Errorf(kv.CodeUnavailable, "failover authority: group %d: epoch %d was recorded behind this leader; its lease starts in %v",
			group, g.rec.Epoch, time.Duration(g.blockedUntil-now))
	}
	l, err := failover.Renew(g.lease, holder, epoch, now, g.fc.LeaseDuration)
	if err != nil {
		return l, kv.Errorf(kv.CodeStaleEpoch, "failover authority: group %d: %w", group, err)
	}
	g.lease = l
	g.grantEnd = max(g.grantEnd, l.ExpiredAt(g.fc.Margin))
	return l, nil
}

// adopt takes a record newer than the one this leader holds, written
// behind its back (a deposed leader's proposal committed late). Grants
// to the record's primary wait until this leader's grants have run out.
func (p *Primaries) adopt(g *primaryGroup, rec PrimaryRecord, ver uint64, now int64) {
	// Versions are store revisions: a lower one is a read taken before a
	// write this leader has made since.
	if ver <= g.version {
		return
	}
	if rec.Epoch == g.rec.Epoch && rec.Primary == g.rec.Primary {
		// The same promotion, so the same primary and the leases this
		// leader gave it: only the in-sync set changed (our own write
		// with an unknown outcome, or a deposed leader's).
		g.rec, g.version = rec, ver
		return
	}
	p.cfg.Logger.Warn("failover authority: record reread: it changed behind the leader, or a write of ours had an unknown outcome", "group", rec.Group, "epoch", rec.Epoch, "primary", rec.Primary)
	g.rec, g.version = rec, ver
	g.lease = failover.Lease{Holder: rec.Primary, Epoch: rec.Epoch, Granted: max(now, g.grantEnd), Duration: g.fc.LeaseDuration}
	g.blockedUntil = max(g.blockedUntil, g.grantEnd)
}

// ProposeISR replaces the shard's in-sync record, if from is the
// epoch's primary and the proposal is built on the current record
// (failover.ISRRecord.Apply). It returns the record after the attempt.
func (p *Primaries) ProposeISR(ctx context.Context, group uint64, from failover.NodeID, prop failover.ISRProposal) (failover.ISRRecord, error) {
	o, err := p.inOffice(ctx)
	if err != nil {
		return failover.ISRRecord{}, err
	}
	g, _, _, err := p.group(o, group)
	if err != nil {
		return failover.ISRRecord{}, err
	}
	if err := p.resync(ctx, g, group); err != nil {
		return failover.ISRRecord{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if from != g.rec.Primary || prop.Epoch != g.rec.Epoch {
		return g.rec.ISR, kv.Errorf(kv.CodeStaleEpoch, "failover authority: group %d: in-sync proposal from node %d for epoch %d; node %d is primary in epoch %d",
			group, from, prop.Epoch, g.rec.Primary, g.rec.Epoch)
	}
	next, err := g.rec.ISR.Apply(prop)
	if err != nil {
		return g.rec.ISR, kv.Errorf(kv.CodeConflict, "failover authority: group %d: %w", group, err)
	}
	rec := g.rec
	rec.ISR = next
	ver, err := p.writeRecord(ctx, rec, g.version)
	if err != nil {
		g.stale = true
		g.failures++
		return failover.ISRRecord{}, err
	}
	g.rec, g.version = rec, ver
	return rec.ISR, nil
}

// primaryShard finds the primary namespace's shard replicated by group.
func (v *View) primaryShard(group uint64) (kv.NamespaceInfo, kv.ShardInfo, bool) {
	for _, ns := range v.Namespaces {
		if ns.Policy.Engine() != kv.EnginePrimary {
			continue
		}
		for _, sh := range ns.Shards {
			if sh.Group == group {
				return ns, sh, true
			}
		}
	}
	return kv.NamespaceInfo{}, kv.ShardInfo{}, false
}

// resync rereads a shard's record after one of this leader's writes of
// it failed: the write may have committed anyway (a timeout), and until
// the cache agrees with the record every conditional write would be
// refused as a conflict and no failover could happen.
func (p *Primaries) resync(ctx context.Context, g *primaryGroup, group uint64) error {
	for {
		g.mu.Lock()
		stale, failures := g.stale, g.failures
		g.mu.Unlock()
		if !stale {
			return nil
		}
		if err := p.svc.cfg.Engine.ReadBarrier(ctx, MetaGroup); err != nil {
			return fmt.Errorf("failover authority: rereading the record of group %d: %w", group, err)
		}
		rec, ver, err := p.readRecord(ctx, group)
		if err != nil {
			return err
		}
		g.mu.Lock()
		p.adopt(g, rec, ver, p.cfg.Clock())
		if g.failures == failures {
			// No write failed while we read: the read covers them all.
			g.stale = false
		}
		g.mu.Unlock()
	}
}
