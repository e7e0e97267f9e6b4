package kv

import (
	"context"
	"fmt"
	"time"
)

// Consistency levels a namespace can choose.
const (
	ConsistencyStrong   = "strong"   // linearizable: Raft per shard, CP
	ConsistencyEventual = "eventual" // leaderless, repaired, AP
	ConsistencyWeak     = "weak"     // leaderless, best effort, AP
)

// Policy is what a namespace's owner chose: how its data is replicated and
// what its reads and writes promise.
type Policy struct {
	Consistency string `json:"consistency"`
	// Replicas is the replication factor of every shard.
	Replicas int `json:"replicas"`
	// Shards is the fixed number of shards keys are hashed into.
	Shards int `json:"shards"`
	// W and R are how many replicas must acknowledge a write and answer a
	// read (eventual: 1 to Replicas, default 1; weak: always 1; strong:
	// unused, a Raft majority decides).
	W int `json:"w,omitempty"`
	R int `json:"r,omitempty"`
	// ReadRepair (eventual): "async" (default) answers a read at once and
	// repairs stale replicas in the background; "blocking" answers once
	// the repairs are acknowledged (or the deadline passes).
	ReadRepair string `json:"read_repair,omitempty"`
	// Conflicts (eventual) is how concurrent writes of a key are resolved:
	// "lww" (the default) keeps the last writer by hybrid-logical-clock
	// timestamp, ties broken by node id; "siblings" keeps every concurrent
	// write, and a read returns them all with a causal context that the
	// next write passes back to replace the siblings it covers. Weak
	// namespaces are always lww; strong and primary ones have no
	// concurrent writes to resolve.
	Conflicts string `json:"conflicts,omitempty"`

	// Replication "primary" replicates the namespace by log shipping from
	// one primary per shard (master-slave) instead of Raft or the
	// leaderless engine; Consistency is then empty, and Ack says what a
	// write's acknowledgement promises.
	Replication string `json:"replication,omitempty"`
	// Ack (primary): "async" acknowledges once the primary applied the
	// write, "semi" once AckReplicas replicas did, "sync" (the default)
	// once every in-sync replica did, refusing writes while fewer than
	// AckReplicas replicas are in sync.
	Ack string `json:"ack,omitempty"`
	// AckReplicas (primary, semi and sync) is K: the replica acks a semi
	// write needs, the smallest in-sync set a sync write is taken with.
	// Default 1.
	AckReplicas int `json:"ack_replicas,omitempty"`
	// AllowDegrade (primary, semi and sync) takes writes with fewer than
	// AckReplicas in-sync replicas instead of refusing them; each such
	// write is counted and reported.
	AllowDegrade bool `json:"allow_degrade,omitempty"`
	// Availability (primary): "active-passive" (the default) puts every
	// shard's primary on one node while the others stand by;
	// "active-active" spreads the primaries over the replicas and serves
	// reads from every replica.
	Availability string `json:"availability,omitempty"`
	// FailoverTimeoutMs (primary) bounds how long the namespace's shards
	// go without a primary when theirs stops: the primary's lease runs
	// 80 % of it, a clock-drift margin 10 %, the promotion the rest.
	// 0 takes the cluster's cluster.failover_timeout.
	FailoverTimeoutMs int `json:"failover_timeout_ms,omitempty"`
}

// Replication modes (Policy.Replication).
const (
	// ReplicationPrimary: one primary per shard ships its log to the
	// replicas; failover promotes one of them.
	ReplicationPrimary = "primary"
)

// Ack modes and availability patterns of primary namespaces.
const (
	AckAsync                  = "async"
	AckSemi                   = "semi"
	AckSync                   = "sync"
	AvailabilityActivePassive = "active-passive"
	AvailabilityActiveActive  = "active-active"
)

// Engines that serve a namespace (Policy.Engine).
const (
	EngineRaft       = "raft"
	EngineLeaderless = "leaderless"
	EnginePrimary    = "primary"
)

// Engine names the engine that replicates the namespace: Raft groups
// for strong, the leaderless engine for eventual and weak, log shipping
// for replication=primary.
func (p Policy) Engine() string {
	switch {
	case p.Replication == ReplicationPrimary:
		return EnginePrimary
	case p.Consistency == ConsistencyEventual || p.Consistency == ConsistencyWeak:
		return EngineLeaderless
	}
	return EngineRaft
}

