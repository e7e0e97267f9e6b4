package node

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/leaderless"
	"github.com/fulcrumdb/fulcrum/internal/merkle"
	"github.com/fulcrumdb/fulcrum/internal/transport"
	"golang.org/x/time/rate"
)

// Errors callers branch on. The errors returned by Put, Delete and Get are
// *kv.Error values (code for the edge) wrapping these.
var (
	// ErrNotReplica: a write was asked of a node that is not one of the
	// key's N home replicas; only those may mint its versions (a dot is one
	// past the coordinator's own counter for the key, which only a replica
	// holding the key's state knows). Forward to a home replica. Code
	// NOT_LEADER.
	ErrNotReplica = errors.New("leaderless: not a home replica of the key")
	// ErrIndeterminate: a failed write may nevertheless have been applied
	// on some replicas; it is not rolled back and later reads may see it.
	ErrIndeterminate = errors.New("leaderless: write indeterminate")
	// ErrClosed: the engine is closed. Code UNAVAILABLE.
	ErrClosed = errors.New("leaderless: engine closed")
)

// hintNamespace is the Store namespace holding hints (a legal namespace
// name, so a storage.Store accepts it; the control plane must not hand it
// to users).
const hintNamespace = "_hints"

// Config configures an Engine. New copies it; zero durations and limits
// take the defaults of DefaultConfig.
type Config struct {
	// Self is this node's id; it must equal Endpoint.ID().
	Self uint64
	// Endpoint is the node's network attachment; the engine registers its
	// handler for KindLeaderless on it. The engine does not close it.
	Endpoint transport.Endpoint
	// Store keeps states and hints. The engine does not close it.
	Store Store
	// Clock stamps writes (last-writer-wins order) and hints, and follows
	// the timestamps the node receives.
	Clock *hlc.Clock
	// Now is the wall clock for deadlines and hint expiry; nil: time.Now.
	Now func() time.Time
	// Nodes returns the cluster's current members (control plane). Home
	// replicas not in it are planned as down; hints for owners not in it
	// are kept but not delivered. Nil: every node is a member.
	Nodes func() []uint64
	// Preference returns the preference list of a key: its shard's home
	// replicas (the first N) followed by every other node in a
	// deterministic order (the fallbacks). Required.
	Preference func(ns string, key []byte) []uint64
	// RequestTimeout bounds a request whose ctx has no earlier deadline.
	RequestTimeout time.Duration
	// HintWindow is how long a fallback keeps a hint before dropping it.
	HintWindow time.Duration
	// HintLimit caps the hints held; beyond it a fallback refuses writes
	// for other owners (the coordinator then tries elsewhere or fails).
	HintLimit int
	// HandoffInterval is the period of the hint delivery loop; negative
	// disables the loop (HandoffOnce still works).
	HandoffInterval time.Duration
	// ProbeTimeout bounds the probe of an owner before delivering to it.
	ProbeTimeout time.Duration
	// HandoffBatch caps the hints delivered to one owner per round.
	HandoffBatch int
	// Shard maps a key to its shard (placement.ShardOf over the
	// namespace's shard count). With Shards it enables anti-entropy; nil
	// disables it.
	Shard func(ns string, key []byte) int
	// Shards returns the shards of leaderless namespaces this node is a
	// home replica of, with their home replicas: what anti-entropy
	// compares, and with whom. Nil disables anti-entropy.
	Shards func() []ShardReplicas
	// AntiEntropyInterval is the period of the anti-entropy loop;
	// negative disables the loop (AntiEntropyOnce still works).
	AntiEntropyInterval time.Duration
	// AntiEntropyBandwidth caps the bytes per second of states anti-entropy
	// pulls and pushes, over all peers, so that repairing a replica that
	// was away long does not crowd out client traffic (bursts up to
	// max(the rate, 64 KiB)). 0: no cap.
	AntiEntropyBandwidth int64
	// TreeDepth is the depth of every shard's Merkle tree (2^depth
	// leaves); all nodes must use the same.
	TreeDepth int
	// TombstoneGrace is how long a deleted key's tombstone is kept: a key
	// whose state holds only tombstones, the newest older than this (by
	// its hlc timestamp against Now), is removed by the tombstone sweep.
	// Until then a replica that missed the delete is overruled by the
	// tombstone; after it, a replica (or hint) still holding the deleted
	// value brings it back (the resurrection problem). So it must exceed
	// how long an old copy can still be travelling: a hint's life
	// (HintWindow), the time anti-entropy takes to reach a replica that
	// missed the delete (a round may just have passed, or fail once: two
	// AntiEntropyIntervals), and a write's background sends
	// (RequestTimeout); Validate refuses less. Above that floor it is how
	// long a replica may be away (down, partitioned) and still rejoin
	// safely: one away longer must be wiped before it rejoins. Zero: the
	// default (DefaultConfig), raised to the floor plus an hour if that is
	// more; negative: tombstones are never collected.
	TombstoneGrace time.Duration
	// TombstoneSweepInterval is the period of the tombstone sweep, which
	// reads every row of the namespaces it covers; negative disables the
	// loop (CollectTombstonesOnce still works). A tombstone lives between
	// TombstoneGrace and TombstoneGrace plus this.
	TombstoneSweepInterval time.Duration
	// Namespaces returns the leaderless namespaces, eventual and weak,
	// whose rows this node may hold: the tombstone sweep covers them and
	// the namespaces of Shards. Nil: only those of Shards (which lists no
	// weak namespace, so their tombstones would stay).
	Namespaces func() []string
	// Logger receives background events (hint delivery failures); nil
	// discards them.
	Logger *slog.Logger

	// testPage, when positive, replaces both pageKeys and scanChunk, so
	// that tests can exercise anti-entropy's paging with a few keys.
	testPage int
}

