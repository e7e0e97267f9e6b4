package failover

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"
)

// Errors of the in-sync set and of log inputs.
var (
	// ErrUnknownReplica refuses an ack from a node that is not a replica
	// of the shard.
	ErrUnknownReplica = errors.New("unknown replica")
	// ErrInvalidLog refuses LSNs that go backwards or beyond the primary's
	// log, and logs whose entries are out of order.
	ErrInvalidLog = errors.New("invalid log")
	// ErrISRConflict refuses an in-sync set proposal built on a record
	// version that is no longer current.
	ErrISRConflict = errors.New("in-sync set changed concurrently")
)

// ISRRecord is the in-sync set as the control plane has committed it for
// one epoch. The control plane promotes only from it in sync mode, so a
// primary must not count on a replica having left until the record says
// so (see ISR.Required). Version orders the records of an epoch; a
// promotion starts the new epoch with version 0 and no members, because
// nobody has acknowledged anything to the new primary yet.
type ISRRecord struct {
	Epoch   Epoch
	Version uint64
	Members []NodeID // ascending
}

// ISRProposal asks the control plane to replace the record of Epoch at
// version Base with Members.
type ISRProposal struct {
	Epoch   Epoch
	Base    uint64
	Members []NodeID // ascending
}

// Apply is the control plane's rule for an in-sync set proposal: it
// replaces the record only if the proposal names the current epoch and
// version, so a proposal is applied at most once however often it is
// resent, and one delayed past a newer record or a promotion is refused.
// On error the current record is returned, for the reply. The wiring also
// checks that the proposal came from the epoch's primary.
func (r ISRRecord) Apply(p ISRProposal) (ISRRecord, error) {
	switch {
	case p.Epoch < r.Epoch:
		return r, fmt.Errorf("%w: in-sync set proposal for epoch %d, current %d", ErrStaleEpoch, p.Epoch, r.Epoch)
	case p.Epoch > r.Epoch || p.Base != r.Version:
		return r, fmt.Errorf("%w: proposal for epoch %d version %d, record is epoch %d version %d", ErrISRConflict, p.Epoch, p.Base, r.Epoch, r.Version)
	}
	members := slices.Clone(p.Members)
	slices.Sort(members)
	return ISRRecord{Epoch: r.Epoch, Version: r.Version + 1, Members: slices.Compact(members)}, nil
}

// Change says whether a replica left or joined the in-sync set.
type Change uint8

// The changes.
const (
	Left Change = iota + 1
	Joined
)

// String returns "left" or "joined", for events.
func (c Change) String() string {
	switch c {
	case Left:
		return "left"
	case Joined:
		return "joined"
	}
	return fmt.Sprintf("Change(%d)", uint8(c))
}

// Event records a replica leaving or joining the in-sync set, for the
// wiring to report.
type Event struct {
	Replica NodeID
	Change  Change
	At      int64  // the primary's clock
	Reason  string // why it left, for humans
}

// Progress is one replica as the primary sees it.
type Progress struct {
	Replica NodeID
	InSync  bool
	Acked   LSN    // highest LSN the replica has acknowledged
	LagLSN  uint64 // entries the primary has that the replica has not acked
	// LagTime is the age of the oldest entry the replica lacks (0 when it
	// lacks none). For a replica out of the set the primary keeps no exact
	// append times; LagTimeAtLeast then says LagTime is a lower bound.
	LagTime        time.Duration
	LagTimeAtLeast bool
	SinceAck       time.Duration // time since its last ack
}

// ISR tracks a shard's replicas from the primary: what each has
// acknowledged, how far behind it is, and the in-sync set.
//
// A replica in the set leaves it when it is more than MaxLagLSN entries
// behind, when the oldest entry it lacks is older than MaxLagTime, or when
// it has not acked for longer than MaxLagTime. A replica out of the set
// joins it when it has acked everything the primary has (not merely come
// within the bounds: a joiner must hold every write acknowledged before it
// joined, since from then on the control plane may promote it).
//
// Times are the primary's clock in nanoseconds; a time earlier than one
// already seen counts as the later one. An ISR is not safe for concurrent
// use; the primary's replication loop owns it.
type ISR struct {
	cfg      Config
	rec      ISRRecord
	flight   ISRProposal
	inFlight bool
	// confirmed is set once the control plane's record has moved past the
	// version NewISR was given; see Required.
	confirmed bool
	last      LSN
	now       int64
	marks     []mark // appends the in-sync replicas may still lack, ascending
	dropped   mark   // the newest mark no longer kept
	reps      []replica
	events    []Event
}

// mark says that entries up to lsn existed at time at.
type mark struct {
	lsn LSN
	at  int64
}

type replica struct {
	id      NodeID
	acked   LSN
	lastAck int64
	heard   bool
	inSync  bool
}