// Read-repair modes of eventual namespaces.
const (
	ReadRepairAsync    = "async"
	ReadRepairBlocking = "blocking"
)

// Conflict modes of eventual namespaces (Policy.Conflicts).
const (
	ConflictsLWW      = "lww"
	ConflictsSiblings = "siblings"
)

// KeepSiblings reports whether the namespace keeps concurrent writes as
// siblings instead of resolving them by last writer wins.
func (p Policy) KeepSiblings() bool { return p.Conflicts == ConflictsSiblings }

// WithDefaults fills in what the owner left out: W and R of eventual and
// weak namespaces default to 1, an eventual namespace's read repair to
// async and its conflict mode to lww.
func (p Policy) WithDefaults() Policy {
	if p.Replication == ReplicationPrimary {
		if p.Consistency == ConsistencyStrong {
			// The default level of a namespace: a primary namespace's
			// promise is its ack mode instead.
			p.Consistency = ""
		}
		if p.Ack == "" {
			p.Ack = AckSync
		}
		if p.AckReplicas == 0 && p.Ack != AckAsync {
			p.AckReplicas = min(1, p.Replicas-1)
		}
		if p.Availability == "" {
			p.Availability = AvailabilityActivePassive
		}
		return p
	}
	if p.Consistency == ConsistencyEventual || p.Consistency == ConsistencyWeak {
		if p.W == 0 {
			p.W = 1
		}
		if p.R == 0 {
			p.R = 1
		}
	}
	if p.Consistency == ConsistencyEventual && p.ReadRepair == "" {
		p.ReadRepair = ReadRepairAsync
	}
	if p.Consistency == ConsistencyEventual && p.Conflicts == "" {
		p.Conflicts = ConflictsLWW
	}
	return p
}

// Policy bounds.
const (
	MaxShards   = 1024
	MaxReplicas = 7
	// A failover timeout below MinFailoverTimeoutMs leaves a lease too
	// short to renew over a loaded network; one above MaxFailoverTimeoutMs
	// is an outage, not a timeout.
	MinFailoverTimeoutMs = 100
	MaxFailoverTimeoutMs = 60_000
)

// Validate checks the policy on its own; nodes is the cluster size (0 to
// skip the check against it).
func (p Policy) Validate(nodes int) error {
	if p.Replication != "" || p.Ack != "" || p.AckReplicas != 0 || p.AllowDegrade || p.Availability != "" || p.FailoverTimeoutMs != 0 {
		if err := p.validatePrimary(); err != nil {
			return err
		}
	}
	switch p.Consistency {
	case "":
		if p.Replication != ReplicationPrimary {
			return Errorf(CodeInvalid, "consistency is required: want %s, %s or %s", ConsistencyStrong, ConsistencyEventual, ConsistencyWeak)
		}
	case ConsistencyStrong:
		if p.ReadRepair != "" {
			return Errorf(CodeInvalid, "read_repair applies to eventual namespaces")
		}
		if p.W != 0 || p.R != 0 {
			return Errorf(CodeInvalid, "w and r apply to eventual namespaces; a strong namespace's writes and reads need a Raft majority")
		}
		if p.Conflicts != "" {
			return Errorf(CodeInvalid, "conflicts applies to eventual namespaces; a strong namespace's writes are ordered by Raft and never conflict")
		}
	case ConsistencyEventual:
		if p.ReadRepair != ReadRepairAsync && p.ReadRepair != ReadRepairBlocking {
			return Errorf(CodeInvalid, "read_repair %q: want %s or %s", p.ReadRepair, ReadRepairAsync, ReadRepairBlocking)
		}
		if p.Conflicts != ConflictsLWW && p.Conflicts != ConflictsSiblings {
			return Errorf(CodeInvalid, "conflicts %q: want %s or %s", p.Conflicts, ConflictsLWW, ConflictsSiblings)
		}
		if p.W < 1 || p.W > p.Replicas {
			return Errorf(CodeInvalid, "w %d: want 1 to replicas (%d)", p.W, p.Replicas)
		}
		if p.R < 1 || p.R > p.Replicas {
			return Errorf(CodeInvalid, "r %d: want 1 to replicas (%d)", p.R, p.Replicas)
		}
	case ConsistencyWeak:
		if p.ReadRepair != "" {
			return Errorf(CodeInvalid, "a weak namespace does no read repair (read_repair is for eventual ones)")
		}
		if p.W != 1 || p.R != 1 {
			return Errorf(CodeInvalid, "a weak namespace writes to and reads from one replica: w and r must be 1 (got %d and %d); use eventual for quorums", p.W, p.R)
		}
		if p.Conflicts != "" && p.Conflicts != ConflictsLWW {
			return Errorf(CodeInvalid, "conflicts %q: a weak namespace keeps the last writer only (lww); use eventual for siblings", p.Conflicts)
		}
	default:
		return Errorf(CodeInvalid, "consistency %q: want %s, %s or %s", p.Consistency, ConsistencyStrong, ConsistencyEventual, ConsistencyWeak)
	}
	if p.Shards < 1 || p.Shards > MaxShards {
		return Errorf(CodeInvalid, "shards %d: want 1 to %d", p.Shards, MaxShards)
	}
	if p.Replicas < 1 || p.Replicas > MaxReplicas {
		return Errorf(CodeInvalid, "replicas %d: want 1 to %d", p.Replicas, MaxReplicas)
	}
	if nodes > 0 && p.Replicas > nodes {
		return Errorf(CodeInvalid, "replicas %d: the cluster has only %d node(s)", p.Replicas, nodes)
	}
	return nil
}

