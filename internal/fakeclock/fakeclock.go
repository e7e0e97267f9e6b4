package fakeclock

import (
	"sync/atomic"
	"time"
)

// Clock is a manually advanced clock.
type Clock struct{ nanos atomic.Int64 }

// New returns a clock reading start.
func New(start time.Time) *Clock {
	c := &Clock{}
	c.nanos.Store(start.UnixNano())
	return c
}

// Now returns the clock's time; pass the method value as a func() time.Time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.nanos.Load()) }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.nanos.Add(int64(d)) }

// UnixMilli is Now in Unix milliseconds, the unit of expiry times.
func (c *Clock) UnixMilli() int64 { return c.Now().UnixMilli() }
