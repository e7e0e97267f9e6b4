package primary

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/storage"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// Authority is what the engine needs from the control plane, for one
// shard at a time. The control plane implements it in its replicated
// state machine, each call deciding with failover's rules (Renew,
// ISRRecord.Apply, Decide) on its own clock.
type Authority interface {
	// Report tells the control plane this replica's log position (it is
	// also the failure detector's heartbeat) and returns the shard's
	// current assignment. A replica learns of its promotion here.
	Report(ctx context.Context, shard int, st ReplicaStatus) (Assignment, error)
	// Renew asks for the lease of epoch for holder (failover.Renew).
	Renew(ctx context.Context, shard int, holder failover.NodeID, epoch failover.Epoch) (failover.Lease, error)
	// ProposeISR asks to replace the in-sync record (ISRRecord.Apply). It
	// returns the record after the attempt, also with an error when the
	// proposal was refused, or a zero record when it could not tell.
	ProposeISR(ctx context.Context, shard int, p failover.ISRProposal) (failover.ISRRecord, error)
}

// ReplicaStatus is what a replica reports to the control plane: the
// fields failover.Decide compares.
type ReplicaStatus struct {
	Node      failover.NodeID
	Epoch     failover.Epoch // highest epoch this replica has seen
	Applied   failover.LSN
	LastEpoch failover.Epoch // the epoch of the entry at Applied
}

// Assignment is the control plane's current word on a shard.
type Assignment struct {
	Epoch   failover.Epoch
	Primary failover.NodeID // 0: none
	// ISR is the epoch's in-sync record; a promoted node starts its
	// tracker from it (failover.NewISR).
	ISR failover.ISRRecord
}

// Role is what a node is for a shard.
type Role uint8

// The roles.
const (
	Replica Role = iota
	Primary
)

// String returns "replica" or "primary".
func (r Role) String() string {
	if r == Primary {
		return "primary"
	}
	return "replica"
}

// Errors callers branch on. Each comes wrapped in a *kv.Error carrying
// the code for the edge.
var (
	// ErrNotPrimary: this node is not the shard's primary (NOT_LEADER,
	// with the primary in the message when known).
	ErrNotPrimary = errors.New("not the primary")
	// ErrTooStale: a replica read's lag exceeds the caller's bound
	// (UNAVAILABLE; a fresher replica or the primary may serve it).
	ErrTooStale = errors.New("replica too stale")
	// ErrUnknownShard: the shard was never added (NOT_FOUND).
	ErrUnknownShard = errors.New("unknown shard")
	// ErrStopped: the shard is stopped, because the engine closed or its
	// storage failed (UNAVAILABLE).
	ErrStopped = errors.New("shard stopped")
	// ErrRemoved: the shard was removed from this node (its namespace was
	// dropped) while the call waited (UNAVAILABLE, or TIMEOUT when a
	// write had entered the log).
	ErrRemoved = errors.New("shard removed")
)

// Lag is how far a replica's local state may be behind the primary's.
type Lag struct {
	// LSN is how many entries the primary had, when it last told this
	// node, that this node has not applied.
	LSN uint64
	// Time bounds how old the local state is: the time since this node
	// last knew itself to hold everything the primary had (measured from
	// the arrival of that news, so it understates by its one-way network
	// delay). A primary holding its lease has 0; a node that never knew
	// has math.MaxInt64.
	Time time.Duration
}

// ReadResult is a read served locally.
type ReadResult struct {
	Value kv.Value
	Found bool
	Role  Role
	Epoch failover.Epoch
	Lag   Lag
}

