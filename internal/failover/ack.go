package failover

import (
	"errors"
	"fmt"
	"slices"
)

// AckMode is when a primary acknowledges a write (the namespace's ack
// setting).
type AckMode uint8

// The ack modes.
const (
	// AckAsync acknowledges once the primary has the write durably; a
	// failover may lose the suffix no replica had (counted by LostWrites).
	AckAsync AckMode = iota
	// AckSemi waits for K replicas, any of them, to have applied it.
	AckSemi
	// AckSync waits for every replica of the in-sync set, which must hold
	// at least K replicas; only in-sync replicas are promoted, so no
	// acknowledged write is lost.
	AckSync
)

var ackModeNames = [...]string{AckAsync: "async", AckSemi: "semi", AckSync: "sync"}

// String returns the namespace setting's spelling: async, semi or sync.
func (m AckMode) String() string {
	if int(m) < len(ackModeNames) {
		return ackModeNames[m]
	}
	return fmt.Sprintf("AckMode(%d)", uint8(m))
}

// ErrInvalidPolicy is wrapped by ParseAckMode's and AckPolicy.Validate's
// errors.
var ErrInvalidPolicy = errors.New("invalid ack policy")

// ParseAckMode reads the namespace setting "async", "semi" or "sync".
func ParseAckMode(s string) (AckMode, error) {
	for m, name := range ackModeNames {
		if s == name {
			return AckMode(m), nil
		}
	}
	return 0, fmt.Errorf("%w: ack mode %q: want async, semi or sync", ErrInvalidPolicy, s)
}

// ErrNotEnoughInSync refuses a write that the ack policy could not honour.
// The edge maps it to UNAVAILABLE: "UNAVAILABLE not enough in-sync
// replicas: have 1, need 2".
var ErrNotEnoughInSync = errors.New("not enough in-sync replicas")

// AckPolicy is a shard's acknowledgement rule.
type AckPolicy struct {
	Mode AckMode
	// K is the number of replica acks a semi write needs, and the
	// smallest in-sync set a sync write is accepted with (K = the number
	// of replicas means "all of them, always"). Async ignores it.
	K int
	// AllowDegrade lets semi and sync writes proceed with fewer in-sync
	// replicas than K instead of being refused. Each such admission is
	// reported (CanAcceptWrite's degraded result) so the wiring can emit
	// an event and count it.
	AllowDegrade bool
}

// Validate checks the policy against the number of replicas per shard
// besides the primary.
func (p AckPolicy) Validate(replicas int) error {
	switch p.Mode {
	case AckAsync:
		return nil
	case AckSemi:
		if p.K < 1 || p.K > replicas {
			return fmt.Errorf("%w: semi needs 1 to %d replica acks, got %d", ErrInvalidPolicy, replicas, p.K)
		}
	case AckSync:
		if p.K < 0 || p.K > replicas {
			return fmt.Errorf("%w: sync needs a minimum in-sync set of 0 to %d replicas, got %d", ErrInvalidPolicy, replicas, p.K)
		}
	default:
		return fmt.Errorf("%w: unknown mode %v", ErrInvalidPolicy, p.Mode)
	}
	return nil
}

// CanAcceptWrite decides whether a primary whose in-sync set has inSync
// replicas (ISR.InSync, the primary's own view) takes a new write. It
// returns an error wrapping ErrNotEnoughInSync when the policy cannot be
// met and degrading is not allowed: refusing is honest, whereas waiting
// would only turn into a timeout whose outcome the client cannot know.
// degraded is true when the write is taken with fewer in-sync replicas
// than K because AllowDegrade is set; the caller reports it.
func (p AckPolicy) CanAcceptWrite(inSync int) (degraded bool, err error) {
	if p.Mode == AckAsync || inSync >= p.K {
		return false, nil
	}
	if p.AllowDegrade {
		return true, nil
	}
	return false, fmt.Errorf("%w: have %d, need %d", ErrNotEnoughInSync, inSync, p.K)
}

// Acked reports whether a write is acknowledged, given the replicas that
// must hold it (ISR.Required: the in-sync set plus every replica the
// control plane may believe in sync) and the replicas that have applied it
// (ISR.AckedBy of its LSN). The primary's own durable append is assumed.
//
//   - async: always.
//   - semi: at least K replicas applied it (any replicas: an out-of-sync
//     replica that has the write holds it as well as any other); with
//     AllowDegrade, at least min(K, len(required)).
//   - sync: every required replica applied it and, unless AllowDegrade,
//     there are at least K of them. A write admitted with K in-sync
//     replicas whose set then shrank below K stays unacknowledged (the
//     client times out, outcome unknown) rather than silently degrading.
//
// Re-evaluate pending writes after every ack and every change of required:
// a shrink recorded by the control plane can complete a sync write.
func (p AckPolicy) Acked(required, ackedBy []NodeID) bool {
	switch p.Mode {
	case AckSemi:
		need := p.K
		if p.AllowDegrade {
			need = min(need, len(required))
		}
		return len(ackedBy) >= need
	case AckSync:
		if len(required) < p.K && !p.AllowDegrade {
			return false
		}
		for _, r := range required {
			if !slices.Contains(ackedBy, r) {
				return false
			}
		}
		return true
	}
	return true
}
