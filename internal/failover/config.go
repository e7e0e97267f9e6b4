package failover

import (
	"errors"
	"fmt"
	"time"
)

// Epoch numbers a shard's primaryships. The control plane bumps it exactly
// once per promotion, so at most one node is primary in any epoch and every
// message stamped with an epoch can be fenced by comparing numbers.
type Epoch uint64

// LSN is a log sequence number in a shard's replication log. LSNs start at
// 1 and grow by one per entry; 0 means "nothing".
type LSN uint64

// NodeID identifies a node. It has the same width as transport.NodeID so
// the wiring converts without loss; 0 means "no node".
type NodeID uint64

// Config holds the timing and lag bounds of failover. It is a plain value:
// copy it, change fields, call Validate.
type Config struct {
	// LeaseDuration is how long a grant keeps a primary in office without
	// another renewal. It is the failover timeout: the control plane may
	// promote someone else only LeaseDuration+Margin after the last grant
	// on its own clock.
	LeaseDuration time.Duration
	// RenewInterval is how often the primary asks for a renewal (its
	// heartbeat). It must leave room for a few lost renewals inside the
	// holder's window, LeaseDuration-MaxDrift.
	RenewInterval time.Duration
	// MaxDrift bounds how much slower the holder's clock may run than the
	// control plane's over one LeaseDuration. The holder gives up this
	// much of every lease so that it stops before the control plane can
	// re-grant; a larger real drift breaks the single-primary guarantee.
	MaxDrift time.Duration
	// Margin is extra time the control plane waits past a lease's end
	// before granting it to another node. The proof needs none; it is
	// insurance against a drift bound that turns out optimistic, paid for
	// in failover time.
	Margin time.Duration
	// MaxLagLSN is how many entries an in-sync replica may be behind the
	// primary's last entry before it leaves the in-sync set. Make it larger
	// than the biggest burst the primary appends within one replication
	// round trip, or bursts evict healthy replicas.
	MaxLagLSN uint64
	// MaxLagTime is how long an in-sync replica may leave the primary's
	// oldest entry it lacks unacknowledged, or stay silent, before it
	// leaves the in-sync set. Replicas must ack (at least as a heartbeat)
	// more often than this even when there is nothing new.
	MaxLagTime time.Duration
}

// DefaultConfig returns bounds that fail over in about a second: a lease of
// 800ms plus a 100ms margin, renewed every 200ms, with 80ms (10%) of clock
// drift allowed.
func DefaultConfig() Config {
	return Config{
		LeaseDuration: 800 * time.Millisecond,
		RenewInterval: 200 * time.Millisecond,
		MaxDrift:      80 * time.Millisecond,
		Margin:        100 * time.Millisecond,
		MaxLagLSN:     10_000,
		MaxLagTime:    500 * time.Millisecond,
	}
}

// ConfigFor derives the bounds from a failover timeout (the cluster's
// cluster.failover_timeout, or a namespace's own): a lease of 80 % of it,
// renewed four times per lease, 10 % of the lease allowed for clock
// drift, 10 % of the timeout as the control plane's margin, and the rest
// for a replica to hear of its promotion. Replicas leave the in-sync set
// after 5/8 of a lease without progress (at least 50ms, so that a short
// timeout does not evict replicas on scheduling noise). One second gives
// DefaultConfig. The engines and the control plane must derive a shard's
// bounds from the same timeout.
func ConfigFor(timeout time.Duration) Config {
	c := DefaultConfig()
	c.LeaseDuration = timeout * 8 / 10
	c.Margin = timeout / 10
	c.RenewInterval = c.LeaseDuration / 4
	c.MaxDrift = c.LeaseDuration / 10
	c.MaxLagTime = max(c.LeaseDuration*5/8, 50*time.Millisecond)
	return c
}

// ErrInvalidConfig is wrapped by Validate's errors.
var ErrInvalidConfig = errors.New("invalid failover config")

// Validate checks the fields together.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.LeaseDuration <= 0:
		return bad("lease duration %v: want > 0", c.LeaseDuration)
	case c.MaxDrift < 0 || c.MaxDrift >= c.LeaseDuration:
		// A drift as large as the lease leaves the holder no window at all.
		return bad("max drift %v: want >= 0 and below the lease duration %v", c.MaxDrift, c.LeaseDuration)
	case c.Margin < 0:
		return bad("margin %v: want >= 0", c.Margin)
	case c.RenewInterval <= 0 || c.RenewInterval >= c.LeaseDuration-c.MaxDrift:
		// Renewing no more often than the holder's window means the
		// primary loses its lease between two healthy heartbeats.
		return bad("renew interval %v: want > 0 and below lease duration - max drift (%v)", c.RenewInterval, c.LeaseDuration-c.MaxDrift)
	case c.MaxLagLSN < 1:
		return bad("max lag LSN %d: want >= 1", c.MaxLagLSN)
	case c.MaxLagTime <= 0:
		return bad("max lag time %v: want > 0", c.MaxLagTime)
	}
	return nil
}
