package hlc

import (
	"fmt"
	"sync"
)

// Timestamp is a hybrid logical clock reading: wall time in nanoseconds since
// the Unix epoch plus a logical counter that orders events within the same
// wall-clock nanosecond.
type Timestamp struct {
	WallNanos int64
	Logical   uint32
}

// Less reports whether t orders strictly before u.
func (t Timestamp) Less(u Timestamp) bool {
	if t.WallNanos != u.WallNanos {
		return t.WallNanos < u.WallNanos
	}
	return t.Logical < u.Logical
}

// Compare returns -1, 0 or +1 as t is before, equal to or after u.
func (t Timestamp) Compare(u Timestamp) int {
	switch {
	case t.Less(u):
		return -1
	case u.Less(t):
		return 1
	}
	return 0
}

// IsZero reports whether t is the zero timestamp.
func (t Timestamp) IsZero() bool { return t.WallNanos == 0 && t.Logical == 0 }

// String renders t as "wall.logical".
func (t Timestamp) String() string { return fmt.Sprintf("%d.%d", t.WallNanos, t.Logical) }

// Clock is a hybrid logical clock. The zero value is not usable; build one
// with New.
type Clock struct {
	physical func() int64 // nanoseconds since the Unix epoch
	mu       struct {
		sync.Mutex
		last Timestamp
	}
}

// New returns a clock reading physical time from now, which returns
// nanoseconds since the Unix epoch (time.Now().UnixNano in production, a
// fake in tests).
func New(now func() int64) *Clock {
	return &Clock{physical: now}
}

// Now returns a timestamp strictly greater than every timestamp previously
// returned by Now or passed to Update.
func (c *Clock) Now() Timestamp {
	pt := c.physical()
	c.mu.Lock()
	defer c.mu.Unlock()
	if pt > c.mu.last.WallNanos {
		c.mu.last = Timestamp{WallNanos: pt}
	} else {
		c.mu.last.Logical++
	}
	return c.mu.last
}

// Update merges a timestamp received from another node so that every later
// Now orders after it, and returns the new local reading.
func (c *Clock) Update(remote Timestamp) Timestamp {
	pt := c.physical()
	c.mu.Lock()
	defer c.mu.Unlock()
	last := c.mu.last
	switch {
	case pt > last.WallNanos && pt > remote.WallNanos:
		c.mu.last = Timestamp{WallNanos: pt}
	case remote.WallNanos > last.WallNanos:
		c.mu.last = Timestamp{WallNanos: remote.WallNanos, Logical: remote.Logical + 1}
	case last.WallNanos > remote.WallNanos:
		c.mu.last.Logical++
	default: // equal wall times
		l := last.Logical
		if remote.Logical > l {
			l = remote.Logical
		}
		c.mu.last.Logical = l + 1
	}
	return c.mu.last
}

// Observe raises the clock to at least ts without producing a new reading;
// used when recovering the highest timestamp persisted before a restart.
func (c *Clock) Observe(ts Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.last.Less(ts) {
		c.mu.last = ts
	}
}

// Last returns the highest timestamp the clock has produced or observed,
// without advancing it; persisted so a restart never goes back in time.
func (c *Clock) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.last
}
