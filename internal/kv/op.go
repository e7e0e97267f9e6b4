package kv

import "github.com/fulcrumdb/fulcrum/internal/hlc"

// Value is a stored value with its metadata.
type Value struct {
	Data []byte
	// Version is the store revision of the write that produced this value.
	// Revisions grow with every write on a store, so versions of one key
	// strictly increase; clients use them for conditional writes.
	Version uint64
	// Created is the revision at which the key was last created.
	Created uint64
	// Timestamp is the hybrid-logical-clock time of the write.
	Timestamp hlc.Timestamp
	// ExpireAt is the expiry time in Unix milliseconds; 0 means none.
	ExpireAt int64
}

// ExpiredAt reports whether v has expired at now (Unix milliseconds).
func (v Value) ExpiredAt(now int64) bool { return v.ExpireAt != 0 && v.ExpireAt <= now }

// OpKind names a write operation.
type OpKind uint8

// Write operations. Each is a deterministic function of the previous value,
// the operation and the batch's Now.
const (
	OpSet         OpKind = iota + 1 // store Value (subject to Cond, ExpireAt/KeepTTL)
	OpDelete                        // remove the key
	OpIncrBy                        // add Delta to an integer value (missing = 0)
	OpIncrByFloat                   // add DeltaFloat to a float value (missing = 0)
	OpAppend                        // append Value (missing = empty)
	OpSetRange                      // overwrite at Offset, zero-padding (missing = empty)
	OpExpire                        // set ExpireAt subject to ExpireCond; 0 or past deletes
	OpPersist                       // remove the expiry
	OpFlush                         // delete every key of the namespace
	OpSweep                         // delete the key if it has expired at Now (TTL sweeper)
	OpRestore                       // store Restored exactly as given (snapshots, repair)
)

var opNames = [...]string{"", "set", "delete", "incrby", "incrbyfloat", "append", "setrange", "expire", "persist", "flush", "sweep", "restore"}

func (k OpKind) String() string {
	if int(k) < len(opNames) {
		return opNames[k]
	}
	return "op?"
}

// Cond is the precondition of an OpSet or OpDelete.
type Cond uint8

// Preconditions.
const (
	CondNone    Cond = iota
	CondAbsent       // NX: only if the key does not exist
	CondPresent      // XX: only if the key exists
	CondVersion      // only if the key exists at IfVersion exactly
)

// ExpireCond is the precondition of an OpExpire (Redis 7 EXPIRE options).
type ExpireCond uint8

// Expiry preconditions.
const (
	ExpireAlways ExpireCond = iota
	ExpireNX                // only if the key has no expiry
	ExpireXX                // only if the key has an expiry
	ExpireGT                // only if the new expiry is greater (no expiry counts as infinite)
	ExpireLT                // only if the new expiry is less (no expiry counts as infinite)
)

// Op is one write operation on one key.
type Op struct {
	Kind      OpKind
	Namespace string
	Key       []byte
	Value     []byte

	Cond      Cond
	IfVersion uint64

	// ExpireAt is the absolute expiry (Unix ms) for OpSet and OpExpire;
	// for OpSet 0 means no expiry unless KeepTTL.
	ExpireAt   int64
	KeepTTL    bool
	ExpireCond ExpireCond

	Delta      int64
	DeltaFloat float64
	Offset     int64

	// Restored is the value OpRestore writes, metadata included: it
	// copies a row from another replica without minting a new version.
	Restored Value
}

// Batch is a group of operations applied atomically and in order.
type Batch struct {
	Ops []Op
	// Now is the batch's time in Unix milliseconds, used for expiry. The
	// engine fills it when zero. Carrying it in the batch keeps application
	// deterministic across replicas.
	Now int64
	// Timestamp is the HLC time of the batch; the engine fills it when zero.
	Timestamp hlc.Timestamp
	// AllAbsent makes the whole batch conditional on none of its keys
	// existing (MSETNX). If any exists, nothing is applied and every Result
	// has Applied false.
	AllAbsent bool

	// Revision, when set, is the version every write of the batch gets,
	// instead of the next revision of the local store. Replicated engines
	// set it (the Raft log index) so all replicas mint the same versions.
	Revision uint64
	// Shard and Shards, when Shards > 0, confine OpFlush to the keys of
	// that shard (placement.ShardOf): each shard's replica flushes its own.
	Shard, Shards int
	// Marks are engine bookkeeping (an applied log index, say) written
	// atomically with the batch outside every namespace; Store.Mark reads
	// them back. They are never user data.
	Marks []Mark
	// Logged marks a batch that is already durable in the caller's own
	// log and replayed from it after a crash (Raft entries): the store
	// applies it without waiting for an fsync of its own. Every other
	// batch is as durable as the store's sync mode makes it.
	Logged bool
}

// Mark is one engine bookkeeping record of a Batch. A nil Value deletes
// the mark.
type Mark struct {
	Key, Value []byte
}

// Result is the outcome of one Op.
type Result struct {
	// Applied is false when the op's precondition did not hold (or, for
	// delete/persist/expire, when there was nothing to change).
	Applied bool
	// Prev is the live value before the op, if PrevExists.
	Prev       Value
	PrevExists bool
	// Cur is the value after the op, if Exists.
	Cur    Value
	Exists bool
	// Count is the number of keys removed by OpFlush.
	Count int64
	// Err is a per-op failure (ErrNotInteger, a TOO_LARGE result, ...). The
	// rest of the batch still applies; nothing of a failed op does.
	Err error
}

// ScanRequest asks for keys of a namespace in key order.
type ScanRequest struct {
	Namespace string
	Prefix    []byte
	// After resumes a scan: only keys strictly greater than After.
	After []byte
	// Limit caps the number of keys examined (not returned); 0 means 100.
	Limit int
	// Match, when set, filters keys; examined keys count towards Limit
	// whether or not they match, so a sparse match cannot stall a scan.
	Match func(key []byte) bool
	// KeysOnly skips returning values.
	KeysOnly bool
	// ShardSet, when not empty, confines the scan to the keys of those
	// shards (placement.ShardOf over Shards): the others are skipped
	// without counting towards Limit. A scan across nodes asks each node
	// for the shards it covers.
	ShardSet []int
	Shards   int
	// Now is the time (Unix ms) used to hide expired keys; 0 means the
	// store's clock.
	Now int64
}

// KeyValue is a scan entry.
type KeyValue struct {
	Key   []byte
	Value Value
}

// ScanResult is one page of a scan.
type ScanResult struct {
	Entries []KeyValue
	// Next is the key to pass as After for the next page; nil when done.
	Next []byte
}

// NamespaceStats counts a namespace's keys.
type NamespaceStats struct {
	Name string
	// Keys counts stored keys, including expired keys not yet swept.
	Keys int64
	// Expires counts keys that carry an expiry.
	Expires int64
}
