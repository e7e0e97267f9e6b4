package failover

import (
	"errors"
	"fmt"
	"time"
)

// Lease is the control plane's grant of a shard's primaryship to Holder for
// Epoch. Granted is read on the control plane's clock, so only the control
// plane may compare it with a time; the holder measures its own window from
// its own clock (see HolderValidUntil) and never looks at Granted, because
// the two clocks share no origin.
type Lease struct {
	Holder   NodeID
	Epoch    Epoch
	Granted  int64 // control-plane clock, nanoseconds
	Duration time.Duration
}

// Errors of the lease rules. The wiring maps ErrLeaseLost and ErrNotHolder
// to UNAVAILABLE at the protocol edge.
var (
	// ErrLeaseLost is returned to writes that reach a primary whose
	// window has closed: it can no longer prove that no one else is
	// primary.
	ErrLeaseLost = errors.New("lease lost")
	// ErrNotHolder refuses a renewal from a node that does not hold the
	// lease of the epoch it names.
	ErrNotHolder = errors.New("not the lease holder")
)

// HolderValidUntil is the holder's local time (on the clock that produced
// sentAt) at which it must stop accepting writes under this grant:
// sentAt + Duration - maxDrift. Writes are allowed while now < the result.
//
// sentAt is when the holder SENT the renewal request, not when the reply
// arrived. The control plane starts the grant when it processes the
// request, which is after the send; counting from the send therefore never
// starts the holder's window later than the control plane's. Counting from
// the reply would add the reply's network delay, which has no bound, to the
// holder's side only, and a slow reply could keep an old primary writing
// after the control plane had promoted another.
//
// maxDrift covers a holder clock that runs slow: if over any span of
// Duration on the control plane's clock the holder's clock advances by at
// least Duration - maxDrift, then the holder reaches the result no later
// than Duration after the send in control-plane time, hence strictly before
// Granted + Duration (see ExpiredAt). A fast holder clock only ends the
// window early. Clock offsets do not matter: only elapsed time on each side
// is compared, so the holder should use a monotonic clock.
//
// Replies may arrive out of order; the holder keeps the latest result over
// all grants of its epoch, which is safe because the control plane's
// Granted only moves forward (see Renew).
func (l Lease) HolderValidUntil(sentAt int64, maxDrift time.Duration) int64 {
	return sentAt + int64(l.Duration) - int64(maxDrift)
}

// HolderCheck returns nil if the holder may accept a write at local time
// now under the grant answering the request it sent at sentAt, and an error
// wrapping ErrLeaseLost otherwise.
func (l Lease) HolderCheck(now, sentAt int64, maxDrift time.Duration) error {
	if until := l.HolderValidUntil(sentAt, maxDrift); now >= until {
		return fmt.Errorf("%w: epoch %d window ended %v ago", ErrLeaseLost, l.Epoch, time.Duration(now-until))
	}
	return nil
}

// ExpiredAt is the control-plane time from which the lease may be granted
// to another node: Granted + Duration + margin. The holder stopped before
// Granted + Duration (see HolderValidUntil), so margin is not needed for
// safety under the drift bound; it buys slack if that bound is violated.
func (l Lease) ExpiredAt(margin time.Duration) int64 {
	return l.Granted + int64(l.Duration) + int64(margin)
}

// Expired reports whether, at control-plane time now, the lease may be
// granted to another node.
func (l Lease) Expired(now int64, margin time.Duration) bool {
	return now >= l.ExpiredAt(margin)
}

// Renew is the control plane's rule for a renewal request from holder
// naming epoch, processed at control-plane time now: only the current
// holder of the current epoch is renewed, for duration d.
//
// A renewal is granted even after the lease expired: the epoch is still
// current, so no one else was promoted (a promotion bumps the epoch and
// turns this request stale), and the holder measures its new window from
// its own request. The new Granted never moves backwards, so that a holder
// keeping the latest of several out-of-order grants is never ahead of the
// control plane.
//
// Granted and now must come from one clock. A new control-plane leader
// reads a different clock than the one that granted, so when it takes
// over it must treat every lease as granted at its own current time
// (extending leases, never shortening them) before calling Renew, Expired
// or Decide.
func Renew(cur Lease, holder NodeID, epoch Epoch, now int64, d time.Duration) (Lease, error) {
	if epoch < cur.Epoch {
		return cur, fmt.Errorf("%w: renewal for epoch %d, current %d", ErrStaleEpoch, epoch, cur.Epoch)
	}
	if holder == 0 || holder != cur.Holder || epoch != cur.Epoch {
		return cur, fmt.Errorf("%w: node %d asked for epoch %d, held by node %d in epoch %d", ErrNotHolder, holder, epoch, cur.Holder, cur.Epoch)
	}
	return Lease{Holder: holder, Epoch: epoch, Granted: max(now, cur.Granted), Duration: d}, nil
}