// validatePrimary checks the fields of replication=primary.
func (p Policy) validatePrimary() error {
	if p.Replication != ReplicationPrimary {
		if p.Replication != "" {
			return Errorf(CodeInvalid, "replication %q: want %s (or leave it out for the consistency level's engine)", p.Replication, ReplicationPrimary)
		}
		return Errorf(CodeInvalid, "ack, ack_replicas, allow_degrade, availability and failover_timeout apply to replication=primary namespaces")
	}
	if p.Consistency != "" {
		return Errorf(CodeInvalid, "consistency %s does not apply to replication=primary: a primary namespace promises what its ack mode says", p.Consistency)
	}
	if p.W != 0 || p.R != 0 || p.ReadRepair != "" || p.Conflicts != "" {
		return Errorf(CodeInvalid, "w, r, read_repair and conflicts apply to eventual namespaces, not replication=primary (its primary orders every write)")
	}
	switch p.Availability {
	case AvailabilityActivePassive, AvailabilityActiveActive:
	default:
		return Errorf(CodeInvalid, "availability %q: want %s or %s", p.Availability, AvailabilityActivePassive, AvailabilityActiveActive)
	}
	if p.FailoverTimeoutMs != 0 && (p.FailoverTimeoutMs < MinFailoverTimeoutMs || p.FailoverTimeoutMs > MaxFailoverTimeoutMs) {
		return Errorf(CodeInvalid, "failover_timeout %d ms: want %d to %d (or 0 for the cluster's cluster.failover_timeout)", p.FailoverTimeoutMs, MinFailoverTimeoutMs, MaxFailoverTimeoutMs)
	}
	others := p.Replicas - 1
	switch p.Ack {
	case AckAsync:
		if p.AckReplicas != 0 || p.AllowDegrade {
			return Errorf(CodeInvalid, "ack_replicas and allow_degrade apply to ack semi and sync; async waits for no replica")
		}
	case AckSemi:
		if p.AckReplicas < 1 || p.AckReplicas > others {
			return Errorf(CodeInvalid, "ack_replicas %d: semi waits for 1 to replicas-1 (%d) replica acks", p.AckReplicas, others)
		}
	case AckSync:
		if p.AckReplicas < 0 || p.AckReplicas > others {
			return Errorf(CodeInvalid, "ack_replicas %d: sync needs an in-sync set of 0 to replicas-1 (%d) replicas", p.AckReplicas, others)
		}
	default:
		return Errorf(CodeInvalid, "ack %q: want %s, %s or %s", p.Ack, AckAsync, AckSemi, AckSync)
	}
	return nil
}

func (p Policy) String() string {
	if p.Replication == ReplicationPrimary {
		s := fmt.Sprintf("replication=primary ack=%s", p.Ack)
		if p.Ack != AckAsync {
			s += fmt.Sprintf(" ack_replicas=%d", p.AckReplicas)
		}
		if p.AllowDegrade {
			s += " allow_degrade"
		}
		s += fmt.Sprintf(" availability=%s replicas=%d shards=%d", p.Availability, p.Replicas, p.Shards)
		if p.FailoverTimeoutMs != 0 {
			s += " failover_timeout=" + (time.Duration(p.FailoverTimeoutMs) * time.Millisecond).String()
		}
		return s
	}
	s := fmt.Sprintf("consistency=%s replicas=%d shards=%d", p.Consistency, p.Replicas, p.Shards)
	if p.Consistency != ConsistencyStrong {
		s += fmt.Sprintf(" w=%d r=%d", p.W, p.R)
	}
	if p.ReadRepair != "" {
		s += " read_repair=" + p.ReadRepair
	}
	if p.Conflicts != "" {
		s += " conflicts=" + p.Conflicts
	}
	return s
}