// Status is a snapshot of a shard replica's state, for tests, metrics and
// the control plane's view.
type Status struct {
	Shard     int
	Role      Role
	Epoch     failover.Epoch
	Primary   failover.NodeID
	Applied   failover.LSN
	LastEpoch failover.Epoch
	Lag       Lag
	// Lost counts the writes this node has moved aside (LostWrites);
	// LostUnrecorded of them had already left the retained tail, so only
	// their number was kept (raise Config.TailEntries if it is not 0).
	Lost           uint64
	LostUnrecorded uint64
	// InSync is the primary's in-sync set (nil on a replica).
	InSync []failover.NodeID
	// Failover is the shard's lease and in-sync bounds (the engine's, or
	// its ShardConfig's).
	Failover failover.Config
	// Lease is the primary's latest grant from the control plane, whose
	// Duration is the control plane's lease for the shard (zero on a
	// replica and before the first grant).
	Lease failover.Lease
	// Degraded counts writes admitted with fewer in-sync replicas than
	// the policy's K (AckPolicy.AllowDegrade).
	Degraded uint64
	// NeedSnapshot: the replica waits for a snapshot before it applies or
	// acks anything.
	NeedSnapshot bool
	// ISRLeft and ISRJoined count the replicas that left and joined the
	// in-sync set while this node was primary (each also logged).
	ISRLeft, ISRJoined uint64
}

// LostWrite is a write set aside when this node met a primary whose log
// does not contain it: the old primary's unreplicated, possibly
// acknowledged suffix. It is kept, never merged back.
type LostWrite struct {
	Epoch failover.Epoch
	LSN   failover.LSN
	Batch kv.Batch
}

// Engine runs the primary/replica engine of one node: for every shard
// added, the log loop, the control-plane ticker and, while primary, one
// sender per replica. It is safe for concurrent use.
type Engine struct {
	cfg   Config
	ep    transport.Endpoint
	store *storage.Store
	auth  Authority
	hlc   *hlc.Clock

	// ctx is the parent of every shard's context; Close cancels it with
	// ErrStopped. wg counts every goroutine of every shard.
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup

	// lifecycle serializes AddShard and RemoveShard of the same engine:
	// a shard's persisted state is read (AddShard) or deleted
	// (RemoveShard) under it, never both at once. Only they take it, so
	// no request waits for it.
	lifecycle sync.Mutex

	mu struct {
		sync.RWMutex
		shards map[int]*shard
		closed bool
	}
}

// New returns an engine for node cfg.NodeID that keeps its shards in st
// and talks to peers over ep and to the control plane through auth. It
// registers the KindPrimary handler on ep. The engine does not own ep or
// st: Close stops the engine's goroutines only.
func New(cfg Config, ep transport.Endpoint, st *storage.Store, auth Authority) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		start := time.Now()
		cfg.Clock = func() int64 { return int64(time.Since(start)) }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Owns == nil {
		cfg.Owns = func(ns string) bool { return !strings.HasPrefix(ns, "_") }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg, ep: ep, store: st, auth: auth,
		hlc: hlc.New(func() int64 { return cfg.Now().UnixNano() })}
	e.ctx, e.cancel = context.WithCancelCause(context.Background())
	e.mu.shards = make(map[int]*shard)
	ep.Handle(KindPrimary, transport.HandlerFuncs{OnDeliver: e.deliver, OnServe: e.serve})
	return e, nil
}

