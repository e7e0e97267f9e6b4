package failover

import (
	"errors"
	"fmt"
)

// ErrStaleEpoch refuses a message, write, lease request or log entry that
// carries an epoch older than the receiver's. Its text reads well after
// the protocol code: the edge maps it to STALE_EPOCH, giving
// "STALE_EPOCH stale epoch: message epoch 3, current 5".
var ErrStaleEpoch = errors.New("stale epoch")

// Verdict is what a node does with a message given the epochs involved.
type Verdict uint8

// The verdicts of Check.
const (
	// Accept: the message is of the receiver's epoch; act on it.
	Accept Verdict = iota
	// RefuseStale: the message is from an older epoch; its sender has
	// been replaced. Refuse it with ErrStaleEpoch and do not act on it,
	// however plausible its contents.
	RefuseStale
	// StepDown: the message is from a newer epoch. The receiver adopts
	// that epoch (persisting it before acting, so a restart cannot bring
	// the old one back) and stops acting on the old one: a primary stops
	// accepting writes and abandons its pending acknowledgements, a
	// replica reconciles its log with the new primary (LostWrites). Only
	// then is the message handled, under the new epoch.
	StepDown
)

// String names the verdict for logs.
func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case RefuseStale:
		return "refuse-stale"
	case StepDown:
		return "step-down"
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// Check compares the highest epoch the receiver has seen with the epoch a
// message carries. Fencing by epoch comes before any timing argument: a
// node that sees a higher epoch stops acting on the old one whatever its
// lease says. The error is non-nil, wrapping ErrStaleEpoch, exactly when
// the verdict is RefuseStale.
func Check(epochSeen, epochMsg Epoch) (Verdict, error) {
	switch {
	case epochMsg < epochSeen:
		return RefuseStale, fmt.Errorf("%w: message epoch %d, current %d", ErrStaleEpoch, epochMsg, epochSeen)
	case epochMsg > epochSeen:
		return StepDown, nil
	}
	return Accept, nil
}
