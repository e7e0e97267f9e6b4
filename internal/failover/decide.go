package failover

import (
	"errors"
	"fmt"
	"time"
)

// ErrNoCandidate explains an Unavailable decision: no replica may be
// promoted. The edge maps it to UNAVAILABLE.
var ErrNoCandidate = errors.New("no replica can be promoted")

// Shard is what the control plane knows about a shard's primaryship.
type Shard struct {
	Epoch   Epoch
	Primary NodeID // 0: none yet
	Lease   Lease
	Policy  AckPolicy
}

// Replica is a replica's state as reported to the control plane.
type Replica struct {
	ID        NodeID
	Applied   LSN   // its last applied (and persisted) entry
	LastEpoch Epoch // the epoch of that entry
	InSync    bool  // a member of the control plane's ISRRecord
	Alive     bool  // heard from within the failure detector's bound
}

// Action is the kind of a Decision.
type Action uint8

// The actions.
const (
	// NoAction: the primary's lease is still running on the control
	// plane's clock; nothing may change yet.
	NoAction Action = iota
	// Promote: make Decision.Node primary in Decision.Epoch.
	Promote
	// Unavailable: the lease has run out and no replica may be promoted;
	// the shard refuses writes until one can be (or the old primary
	// renews, see Renew).
	Unavailable
)

// String names the action for events and logs.
func (a Action) String() string {
	switch a {
	case NoAction:
		return "no-action"
	case Promote:
		return "promote"
	case Unavailable:
		return "unavailable"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// Decision is what the control plane's leader commits, in one Raft write
// conditional on the shard still being at the epoch it was computed from
// (Decision.Epoch-1), so it takes effect at most once.
type Decision struct {
	Action Action
	// Node and Epoch are the new primary and its epoch (Promote only).
	Node  NodeID
	Epoch Epoch
	// Lease is granted to Node with the promotion, so that no second
	// promotion happens before Node could take office. Node still measures
	// its own window from a renewal it sends (Lease.HolderValidUntil).
	Lease Lease
	// ISR is the new epoch's in-sync record: empty, since no replica has
	// acknowledged anything to Node yet.
	ISR ISRRecord
	// MayLoseAcked is true when Node is not guaranteed to hold every
	// acknowledged write: always with async and semi (semi loses nothing
	// while one of a write's K ackers is live, but the control plane
	// cannot tell), and with sync when it degraded to a replica outside
	// the in-sync set.
	MayLoseAcked bool
	// Reason says why, for events and logs.
	Reason string
}

// Err returns nil unless the decision is Unavailable, and then an error
// wrapping ErrNoCandidate.
func (d Decision) Err() error {
	if d.Action != Unavailable {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNoCandidate, d.Reason)
}

// Decide is the control plane's failover rule for one shard at
// control-plane time now. It is deterministic: the same inputs give the
// same decision on every node.
//
// While the lease has a holder and has not expired (Lease.Expired with
// cfg.Margin) nothing happens: the primary may still be accepting writes. After that the
// primary is replaced; it is never a candidate itself (if it comes back in
// time it renews instead, see Renew). Candidates are the live replicas;
// with sync only those in the control plane's in-sync record, all of which
// hold every acknowledged write, so promotion loses none. If sync finds no
// in-sync candidate and the policy allows degrading, it falls back to the
// async rule and says so (MayLoseAcked). Among candidates the most
// up-to-date wins, by (LastEpoch, Applied) as in Raft's log comparison;
// ties go to the lowest node id.
func Decide(s Shard, replicas []Replica, now int64, cfg Config) Decision {
	if s.Lease.Holder != 0 && !s.Lease.Expired(now, cfg.Margin) {
		return Decision{Action: NoAction, Reason: fmt.Sprintf("node %d holds the lease of epoch %d for another %v",
			s.Lease.Holder, s.Lease.Epoch, time.Duration(s.Lease.ExpiredAt(cfg.Margin)-now))}
	}
	inSyncOnly := s.Policy.Mode == AckSync
	best, ok := pick(s, replicas, inSyncOnly)
	mayLose := !inSyncOnly
	reason := ""
	if !ok && inSyncOnly && s.Policy.AllowDegrade {
		best, ok = pick(s, replicas, false)
		mayLose, reason = true, "no live in-sync replica; degraded to the most up-to-date live one: "
	}
	if !ok {
		what := "live replica"
		if inSyncOnly {
			what = "live in-sync replica"
		}
		return Decision{Action: Unavailable, Reason: fmt.Sprintf("lease of node %d (epoch %d) expired and no %s to promote", s.Lease.Holder, s.Epoch, what)}
	}
	e := s.Epoch + 1
	return Decision{
		Action:       Promote,
		Node:         best.ID,
		Epoch:        e,
		Lease:        Lease{Holder: best.ID, Epoch: e, Granted: now, Duration: cfg.LeaseDuration},
		ISR:          ISRRecord{Epoch: e},
		MayLoseAcked: mayLose,
		Reason: reason + fmt.Sprintf("lease of node %d (epoch %d) expired; node %d has entry %d of epoch %d",
			s.Lease.Holder, s.Epoch, best.ID, best.Applied, best.LastEpoch),
	}
}

func pick(s Shard, replicas []Replica, inSyncOnly bool) (Replica, bool) {
	var best Replica
	found := false
	for _, r := range replicas {
		if r.ID == 0 || r.ID == s.Primary || !r.Alive || (inSyncOnly && !r.InSync) {
			continue
		}
		if !found || ahead(r, best) {
			best, found = r, true
		}
	}
	return best, found
}

// ahead reports whether a is preferred to b: newer log, then lower id.
func ahead(a, b Replica) bool {
	if a.LastEpoch != b.LastEpoch {
		return a.LastEpoch > b.LastEpoch
	}
	if a.Applied != b.Applied {
		return a.Applied > b.Applied
	}
	return a.ID < b.ID
}