// DefaultConfig returns the defaults of the optional fields.
func DefaultConfig() Config {
	return Config{
		RequestTimeout:  time.Second,
		HintWindow:      time.Hour,
		HintLimit:       100_000,
		HandoffInterval: time.Second,
		ProbeTimeout:    200 * time.Millisecond,
		HandoffBatch:    256,

		AntiEntropyInterval: 30 * time.Second,
		TreeDepth:           10,

		// A day: far above the floor Validate enforces with the other
		// defaults (an hour of hints plus a minute of anti-entropy), so
		// that what bounds it in practice is an operator's time to bring
		// back a failed node, which a day of tombstones (one small record
		// per deleted key) comfortably pays for.
		TombstoneGrace:         24 * time.Hour,
		TombstoneSweepInterval: time.Hour,
	}
}

// minTombstoneGrace is the floor of TombstoneGrace for c's (defaulted)
// settings: the longest an old copy of a deleted value can still reach a
// replica through the engine's own machinery, a hint delivered at the end
// of its window, anti-entropy reaching a replica that missed the delete
// (up to two periods: a round may have just passed, or fail once), or a
// write's background sends. A tombstone collected earlier lets such a
// copy back.
func minTombstoneGrace(c *Config) time.Duration {
	return c.HintWindow + 2*max(c.AntiEntropyInterval, 0) + c.RequestTimeout
}

// Validate checks the required fields and cross-field rules.
func (c *Config) Validate() error {
	switch {
	case c.Self == 0:
		return errors.New("leaderless node: Config.Self is required")
	case c.Endpoint == nil:
		return errors.New("leaderless node: Config.Endpoint is required")
	case uint64(c.Endpoint.ID()) != c.Self:
		return fmt.Errorf("leaderless node: Config.Self is %d, Endpoint.ID() %d", c.Self, c.Endpoint.ID())
	case c.Store == nil:
		return errors.New("leaderless node: Config.Store is required")
	case c.Clock == nil:
		return errors.New("leaderless node: Config.Clock is required")
	case c.Preference == nil:
		return errors.New("leaderless node: Config.Preference is required")
	case (c.Shard == nil) != (c.Shards == nil):
		return errors.New("leaderless node: Config.Shard and Config.Shards go together (anti-entropy)")
	case c.TreeDepth < 0 || c.TreeDepth > merkle.MaxDepth:
		return fmt.Errorf("leaderless node: Config.TreeDepth %d outside 0..%d", c.TreeDepth, merkle.MaxDepth)
	}
	if c.TombstoneGrace > 0 {
		d := *c
		d.applyDefaults()
		if floor := minTombstoneGrace(&d); c.TombstoneGrace <= floor {
			return fmt.Errorf("leaderless node: Config.TombstoneGrace %v must exceed HintWindow + 2*AntiEntropyInterval + RequestTimeout = %v, or a replica that missed a delete can bring the value back", c.TombstoneGrace, floor)
		}
	}
	return nil
}

