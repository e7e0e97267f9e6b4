package failbench

import (
	"slices"
	"time"
)

// Op is one write of a trial's history. Times are offsets from the
// trial's origin (monotonic), so a history is plain data.
type Op struct {
	Seq   int
	Key   string
	Value string
	Sent  time.Duration
	Done  time.Duration
	// Acked: the system acknowledged the write. Err is the failure
	// otherwise (empty when the writer stopped before it was sent).
	Acked bool
	Err   string
}

// Unavailable is the time from kill to the first acknowledgement of a
// write sent at or after kill. ok is false when no such write was
// acknowledged.
func Unavailable(ops []Op, kill time.Duration) (d time.Duration, ok bool) {
	for _, op := range ops {
		if !op.Acked || op.Sent < kill {
			continue
		}
		if !ok || op.Done-kill < d {
			d, ok = op.Done-kill, true
		}
	}
	return d, ok
}

// AckGap is the longest interval between two consecutive
// acknowledgements (by the time they arrived) in ops, or 0 with fewer
// than two.
func AckGap(ops []Op) time.Duration {
	var acks []time.Duration
	for _, op := range ops {
		if op.Acked {
			acks = append(acks, op.Done)
		}
	}
	slices.Sort(acks)
	var gap time.Duration
	for i := 1; i < len(acks); i++ {
		gap = max(gap, acks[i]-acks[i-1])
	}
	return gap
}

// Acked returns the acknowledged writes of ops.
func Acked(ops []Op) []Op {
	var out []Op
	for _, op := range ops {
		if op.Acked {
			out = append(out, op)
		}
	}
	return out
}

// Lost returns the acknowledged writes whose key read back without the
// written value (absent, or another value). got maps a key to the value
// read; a key that was not found is absent from it.
func Lost(acked []Op, got map[string]string) []Op {
	var lost []Op
	for _, op := range acked {
		if v, ok := got[op.Key]; !ok || v != op.Value {
			lost = append(lost, op)
		}
	}
	return lost
}
