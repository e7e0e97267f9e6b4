// Package failover decides primary-replica failover for shards replicated
// by log shipping: leases and their clock arithmetic, epoch fencing, the
// in-sync replica set, when a write is acknowledged, whom the control
// plane promotes, and which writes a returning old primary must set aside.
//
// It is pure: no network, disk, clock or goroutines. Times come in as
// int64 nanoseconds on a named clock (the holder's monotonic clock, the
// control plane's, the primary's) and durations as time.Duration, so the
// node's run loop, the control plane's state machine and the tests feed it
// the same way and get the same answers.
//
// # Guarantees
//
// No two primaries accept writes at the same time, provided the holder's
// clock runs no slower than the control plane's by more than
// Config.MaxDrift over one lease. A primary accepts writes only until
// sentAt + LeaseDuration - MaxDrift on its own clock, where sentAt is when
// it sent the renewal request; the control plane grants after receiving
// that request and re-grants only from Granted + LeaseDuration + Margin on
// its clock. Under the drift bound the first instant comes strictly before
// the second (Lease.HolderValidUntil explains; TestLeaseNoOverlap checks it
// over random drifts and delays). Fencing does not rely on timing: every
// lease, write and replication message carries its epoch, and Check makes
// a node refuse older epochs and step down on newer ones.
//
// In sync mode, a promotion never loses an acknowledged write. A sync
// write is acknowledged only when every replica the control plane may
// consider in sync has applied it (ISR.Required: the primary's in-sync set
// plus the control plane's record plus any proposal in flight, or every
// replica until a restarted primary has heard the record move on), a
// replica joins the set only once it holds the whole log, changes to the
// record are conditional on its version (ISRRecord.Apply), and Decide
// promotes only replicas in the record. With async (and semi, when all of
// a write's ackers are gone) a failover may lose a suffix; LostWrites
// finds it on a returning node so it can be moved aside and counted.
//
// With sync and too few in-sync replicas the primary refuses writes
// (ErrNotEnoughInSync) unless the policy allows degrading, in which case
// each degraded admission is reported. TestSimulatedFailovers runs
// primaries, replicas, the control plane's record, crashes, restarts and
// promotions together over a lossy, reordering network from random seeds,
// and checks that sync loses no acknowledged write and that every write
// missing from the final history was moved aside somewhere.
//
// # Who calls what
//
// Control plane (in its replicated state machine, with its leader's clock):
// Renew for heartbeats, ISRRecord.Apply for in-sync set changes, Decide
// for failover, each decision committed conditionally on the epoch it was
// computed from so it takes effect once. Primary: Lease.HolderCheck before
// each write, AckPolicy.CanAcceptWrite and Acked around it, ISR fed with
// appends, acks and ticks, ISR.Propose and Recorded to keep the control
// plane's record current. Every node: Check on every message; LostWrites
// when it meets a primary of a newer epoch.
package failover