func (c *Config) applyDefaults() {
	d := DefaultConfig()
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.HintWindow <= 0 {
		c.HintWindow = d.HintWindow
	}
	if c.HintLimit <= 0 {
		c.HintLimit = d.HintLimit
	}
	if c.HandoffInterval == 0 {
		c.HandoffInterval = d.HandoffInterval
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = d.ProbeTimeout
	}
	if c.HandoffBatch <= 0 {
		c.HandoffBatch = d.HandoffBatch
	}
	if c.AntiEntropyInterval == 0 {
		c.AntiEntropyInterval = d.AntiEntropyInterval
	}
	if c.TreeDepth == 0 {
		c.TreeDepth = d.TreeDepth
	}
	if c.TombstoneGrace == 0 {
		c.TombstoneGrace = max(d.TombstoneGrace, minTombstoneGrace(c)+time.Hour)
	}
	if c.TombstoneSweepInterval == 0 {
		c.TombstoneSweepInterval = d.TombstoneSweepInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// stripes is the number of per-key locks; keys hash onto them.
const stripes = 256

// Engine is the leaderless engine of one node. Its methods are safe for
// concurrent use.
type Engine struct {
	cfg    Config
	self   leaderless.NodeID
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // drivers, calls, the handoff, anti-entropy and tombstone loops

	// keyLocks serialize the read-merge-write of one key (and of one hint
	// record): a lock is held across the store I/O of that key only.
	keyLocks [stripes]sync.Mutex

	// mu guards the hint index and the tree map. Lock order: keyLocks
	// stripes (in index order when several), then a shardTree's mu, then
	// mu.
	mu struct {
		sync.Mutex
		hints *leaderless.Hints
		trees map[treeID]*shardTree
	}

	// exchanged records when each peer last finished an anti-entropy
	// exchange of a namespace with this node (served its last opRanges
	// page here), Unix ns: the loop leaves a pair the peer has exchanged
	// since the loop's previous round alone. It is a leaf lock.
	exchanged struct {
		sync.Mutex
		at map[peerNamespace]int64
	}

	// life orders request starts against Close: no goroutine is added to
	// wg once Close has begun waiting.
	life struct {
		sync.Mutex
		closed bool
	}

	// unindexed is set when the store holds hint records the index could
	// not take (at New); expiry then always scans the store.
	unindexed atomic.Bool

	// pageKeys and scanChunk are the anti-entropy limits of those names
	// (Config.testPage in tests).
	pageKeys, scanChunk int

	stats counters
	// aeLimit paces anti-entropy's traffic (nil: unlimited).
	aeLimit *rate.Limiter
}

// counters are the engine's metrics; they only grow.
type counters struct {
	writesOK, writesFailed, writesIndeterminate, writesHinted atomic.Uint64
	readsOK, readsFailed                                      atomic.Uint64
	repairsSent, repairsFailed                                atomic.Uint64
	hintsStored, hintsDelivered, hintsExpired, hintsRefused   atomic.Uint64
	probesFailed, deliveriesFailed                            atomic.Uint64
	aeRounds, aeFailed, aeRanges, aePulled, aePushed          atomic.Uint64
	tombstonesCollected, tombstonesRefused                    atomic.Uint64
	// aeLastFull is when a round last compared every shard with every
	// peer without a failure (Unix ns; 0: never).
	aeLastFull atomic.Int64
}

// Stats are the engine's counts, for metrics. Everything but HintsPending
// only grows.
type Stats struct {
	WritesOK             uint64 // writes that reached W
	WritesFailed         uint64 // writes that did not
	WritesIndeterminate  uint64 // failed writes that may have been applied
	WritesSloppy         uint64 // successful writes with a fallback's ack
	ReadsOK, ReadsFailed uint64
	RepairsSent          uint64 // read repairs sent
	RepairsFailed        uint64 // read repairs refused or lost
	HintsPending         int    // hints held now
	HintsStored          uint64 // hint records written (new or merged)
	HintsDelivered       uint64 // hints handed to their owner and removed
	HintsExpired         uint64 // hints dropped after HintWindow
	HintsRefused         uint64 // writes refused because the hint store was full
	ProbesFailed         uint64 // owners with hints that did not answer a probe
	DeliveriesFailed     uint64 // hint deliveries that failed (retried later)
	AntiEntropyRounds    uint64 // shard-with-peer comparisons completed
	AntiEntropyFailed    uint64 // comparisons that failed (peer away)
	AntiEntropyRanges    uint64 // differing key-hash ranges exchanged
	AntiEntropyPulled    uint64 // peer states merged here
	AntiEntropyPushed    uint64 // local states sent to peers
	// AntiEntropyLastFull is when a round last compared every shard with
	// every peer without a failure (zero: never).
	AntiEntropyLastFull time.Time
	// TombstonesCollected counts the keys the tombstone sweep removed
	// (only tombstones, older than TombstoneGrace).
	TombstonesCollected uint64
	// TombstonesRefused counts states past their grace that arrived (from
	// anti-entropy, a repair or a hint) for a key this node held nothing
	// of, and were not stored: a tombstone this node collected before its
	// sender did.
	TombstonesRefused uint64
}

// New starts the engine: it rebuilds the hint index from the store,
// registers the handler on the endpoint and starts the handoff,
// anti-entropy and tombstone sweep loops (those configured).
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.applyDefaults()
	e := &Engine{cfg: cfg, self: nodeID(cfg.Self), pageKeys: pageKeys, scanChunk: scanChunk}
	if cfg.testPage > 0 {
		e.pageKeys, e.scanChunk = cfg.testPage, cfg.testPage
	}
	e.mu.hints = leaderless.NewHints(cfg.HintLimit)
	e.mu.trees = make(map[treeID]*shardTree)
	e.exchanged.at = make(map[peerNamespace]int64)
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if err := e.loadHints(e.ctx); err != nil {
		e.cancel()
		return nil, err
	}
	if cfg.AntiEntropyBandwidth > 0 {
		e.aeLimit = rate.NewLimiter(rate.Limit(cfg.AntiEntropyBandwidth), int(max(cfg.AntiEntropyBandwidth, aeMinBurst)))
	}
	cfg.Endpoint.Handle(KindLeaderless, transport.HandlerFuncs{OnServe: e.serve})
	if cfg.HandoffInterval > 0 {
		e.wg.Add(1)
		go e.every(cfg.HandoffInterval, "hinted handoff round", e.HandoffOnce)
	}
	if cfg.Shards != nil && cfg.AntiEntropyInterval > 0 {
		e.wg.Add(1)
		go e.antiEntropyLoop()
	}
	if cfg.TombstoneGrace > 0 && cfg.TombstoneSweepInterval > 0 {
		e.wg.Add(1)
		go e.every(cfg.TombstoneSweepInterval, "tombstone sweep", e.CollectTombstonesOnce)
	}
	return e, nil
}

// Close stops every goroutine the engine started and waits for them.
// Requests in flight fail; calls arriving later are refused.
func (e *Engine) Close() error {
	e.life.Lock()
	e.life.closed = true
	e.life.Unlock()
	e.cancel()
	e.wg.Wait()
	return nil
}

// begin counts a request in wg, or refuses it once Close has started. The
// caller hands the count to the request's driver, or calls wg.Done.
func (e *Engine) begin() error {
	e.life.Lock()
	defer e.life.Unlock()
	if e.life.closed {
		return closedError()
	}
	e.wg.Add(1)
	return nil
}

// Stats returns the engine's counts.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	pending := e.mu.hints.Len()
	e.mu.Unlock()
	c := &e.stats
	return Stats{
		WritesOK:            c.writesOK.Load(),
		WritesFailed:        c.writesFailed.Load(),
		WritesIndeterminate: c.writesIndeterminate.Load(),
		WritesSloppy:        c.writesHinted.Load(),
		ReadsOK:             c.readsOK.Load(),
		ReadsFailed:         c.readsFailed.Load(),
		RepairsSent:         c.repairsSent.Load(),
		RepairsFailed:       c.repairsFailed.Load(),
		HintsPending:        pending,
		HintsStored:         c.hintsStored.Load(),
		HintsDelivered:      c.hintsDelivered.Load(),
		HintsExpired:        c.hintsExpired.Load(),
		HintsRefused:        c.hintsRefused.Load(),
		ProbesFailed:        c.probesFailed.Load(),
		DeliveriesFailed:    c.deliveriesFailed.Load(),

		AntiEntropyRounds: c.aeRounds.Load(),
		AntiEntropyFailed: c.aeFailed.Load(),
		AntiEntropyRanges: c.aeRanges.Load(),
		AntiEntropyPulled: c.aePulled.Load(),
		AntiEntropyPushed: c.aePushed.Load(),
		AntiEntropyLastFull: func() time.Time {
			if ns := c.aeLastFull.Load(); ns != 0 {
				return time.Unix(0, ns)
			}
			return time.Time{}
		}(),
		TombstonesCollected: c.tombstonesCollected.Load(),
		TombstonesRefused:   c.tombstonesRefused.Load(),
	}
}

// keyLock returns the stripe guarding (ns, key).
func (e *Engine) keyLock(ns string, key []byte) *sync.Mutex {
	h := fnv.New64a()
	h.Write([]byte(ns))
	h.Write([]byte{0})
	h.Write(key)
	return &e.keyLocks[h.Sum64()%stripes]
}

func (e *Engine) now() int64 { return e.cfg.Now().UnixNano() }

// nodeID converts a transport/versionvec node id to the coordinator's.
func nodeID(id uint64) leaderless.NodeID { return leaderless.NodeID(strconv.FormatUint(id, 10)) }

// parseNode converts a coordinator node id back; ids always come from
// nodeID, so a failure is a broken invariant.
func parseNode(n leaderless.NodeID) uint64 {
	id, err := strconv.ParseUint(string(n), 10, 64)
	if err != nil {
		panic(fmt.Sprintf("leaderless node: node id %q is not a number", n))
	}
	return id
}

// closedError is the refusal of a closed engine.
func closedError() error { return kv.Errorf(kv.CodeUnavailable, "%w", ErrClosed) }