// NamespaceInfo describes a namespace of a cluster: its policy and where
// each shard lives.
type NamespaceInfo struct {
	Name   string      `json:"name"`
	Policy Policy      `json:"policy"`
	Shards []ShardInfo `json:"shards"`
	// Created is the creation time in Unix milliseconds.
	Created int64 `json:"created"`
}

// ShardInfo is one shard's place in the cluster.
type ShardInfo struct {
	Shard int `json:"shard"`
	// Group is the shard's replication group (its Raft group id).
	Group uint64 `json:"group"`
	// Replicas are the nodes that hold (or, while a move is under way,
	// will hold) the shard, preferred leader first. The shard's leader
	// moves the group's actual membership to this set one safe step at a
	// time.
	Replicas []uint64 `json:"replicas"`
	// Initial are the nodes that created the group (its first voters):
	// only they may bootstrap it; a replica moved in later starts empty
	// and waits to be added. Empty in older records: then Replicas.
	Initial []uint64 `json:"initial,omitempty"`
	// Leader is the current leader as last seen by the answering node (0:
	// unknown).
	Leader uint64 `json:"leader,omitempty"`
}

// ReadMeta is a read with what kind of answer it is. For an eventual or
// weak namespace: how many replicas answered (Answered, of Required) and
// how many of them held the newest value (Agreed: the others were
// stale), and how many read repairs were sent. For a strong namespace
// the read is linearizable and every count is zero.
type ReadMeta struct {
	Found bool
	Value []byte
	// Version and ExpireAt are a strong (or local) value's (see Value).
	Version  uint64
	ExpireAt int64
	// Timestamp is the write's hybrid-logical-clock time (Unix ns) and
	// Logical its logical part; Writer the node that coordinated it
	// (eventual and weak).
	Timestamp int64
	Logical   uint32
	Writer    uint64
	// Consistency is the namespace's.
	Consistency string
	Answered    int
	Agreed      int
	Required    int
	Repaired    int
	// Role (replication=primary) is the answering replica's: "primary"
	// or "replica"; Epoch its epoch; LagEntries and Lag how far it may be
	// behind the primary (0 on the primary holding its lease).
	Role       string
	Epoch      uint64
	LagEntries uint64
	Lag        time.Duration
	// Siblings (eventual and weak) are the key's live concurrent values,
	// the last-writer-wins winner (Value) first, then by descending
	// timestamp and writer: every concurrent write in a
	// conflicts=siblings namespace, at most one under lww.
	Siblings []Sibling
	// Context (eventual and weak) is the read's causal context, an opaque
	// encoding: a write passing it back (WithCausalContext) replaces the
	// siblings this read returned. Nil for other namespaces.
	Context []byte
}

type replicaReadKey struct{}

// WithReplicaReads returns ctx asking that reads of replication=primary
// namespaces be served by any replica (READONLY), refusing one whose
// lag exceeds maxStaleness (negative: any lag).
func WithReplicaReads(ctx context.Context, maxStaleness time.Duration) context.Context {
	return context.WithValue(ctx, replicaReadKey{}, maxStaleness)
}

// ReplicaReadsFrom returns the replica-read bound ctx carries, if any.
func ReplicaReadsFrom(ctx context.Context) (time.Duration, bool) {
	d, ok := ctx.Value(replicaReadKey{}).(time.Duration)
	return d, ok
}

// Quorum overrides an eventual namespace's W and R for one request or
// connection (0 keeps the namespace's). Strong namespaces ignore it: a
// Raft majority decides there.
type Quorum struct{ W, R int }

type quorumKey struct{}

// WithQuorum returns ctx carrying q for the requests made with it.
func WithQuorum(ctx context.Context, q Quorum) context.Context {
	return context.WithValue(ctx, quorumKey{}, q)
}

// QuorumFrom returns the quorum override ctx carries, if any.
func QuorumFrom(ctx context.Context) (Quorum, bool) {
	q, ok := ctx.Value(quorumKey{}).(Quorum)
	return q, ok
}