// NewISR starts tracking replicas for the primary of rec.Epoch whose log
// ends at last, at time now. Every replica starts out of the set: it joins
// on its first ack of the whole log. rec is the control plane's current
// record (after a promotion, Decision.ISR).
//
// Until the record has moved past rec.Version, every replica is required:
// a proposal sent by an earlier incarnation of this primary (before a
// restart) may still be applied and name any replica. The first Propose
// therefore always sends a proposal, and its outcome, whichever proposal
// wins, moves the version on.
func NewISR(cfg Config, rec ISRRecord, replicas []NodeID, last LSN, now int64) (*ISR, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &ISR{cfg: cfg, rec: cloneRecord(rec), last: last, now: now, dropped: mark{last, now}}
	for _, id := range replicas {
		if id == 0 || slices.ContainsFunc(s.reps, func(r replica) bool { return r.id == id }) {
			return nil, fmt.Errorf("%w: replica %d is zero or repeated", ErrUnknownReplica, id)
		}
		s.reps = append(s.reps, replica{id: id, lastAck: now})
	}
	sort.Slice(s.reps, func(i, j int) bool { return s.reps[i].id < s.reps[j].id })
	return s, nil
}

// Appended tells the tracker that the primary's log now ends at lsn, at
// time now.
func (s *ISR) Appended(lsn LSN, now int64) error {
	if lsn <= s.last {
		return fmt.Errorf("%w: appended LSN %d, log already ends at %d", ErrInvalidLog, lsn, s.last)
	}
	s.advance(now)
	s.last = lsn
	s.marks = append(s.marks, mark{lsn, s.now})
	s.evaluate()
	return nil
}

// Ack records that replica has applied (and persisted) the log up to lsn,
// as of time now. Acks may arrive out of order; the highest LSN counts.
// The wiring fences acks by epoch (Check) before passing them on.
func (s *ISR) Ack(replica NodeID, lsn LSN, now int64) error {
	i := s.find(replica)
	if i < 0 {
		return fmt.Errorf("%w: ack from node %d", ErrUnknownReplica, replica)
	}
	if lsn > s.last {
		return fmt.Errorf("%w: replica %d acked LSN %d beyond the primary's last %d", ErrInvalidLog, replica, lsn, s.last)
	}
	s.advance(now)
	r := &s.reps[i]
	r.acked = max(r.acked, lsn)
	r.lastAck = s.now
	r.heard = true
	s.evaluate()
	return nil
}

// Tick re-evaluates the time bounds at time now. Call it at least every
// MaxLagTime/2 or so: a replica that goes silent is only noticed here.
func (s *ISR) Tick(now int64) {
	s.advance(now)
	s.evaluate()
}

// Recorded tells the tracker the control plane's current record, from a
// reply to a proposal or from a read. Older news is ignored. A record of a
// later epoch means this primary has been replaced: the error wraps
// ErrStaleEpoch and the caller steps down.
func (s *ISR) Recorded(rec ISRRecord) error {
	switch {
	case rec.Epoch > s.rec.Epoch:
		return fmt.Errorf("%w: primary of epoch %d, control plane is at epoch %d", ErrStaleEpoch, s.rec.Epoch, rec.Epoch)
	case rec.Epoch < s.rec.Epoch || rec.Version < s.rec.Version:
		return nil
	}
	if rec.Version > s.rec.Version {
		s.confirmed = true
	}
	s.rec = cloneRecord(rec)
	if s.inFlight && rec.Version > s.flight.Base {
		// Apply is conditional on Base, so once the record has moved past
		// it the proposal has either been applied or can never be.
		s.inFlight = false
	}
	return nil
}

// Propose returns the proposal to send to the control plane, if any: the
// one in flight (resending it is harmless, see ISRRecord.Apply) or, when
// the in-sync set differs from the record or the record is not yet
// confirmed (see NewISR), a new one. Until a reply or a read settles it,
// the proposal's members stay required.
func (s *ISR) Propose() (ISRProposal, bool) {
	if s.inFlight {
		return cloneProposal(s.flight), true
	}
	in := s.InSync()
	if s.confirmed && slices.Equal(in, s.rec.Members) {
		return ISRProposal{}, false
	}
	s.flight, s.inFlight = ISRProposal{Epoch: s.rec.Epoch, Base: s.rec.Version, Members: in}, true
	return cloneProposal(s.flight), true
}

// InSync returns the in-sync set as the primary sees it now, ascending.
// Its size is what CanAcceptWrite takes.
func (s *ISR) InSync() []NodeID {
	var out []NodeID
	for _, r := range s.reps {
		if r.inSync {
			out = append(out, r.id)
		}
	}
	return out
}

// Promotable returns how many replicas are in the in-sync set now and
// in the control plane's record: the replicas the control plane may
// promote (in sync mode) that hold everything so far. A sync primary
// counts these, not InSync, when it admits a write (CanAcceptWrite):
// a replica the primary sees in sync but the record does not name yet
// would hold every acknowledged write, yet could never be promoted, and
// with only such replicas a failover would find no candidate.
func (s *ISR) Promotable() int {
	n := 0
	for _, r := range s.reps {
		if r.inSync && slices.Contains(s.rec.Members, r.id) {
			n++
		}
	}
	return n
}

