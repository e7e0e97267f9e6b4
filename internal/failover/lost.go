package failover

import (
	"fmt"
	"sort"
)

// Entry names a log entry by its LSN and the epoch it was written in. Only
// the primary of an epoch writes entries of that epoch and it writes each
// LSN once, so (LSN, Epoch) identifies a write across the cluster; two logs
// holding the same pair hold the same write and, since each primary starts
// from its own log, the same writes before it.
type Entry struct {
	LSN   LSN
	Epoch Epoch
}

// EpochStart records that a primary's log holds epoch Epoch's entries from
// LSN Start on (until the next EpochStart). A primary appends one when it
// takes office, with Start = its last LSN + 1, and keeps the list with its
// log; an epoch in which nothing was written has the same Start as the
// next.
type EpochStart struct {
	Epoch Epoch
	Start LSN
}

// LostWrites reconciles the log of a node that returns after a failover,
// typically the old primary, with the current primary's. suffix is the
// tail of the returning node's log (ascending LSN, every entry it is not
// sure the current primary shares) and history is the current primary's
// epoch history, ending with its current epoch.
//
// It returns the entries that must be moved aside into a lost-writes
// record, never merged: the first entry whose epoch differs from the epoch
// the current primary's log has at that LSN, and every entry after it. The
// entries before it are the current primary's too, so the node keeps them
// and continues replicating after them. The result is a subslice of
// suffix.
//
// The returned entries are exactly the writes the returning node accepted
// that the current history does not contain. With async every accepted
// write was acknowledged once durable, so their count is the number of
// acknowledged writes the failover lost (less any whose reply never left
// the node); with sync it is only ever unacknowledged writes.
//
// An entry of an epoch newer than the history's last means the "current"
// primary is stale; the error wraps ErrStaleEpoch. A suffix starting before
// the history does, or out of order, wraps ErrInvalidLog.
func LostWrites(suffix []Entry, history []EpochStart) ([]Entry, error) {
	if err := checkHistory(history); err != nil {
		return nil, err
	}
	for i, e := range suffix {
		if i > 0 && (e.LSN <= suffix[i-1].LSN || e.Epoch < suffix[i-1].Epoch) {
			return nil, fmt.Errorf("%w: entry %d (epoch %d) follows entry %d (epoch %d)", ErrInvalidLog, e.LSN, e.Epoch, suffix[i-1].LSN, suffix[i-1].Epoch)
		}
	}
	if len(suffix) == 0 {
		return nil, nil
	}
	if suffix[0].LSN < history[0].Start {
		return nil, fmt.Errorf("%w: suffix starts at LSN %d, before the history's first epoch (%d from LSN %d)", ErrInvalidLog, suffix[0].LSN, history[0].Epoch, history[0].Start)
	}
	if top, last := suffix[len(suffix)-1], history[len(history)-1]; top.Epoch > last.Epoch {
		return nil, fmt.Errorf("%w: history ends at epoch %d, entry %d has epoch %d", ErrStaleEpoch, last.Epoch, top.LSN, top.Epoch)
	}
	for i, e := range suffix {
		if epochAt(history, e.LSN) != e.Epoch {
			return suffix[i:], nil
		}
	}
	return nil, nil
}

// epochAt is the epoch of the entry at lsn in a log with this history:
// that of the last EpochStart at or before lsn. lsn is not before the
// first start.
func epochAt(history []EpochStart, lsn LSN) Epoch {
	i := sort.Search(len(history), func(i int) bool { return history[i].Start > lsn })
	return history[i-1].Epoch
}

func checkHistory(h []EpochStart) error {
	if len(h) == 0 {
		return fmt.Errorf("%w: empty epoch history", ErrInvalidLog)
	}
	for i, s := range h {
		if s.Start < 1 || (i > 0 && (s.Epoch <= h[i-1].Epoch || s.Start < h[i-1].Start)) {
			return fmt.Errorf("%w: epoch history %v is not ascending from LSN 1", ErrInvalidLog, h)
		}
	}
	return nil
}