// AddShard starts keeping shard: it recovers the replica's position from
// storage and starts its goroutines. The node starts as a replica; the
// control plane makes it primary.
func (e *Engine) AddShard(shard int, sc ShardConfig) error {
	if !slices.Contains(sc.Members, e.cfg.NodeID) {
		return fmt.Errorf("add shard %d: node %d is not among members %v", shard, e.cfg.NodeID, sc.Members)
	}
	if err := sc.Policy.Validate(len(sc.Members) - 1); err != nil {
		return fmt.Errorf("add shard %d: %w", shard, err)
	}
	cfg := e.cfg
	if sc.Failover != (failover.Config{}) {
		cfg = cfg.WithFailover(sc.Failover)
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("add shard %d: %w", shard, err)
		}
	}
	e.lifecycle.Lock()
	defer e.lifecycle.Unlock()
	if _, err := e.shard(shard); err == nil {
		return fmt.Errorf("add shard %d: already added", shard)
	}
	s, err := newShard(e, shard, cfg, sc)
	if err != nil {
		return fmt.Errorf("add shard %d: %w", shard, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.closed {
		s.cancel(ErrStopped)
		return kv.Errorf(kv.CodeUnavailable, "add shard %d: %w", shard, ErrStopped)
	}
	e.mu.shards[shard] = s
	s.start()
	return nil
}

// RemoveShard stops keeping shard, for good (its namespace was dropped):
// it stops the shard's goroutines and waits for them, fails the shard's
// pending calls with ErrRemoved (a write that had entered the log with
// TIMEOUT, outcome unknown), and deletes the shard's persisted log
// position and retained log, so that a shard added later under the same
// id starts empty. It leaves the rows alone (deleting a dropped
// namespace's rows is the caller's business) and keeps the shard's lost
// writes in LostNamespace (LostWrites still returns them): they may be
// acknowledged writes, the user's data to recover, not the engine's to
// throw away.
//
// Removing a shard that is not here fails with ErrUnknownShard
// (NOT_FOUND). If deleting the persisted state fails, the shard stays
// listed, stopped, and RemoveShard can be called again.
//
// The wait for the goroutines holds no lock of the engine's: a goroutine
// may be inside an Authority call that waits on the caller's own locks
// (the control plane's view reload), so the caller should not hold those
// while it removes a shard either.
func (e *Engine) RemoveShard(ctx context.Context, shard int) error {
	s, err := e.shard(shard)
	if err != nil {
		return fmt.Errorf("remove shard: %w", err)
	}
	s.stopped.Store(true)
	s.cancel(ErrRemoved)
	s.wg.Wait()
	e.lifecycle.Lock()
	defer e.lifecycle.Unlock()
	if err := s.deleteState(ctx); err != nil {
		return fmt.Errorf("remove shard %d: %w", shard, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.shards[shard] == s {
		delete(e.mu.shards, shard)
	}
	return nil
}

// Close stops every goroutine of the engine and waits for them. Pending
// writes fail with a TIMEOUT (outcome unknown).
func (e *Engine) Close() error {
	e.mu.Lock()
	e.mu.closed = true
	e.mu.Unlock()
	e.cancel(ErrStopped)
	e.wg.Wait()
	return nil
}

func (e *Engine) shard(id int) (*shard, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	s := e.mu.shards[id]
	if s == nil {
		return nil, kv.Errorf(kv.CodeNotFound, "shard %d: %w", id, ErrUnknownShard)
	}
	return s, nil
}

// Write appends b to the shard's log as its primary and returns the
// results once the shard's ack policy is met: async when applied here,
// semi when K replicas applied it, sync when every replica the control
// plane may promote did.
//
// Errors: NOT_LEADER (ErrNotPrimary) on a replica; UNAVAILABLE when the
// write was refused before entering the log (lease lost, not enough
// in-sync replicas, ctx ended while queued); TIMEOUT (outcome unknown)
// when it entered the log but was not acknowledged before ctx ended or
// the primary stepped down.
func (e *Engine) Write(ctx context.Context, shard int, b kv.Batch) ([]kv.Result, error) {
	s, err := e.shard(shard)
	if err != nil {
		return nil, err
	}
	return s.write(ctx, b)
}

// Read serves a read from this node's copy of the shard with its lag. It
// refuses (UNAVAILABLE wrapping ErrTooStale) when the lag's Time exceeds
// maxStaleness; a negative maxStaleness accepts any lag, and 0 accepts
// only the primary holding its lease.
func (e *Engine) Read(ctx context.Context, shard int, ns string, key []byte, maxStaleness time.Duration) (ReadResult, error) {
	s, err := e.shard(shard)
	if err != nil {
		return ReadResult{}, err
	}
	st := s.status()
	if maxStaleness >= 0 && st.Lag.Time > maxStaleness {
		return ReadResult{}, kv.Errorf(kv.CodeUnavailable, "shard %d on node %d: %w: lag %v (%d entries), bound %v",
			shard, e.cfg.NodeID, ErrTooStale, st.Lag.Time, st.Lag.LSN, maxStaleness)
	}
	v, ok, err := e.store.Get(ctx, ns, key)
	if err != nil {
		return ReadResult{}, err
	}
	return ReadResult{Value: v, Found: ok, Role: st.Role, Epoch: st.Epoch, Lag: st.Lag}, nil
}

// Status returns the shard replica's state.
func (e *Engine) Status(shard int) (Status, error) {
	s, err := e.shard(shard)
	if err != nil {
		return Status{}, err
	}
	return s.status(), nil
}

// LostWrites returns the writes this node has set aside for shard, by
// epoch and LSN.
func (e *Engine) LostWrites(ctx context.Context, shard int) ([]LostWrite, error) {
	prefix := lostKey(shard, 0, 0)[:8]
	var out []LostWrite
	var after []byte
	for {
		res, err := e.store.Scan(ctx, kv.ScanRequest{Namespace: LostNamespace, Prefix: prefix, After: after, Limit: 1000, Now: math.MaxInt64 - 1})
		if err != nil {
			return nil, fmt.Errorf("lost writes of shard %d: %w", shard, err)
		}
		for _, kvp := range res.Entries {
			if len(kvp.Key) != 24 {
				return nil, fmt.Errorf("lost writes of shard %d: %w: key %x", shard, ErrCorrupt, kvp.Key)
			}
			lw := LostWrite{Epoch: failover.Epoch(beU64(kvp.Key[8:])), LSN: failover.LSN(beU64(kvp.Key[16:]))}
			if lw.Batch, err = kv.DecodeBatch(kvp.Value.Data); err != nil {
				return nil, fmt.Errorf("lost writes of shard %d: %w", shard, err)
			}
			out = append(out, lw)
		}
		if res.Next == nil {
			return out, nil
		}
		after = res.Next
	}
}

// owns says whether this engine replicates ns; never its own bookkeeping.
func (e *Engine) owns(ns string) bool { return ns != LostNamespace && e.cfg.Owns(ns) }

// rowScope is the rows a shard covers (Config.Scope).
type rowScope struct {
	e             *Engine
	ns            string // "": every owned namespace
	index, shards int
}

func (e *Engine) scope(shard int) rowScope {
	if e.cfg.Scope != nil {
		if ns, index, shards, ok := e.cfg.Scope(shard); ok {
			return rowScope{e: e, ns: ns, index: index, shards: shards}
		}
		// Unknown to the scope (a dropped namespace): cover nothing
		// rather than every namespace.
		return rowScope{e: e, ns: LostNamespace, index: 0, shards: 1}
	}
	return rowScope{e: e, index: shard, shards: e.cfg.Shards}
}

func (r rowScope) covers(ns string) bool {
	if !r.e.owns(ns) {
		return false
	}
	return r.ns == "" || r.ns == ns
}

func beU64(b []byte) uint64 {
	var v uint64
	for _, c := range b[:8] {
		v = v<<8 | uint64(c)
	}
	return v
}

// deliver routes a one-way message to its shard. It runs on the
// endpoint's delivery goroutine, so it never blocks: appends are queued
// for the shard's loop (and dropped when the queue is full: the primary
// resends), acks and stale notices are handled under the shard's lock.
func (e *Engine) deliver(from transport.NodeID, _ transport.Kind, payload []byte) {
	if len(payload) == 0 {
		return
	}
	at := e.cfg.Clock()
	switch payload[0] {
	case msgAppend:
		m, err := decodeAppend(payload[1:])
		if err != nil {
			return
		}
		if s, err := e.shard(m.Shard); err == nil {
			select {
			case s.appends <- inAppend{from: failover.NodeID(from), at: at, m: m}:
			default:
			}
		}
	case msgAck:
		m, err := decodeAck(payload[1:])
		if err != nil {
			return
		}
		if s, err := e.shard(m.Shard); err == nil {
			s.onAck(failover.NodeID(from), m, at)
		}
	case msgStale:
		m, err := decodeStale(payload[1:])
		if err != nil {
			return
		}
		if s, err := e.shard(m.Shard); err == nil {
			s.observeEpoch(m.Epoch, 0)
		}
	}
}

// serve answers snapshot requests.
func (e *Engine) serve(ctx context.Context, from transport.NodeID, _ transport.Kind, payload []byte) ([]byte, error) {
	if len(payload) == 0 || payload[0] != msgSnapshot {
		return nil, kv.Errorf(kv.CodeNotSupported, "primary: unknown call")
	}
	req, err := decodeSnapshotReq(payload[1:])
	if err != nil {
		return nil, kv.Errorf(kv.CodeInvalid, "primary: %w", err)
	}
	s, err := e.shard(req.Shard)
	if err != nil {
		return nil, err
	}
	return s.serveSnapshot(ctx, failover.NodeID(from), req)
}
