package primary

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// KindPrimary is the transport kind of this engine's messages.
const KindPrimary = transport.KindPrimary

// Config configures an Engine. It is a plain value: start from
// DefaultConfig, change fields, and New validates it.
type Config struct {
	// NodeID is this node. It must not be 0.
	NodeID failover.NodeID
	// Shards is the total number of shards of the keyspace
	// (placement.ShardOf's modulus). A snapshot copies, and a snapshot
	// install replaces, only the rows of its own shard.
	Shards int
	// Failover holds the lease and in-sync bounds; the control plane must
	// use the same values.
	Failover failover.Config
	// ReportInterval is how often every replica reports its log position
	// to the Authority and learns the shard's current epoch and primary.
	// It bounds how long a promoted replica takes to notice, so keep it
	// well below the lease.
	ReportInterval time.Duration
	// SilentReportInterval is how often a replica reports while its
	// primary has been silent for 3/4 of a lease to four leases: a
	// failover is likely under way, and the sooner the Authority hears a
	// replica after the lease ends, the sooner it promotes one and the
	// promoted one learns it.
	SilentReportInterval time.Duration
	// HeartbeatInterval is how often a primary sends each replica an
	// append even when there is nothing new, so that replicas ack (the
	// in-sync set drops replicas silent for Failover.MaxLagTime) and
	// measure their time lag. It must be below Failover.MaxLagTime.
	HeartbeatInterval time.Duration
	// MaxBatchEntries caps the log entries of one append message.
	MaxBatchEntries int
	// MaxInflight caps the entries sent to a replica but not yet acked:
	// streaming keeps the pipe full without unbounded queues.
	MaxInflight int
	// TailEntries is how many of the newest log entries each node retains
	// (in memory and as storage marks) for shipping and for finding lost
	// writes. A replica further behind catches up by snapshot, and a
	// returning primary can set aside at most this many lost writes.
	TailEntries int
	// MaxWriteBatch caps the client writes the primary appends and
	// applies together in one storage call (group commit).
	MaxWriteBatch int
	// RPCTimeout bounds each call to the Authority and each snapshot
	// transfer attempt.
	RPCTimeout time.Duration
	// SnapshotTimeout bounds one snapshot transfer and install.
	SnapshotTimeout time.Duration
	// Owns says whether a namespace is replicated by this engine. A
	// snapshot copies, and its install replaces, the shard's rows of these
	// namespaces only, so namespaces of other engines that share the
	// store are left alone. Nil means every namespace not beginning with
	// "_" (reserved for bookkeeping such as LostNamespace).
	Owns func(ns string) bool
	// Scope, if set, says which rows shard id covers: the keys of
	// namespace ns whose placement.ShardOf(ns, key, shards) is index. A
	// cluster numbers its shards by replication group, so each namespace
	// keeps its own shard count; snapshots then copy and replace just
	// those rows. Nil: every owned namespace's keys of shard id among
	// Shards.
	Scope func(shard int) (ns string, index, shards int, ok bool)
	// Clock is a monotonic clock in nanoseconds for leases and lag. It
	// must run at the rate the control plane's clock does, within
	// Failover.MaxDrift. Nil means time elapsed since New.
	Clock func() int64
	// Now is the wall clock for a write's expiry time (kv.Batch.Now) and
	// its HLC timestamp. Nil means time.Now.
	Now func() time.Time
	// Logger reports in-sync set changes and degraded episodes. Nil
	// discards.
	Logger *slog.Logger
}

// DefaultConfig returns the failover package's defaults (WithFailover)
// and a 64k-entry tail.
func DefaultConfig() Config {
	return Config{
		Shards:          1,
		MaxBatchEntries: 256,
		MaxInflight:     4096,
		TailEntries:     64 << 10,
		MaxWriteBatch:   256,
		SnapshotTimeout: 30 * time.Second,
	}.WithFailover(failover.DefaultConfig())
}

// WithFailover returns c with the failover bounds fc and the intervals
// that follow from them: reports and Authority calls at fc's renewal
// rate (eight times as often while the primary is silent), heartbeats
// four times per fc.MaxLagTime. A shard whose namespace
// sets its own failover timeout runs with its ShardConfig.Failover
// applied this way.
func (c Config) WithFailover(fc failover.Config) Config {
	c.Failover = fc
	c.ReportInterval = fc.RenewInterval
	c.SilentReportInterval = min(max(fc.RenewInterval/8, 10*time.Millisecond), fc.RenewInterval)
	c.HeartbeatInterval = fc.MaxLagTime / 4
	c.RPCTimeout = fc.RenewInterval
	return c
}

// ShardConfig describes one shard replica to Engine.AddShard.
type ShardConfig struct {
	// Policy is the namespace's ack rule.
	Policy failover.AckPolicy
	// Members are every node that holds a replica of the shard, this one
	// included.
	Members []failover.NodeID
	// Failover holds the shard's lease and in-sync bounds when they
	// differ from the engine's (a namespace with its own failover
	// timeout); the control plane must use the same for the shard. The
	// shard's report, heartbeat and Authority-call intervals then follow
	// from it (Config.WithFailover). Zero: the engine's Config as it is.
	Failover failover.Config
}

// ErrInvalidConfig is wrapped by Validate's errors.
var ErrInvalidConfig = errors.New("invalid primary engine config")

// Validate checks the fields together.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if err := c.Failover.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	switch {
	case c.NodeID == 0:
		return bad("node id 0")
	case c.Shards < 1:
		return bad("shards %d: want >= 1", c.Shards)
	case c.ReportInterval <= 0:
		return bad("report interval %v: want > 0", c.ReportInterval)
	case c.SilentReportInterval <= 0 || c.SilentReportInterval > c.ReportInterval:
		return bad("silent report interval %v: want > 0 and at most the report interval %v", c.SilentReportInterval, c.ReportInterval)
	case c.HeartbeatInterval <= 0 || c.HeartbeatInterval >= c.Failover.MaxLagTime:
		// A replica acks only what it is sent; heartbeats any rarer than
		// MaxLagTime would evict idle, healthy replicas from the set.
		return bad("heartbeat interval %v: want > 0 and below max lag time %v", c.HeartbeatInterval, c.Failover.MaxLagTime)
	case c.MaxBatchEntries < 1 || c.MaxInflight < c.MaxBatchEntries:
		return bad("max batch entries %d, max inflight %d: want 1 <= batch <= inflight", c.MaxBatchEntries, c.MaxInflight)
	case c.TailEntries < c.MaxInflight:
		return bad("tail entries %d: want >= max inflight %d", c.TailEntries, c.MaxInflight)
	case c.MaxWriteBatch < 1:
		return bad("max write batch %d: want >= 1", c.MaxWriteBatch)
	case c.RPCTimeout <= 0 || c.SnapshotTimeout <= 0:
		return bad("rpc timeout %v, snapshot timeout %v: want > 0", c.RPCTimeout, c.SnapshotTimeout)
	}
	return nil
}