// Required returns, ascending, the replicas whose acks a sync write needs:
// the in-sync set, plus the members of the control plane's record and of
// a proposal in flight. A replica that left the set locally is still
// required until the control plane has recorded its departure, because
// until then the control plane may promote it, and it must not lack an
// acknowledged write. Before the record is confirmed (see NewISR) every
// replica is required.
func (s *ISR) Required() []NodeID {
	if !s.confirmed {
		out := make([]NodeID, len(s.reps))
		for i, r := range s.reps {
			out[i] = r.id
		}
		return out
	}
	out := s.InSync()
	out = append(out, s.rec.Members...)
	if s.inFlight {
		out = append(out, s.flight.Members...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// AckedBy returns, ascending, the replicas that have acked lsn.
func (s *ISR) AckedBy(lsn LSN) []NodeID {
	var out []NodeID
	for _, r := range s.reps {
		if r.acked >= lsn {
			out = append(out, r.id)
		}
	}
	return out
}

// Progress returns every replica's state as of the latest input, by id.
func (s *ISR) Progress() []Progress {
	out := make([]Progress, len(s.reps))
	for i, r := range s.reps {
		out[i] = s.progress(r)
	}
	return out
}

// Events returns the changes since the last call, oldest first.
func (s *ISR) Events() []Event {
	ev := s.events
	s.events = nil
	return ev
}

// Pending reports whether the set changed since Events was last called:
// the wiring then proposes at once rather than at its next tick, since a
// sync primary that just took office admits writes only once a joined
// replica is recorded.
func (s *ISR) Pending() bool { return len(s.events) > 0 }

// Last is the primary's last LSN as told by NewISR and Appended.
func (s *ISR) Last() LSN { return s.last }

func (s *ISR) find(id NodeID) int {
	for i, r := range s.reps {
		if r.id == id {
			return i
		}
	}
	return -1
}

func (s *ISR) advance(now int64) { s.now = max(s.now, now) }

func (s *ISR) progress(r replica) Progress {
	p := Progress{Replica: r.id, InSync: r.inSync, Acked: r.acked, LagLSN: uint64(s.last - r.acked),
		SinceAck: time.Duration(s.now - r.lastAck)}
	if p.LagLSN == 0 {
		return p
	}
	if r.acked < s.dropped.lsn {
		// The first entry it lacks was appended at or before the newest
		// mark dropped.
		p.LagTime, p.LagTimeAtLeast = time.Duration(s.now-s.dropped.at), true
		return p
	}
	i := sort.Search(len(s.marks), func(i int) bool { return s.marks[i].lsn > r.acked })
	p.LagTime = time.Duration(s.now - s.marks[i].at)
	return p
}

// evaluate applies the membership rules to every replica, then forgets the
// append times no in-sync replica needs.
func (s *ISR) evaluate() {
	keep := s.last // the lowest ack among in-sync replicas
	for i := range s.reps {
		r := &s.reps[i]
		p := s.progress(*r)
		switch {
		case r.inSync:
			if why := s.leaveReason(p); why != "" {
				r.inSync = false
				s.events = append(s.events, Event{Replica: r.id, Change: Left, At: s.now, Reason: why})
			}
		case r.heard && p.LagLSN == 0 && p.SinceAck <= s.cfg.MaxLagTime:
			r.inSync = true
			s.events = append(s.events, Event{Replica: r.id, Change: Joined, At: s.now})
		}
		if r.inSync {
			keep = min(keep, r.acked)
		}
	}
	n := sort.Search(len(s.marks), func(i int) bool { return s.marks[i].lsn > keep })
	if n > 0 {
		s.dropped = s.marks[n-1]
		s.marks = slices.Delete(s.marks, 0, n)
	}
}

func (s *ISR) leaveReason(p Progress) string {
	switch {
	case p.LagLSN > s.cfg.MaxLagLSN:
		return fmt.Sprintf("%d entries behind, more than %d", p.LagLSN, s.cfg.MaxLagLSN)
	case p.LagTime > s.cfg.MaxLagTime:
		return fmt.Sprintf("lacks an entry %v old, more than %v", p.LagTime, s.cfg.MaxLagTime)
	case p.SinceAck > s.cfg.MaxLagTime:
		return fmt.Sprintf("silent for %v, more than %v", p.SinceAck, s.cfg.MaxLagTime)
	}
	return ""
}

func cloneRecord(r ISRRecord) ISRRecord {
	r.Members = slices.Clone(r.Members)
	return r
}

func cloneProposal(p ISRProposal) ISRProposal {
	p.Members = slices.Clone(p.Members)
	return p
}
