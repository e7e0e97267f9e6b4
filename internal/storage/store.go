package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/placement"
)

// SyncMode is the durability policy.
type SyncMode string

// Durability policies; see the package documentation.
const (
	SyncAlways   SyncMode = "always"
	SyncInterval SyncMode = "interval"
	SyncNone     SyncMode = "none"
)

// ErrClosed is returned by operations on a closed store. It is UNAVAILABLE:
// a closing node cannot serve, another may.
var ErrClosed = kv.Errorf(kv.CodeUnavailable, "storage is closed")

// Options configure a Store. Zero fields take defaults.
type Options struct {
	// Dir is the data directory.
	Dir string
	// FS is the filesystem; nil means the operating system's.
	FS vfs.FS
	// Sync is the durability policy; default SyncAlways.
	Sync SyncMode
	// SyncInterval is the WAL fsync period with SyncInterval; default 1s.
	SyncInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// SweepInterval is how often expired keys are deleted; default 100ms.
	SweepInterval time.Duration
	// SweepBatch caps the keys deleted per sweep round; default 1000.
	SweepBatch int
	// Limits bound key and value sizes; zero fields take kv defaults.
	Limits kv.Limits
	// CacheSize is Pebble's block cache in bytes; default 64 MiB.
	CacheSize int64
	// MemTableSize is Pebble's memtable size; default 64 MiB.
	MemTableSize int64
	// RowCacheSize bounds the in-memory cache of decoded rows in front of
	// Pebble (hot reads and read-before-write); default 64 MiB, negative
	// disables it.
	RowCacheSize int64
	// MaxGroup caps the batches committed together; default 1024.
	MaxGroup int
	// Logger receives storage events; nil discards them.
	Logger *slog.Logger
}

func (o *Options) applyDefaults() error {
	if o.Dir == "" {
		return errors.New("storage: Options.Dir is required")
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	switch o.Sync {
	case "":
		o.Sync = SyncAlways
	case SyncAlways, SyncInterval, SyncNone:
	default:
		return fmt.Errorf("storage: unknown sync mode %q (want always, interval or none)", o.Sync)
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 100 * time.Millisecond
	}
	if o.SweepBatch <= 0 {
		o.SweepBatch = 1000
	}
	if o.Limits.MaxKeySize <= 0 {
		o.Limits.MaxKeySize = kv.DefaultMaxKeySize
	}
	if o.Limits.MaxValueSize <= 0 {
		o.Limits.MaxValueSize = kv.DefaultMaxValueSize
	}
	if o.Limits.MaxValueSize > kv.HardMaxValueSize {
		return fmt.Errorf("storage: max value size %d exceeds the hard maximum %d", o.Limits.MaxValueSize, kv.HardMaxValueSize)
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 64 << 20
	}
	if o.MemTableSize <= 0 {
		o.MemTableSize = 64 << 20
	}
	if o.RowCacheSize == 0 {
		o.RowCacheSize = 64 << 20
	}
	if o.MaxGroup <= 0 {
		o.MaxGroup = 1024
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Store is a durable, namespaced key-value store. It is safe for concurrent
// use.
type Store struct {
	opts  Options
	db    *pebble.DB
	cache *rowCache // nil when disabled
	// blockCache is Pebble's block cache.
	blockCache *pebble.Cache
	clock      *hlc.Clock

	reqs    chan *request
	synced  chan *group // groups waiting for their fsync (SyncAlways)
	closing chan struct{}
	// ctx ends when Close starts; background work uses it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
	// enqueue guards sends to reqs against Close: once closed is set under
	// the write lock no request can enter the queue, and every request that
	// entered before is answered by the applier's final drain.
	enqueue struct {
		sync.RWMutex
		closed bool
	}
	// reads guards direct Pebble reads (Get, Scan, Sync, SweepOnce) against
	// Close: once closed is set under the write lock they answer ErrClosed
	// instead of touching a closed Pebble.
	reads struct {
		sync.RWMutex
		closed bool
	}

	mu struct {
		sync.RWMutex
		counts map[string]nsCounts
	}
	// failed is set when a commit failed; the store then refuses writes
	// because its in-memory state may be ahead of disk.
	failed atomic.Pointer[error]

	stats *statCounters
}

type request struct {
	ctx     context.Context
	batch   kv.Batch
	results []kv.Result
	err     error
	done    chan struct{}
}

type group struct {
	b     *pebble.Batch
	reqs  []*request
	start time.Time
}

// Open opens or creates the store in opts.Dir and starts its goroutines
// (the applier, the fsync completer or interval syncer, and the expiry
// sweeper). Close stops them.
func Open(opts Options) (*Store, error) {
	if err := opts.applyDefaults(); err != nil {
		return nil, err
	}
	s := &Store{
		opts:    opts,
		reqs:    make(chan *request, opts.MaxGroup),
		synced:  make(chan *group, 64),
		closing: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.stats = newStatCounters()
	s.clock = hlc.New(func() int64 { return opts.Now().UnixNano() })
	s.cache = newRowCache(opts.RowCacheSize)
	s.blockCache = pebble.NewCache(opts.CacheSize)
	po := &pebble.Options{
		FS:    opts.FS,
		Cache: s.blockCache,
		// Larger than Pebble's 4 MiB default: overwrites of hot keys
		// collapse in the memtable instead of being flushed and compacted
		// again and again, which was a fifth of the CPU under SET load.
		MemTableSize: uint64(opts.MemTableSize),
		Logger:       pebbleLogger{opts.Logger},
	}
	db, err := pebble.Open(opts.Dir, po)
	if err != nil {
		s.blockCache.Unref()
		s.cancel()
		return nil, fmt.Errorf("storage: open %s: %w", opts.Dir, err)
	}
	s.db = db
	rev, err := s.recover()
	if err != nil {
		db.Close()
		s.blockCache.Unref()
		s.cancel()
		return nil, err
	}
	s.wg.Add(3)
	go s.runApplier(rev)
	go s.runSyncer()
	go s.runSweeper()
	return s, nil
}

// recover loads the revision, clock and counters persisted by the last run.
func (s *Store) recover() (uint64, error) {
	var rev uint64
	if v, closer, err := s.db.Get(metaRevision); err == nil {
		rev = binary.LittleEndian.Uint64(v)
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return 0, fmt.Errorf("storage: read revision: %w", err)
	}
	if v, closer, err := s.db.Get(metaHLC); err == nil {
		s.clock.Observe(hlc.Timestamp{WallNanos: int64(binary.LittleEndian.Uint64(v)), Logical: binary.LittleEndian.Uint32(v[8:])})
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return 0, fmt.Errorf("storage: read clock: %w", err)
	}
	s.mu.counts = make(map[string]nsCounts)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixCounter}, UpperBound: []byte{prefixCounter + 1}})
	if err != nil {
		return 0, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v := it.Value()
		if len(v) != 16 {
			it.Close()
			return 0, fmt.Errorf("storage: corrupt counter record %q", it.Key())
		}
		s.mu.counts[string(it.Key()[1:])] = nsCounts{
			keys:    int64(binary.LittleEndian.Uint64(v)),
			expires: int64(binary.LittleEndian.Uint64(v[8:])),
		}
	}
	return rev, it.Close()
}

// Apply applies b atomically and in order and returns one result per
// operation. With SyncAlways it returns only after the batch is on disk. If
// ctx ends after the batch was handed to the applier, the outcome is unknown
// and the error is TIMEOUT.
func (s *Store) Apply(ctx context.Context, b kv.Batch) ([]kv.Result, error) {
	for i := range b.Ops {
		if err := kv.ValidateNamespace(b.Ops[i].Namespace); err != nil {
			return nil, err
		}
	}
	if p := s.failed.Load(); p != nil {
		return nil, kv.Errorf(kv.CodeUnavailable, "storage failed earlier: %w", *p)
	}
	r := &request{ctx: ctx, batch: b, done: make(chan struct{})}
	if err := s.enqueueRequest(ctx, r); err != nil {
		return nil, err
	}
	select {
	case <-r.done:
		return r.results, r.err
	case <-ctx.Done():
		return nil, kv.Errorf(kv.CodeTimeout, "outcome unknown: %w", ctx.Err())
	}
}

func (s *Store) enqueueRequest(ctx context.Context, r *request) error {
	s.enqueue.RLock()
	defer s.enqueue.RUnlock()
	if s.enqueue.closed {
		return ErrClosed
	}
	select {
	case s.reqs <- r:
		return nil
	case <-ctx.Done():
		return kv.Errorf(kv.CodeTimeout, "not applied: %w", ctx.Err())
	}
}

// runApplier is the single owner of write ordering: it takes every queued
// request, applies them to one batch, and commits that batch. Requests that
// did not fit the group's byte budget are carried into the next group.
func (s *Store) runApplier(rev uint64) {
	defer s.wg.Done()
	defer close(s.synced)
	pending := make([]*request, 0, s.opts.MaxGroup)
	for {
		if len(pending) == 0 {
			select {
			case r := <-s.reqs:
				pending = append(pending, r)
			case <-s.closing:
				s.refuseQueued()
				return
			}
		}
	drain:
		for len(pending) < s.opts.MaxGroup {
			select {
			case r := <-s.reqs:
				pending = append(pending, r)
			default:
				break drain
			}
		}
		var n int
		n, rev = s.commitGroup(pending, rev)
		pending = append(pending[:0], pending[n:]...)
	}
}

func (s *Store) refuseQueued() {
	for {
		select {
		case r := <-s.reqs:
			r.err = ErrClosed
			close(r.done)
		default:
			return
		}
	}
}

// maxGroupBytes caps the data of one commit group, keeping Pebble batches
// well below their size limit; the rest waits for the next group.
const maxGroupBytes = 64 << 20

func batchBytes(b *kv.Batch) int {
	n := 0
	for i := range b.Ops {
		n += len(b.Ops[i].Key) + len(b.Ops[i].Value) + 64
	}
	return n
}

// commitGroup commits a prefix of reqs as one Pebble batch and reports how
// many requests it consumed (answered, or handed to the syncer) and the new
// last revision. Every consumed request is answered exactly once.
func (s *Store) commitGroup(reqs []*request, rev uint64) (int, uint64) {
	if p := s.failed.Load(); p != nil {
		for _, r := range reqs {
			r.err = kv.Errorf(kv.CodeUnavailable, "storage failed earlier: %w", *p)
			close(r.done)
		}
		return len(reqs), rev
	}
	take := make([]*request, 0, len(reqs))
	n, size := 0, 0
	for _, r := range reqs {
		if size > maxGroupBytes {
			break
		}
		n++
		if r.ctx.Err() != nil {
			// Nobody waits for the answer: skip rather than apply an
			// operation whose caller already reported it as not done.
			r.err = kv.Errorf(kv.CodeTimeout, "not applied: %w", r.ctx.Err())
			close(r.done)
			continue
		}
		size += batchBytes(&r.batch)
		take = append(take, r)
	}
	for len(take) > 0 {
		t, bad, err := s.buildGroup(take, rev)
		if err == nil {
			return n, s.commit(t, take, rev)
		}
		if bad < 0 {
			s.fail(fmt.Errorf("build commit: %w", err))
			for _, r := range take {
				r.err = kv.Errorf(kv.CodeUnavailable, "not applied: storage failed: %w", err)
				close(r.done)
			}
			break
		}
		// Nothing was committed: answer the request that could not be
		// applied (a corrupt row, a read error) and rebuild the group
		// without it, so one bad request neither stalls nor fails others.
		take[bad].err = kv.Errorf(kv.CodeInternal, "not applied: %w", err)
		close(take[bad].done)
		take = append(take[:bad], take[bad+1:]...)
	}
	return n, rev
}

// buildGroup applies reqs to a new batch. On failure it returns the index
// of the request that failed, or -1 for a failure of the group itself.
func (s *Store) buildGroup(reqs []*request, rev uint64) (*txn, int, error) {
	t := &txn{
		b:        s.db.NewBatch(),
		db:       s.db,
		cache:    s.cache,
		overlay:  make(map[string]*cacheEntry),
		limits:   s.opts.Limits,
		rev:      rev,
		counters: make(map[string]*nsCounts),
	}
	for i, r := range reqs {
		if err := s.applyRequest(t, r); err != nil {
			t.b.Close()
			return nil, i, err
		}
	}
	if err := s.writeMeta(t); err != nil {
		t.b.Close()
		return nil, -1, err
	}
	return t, 0, nil
}

// commit publishes t's batch and returns the new last revision. The row
// cache stops serving (and accepting fills for) the touched keys before
// Pebble publishes the batch and shows the new rows after, so no read can
// see a value older than one an earlier read returned.
func (s *Store) commit(t *txn, reqs []*request, rev uint64) uint64 {
	start := time.Now()
	var inv *invalidation
	if s.cache != nil {
		inv = s.cache.begin(t.overlay, t.flushed != nil)
	}
	var err error
	logged := allLogged(reqs)
	sync := s.opts.Sync == SyncAlways && !logged
	if sync {
		err = s.db.ApplyNoSyncWait(t.b, pebble.Sync)
	} else {
		err = s.db.Apply(t.b, pebble.NoSync)
		if !logged {
			// Logged batches are not at risk: their log replays them.
			s.stats.markDirty(s.opts.Now())
		}
	}
	if s.cache != nil {
		s.cache.end(inv, err == nil)
	}
	if err != nil {
		s.fail(fmt.Errorf("commit: %w", err))
		for _, r := range reqs {
			r.results, r.err = nil, kv.Errorf(kv.CodeUnavailable, "storage commit failed: %w", err)
			close(r.done)
		}
		t.b.Close()
		return rev
	}
	s.publishCounts(t)
	s.stats.record(t, len(reqs))
	g := &group{b: t.b, reqs: reqs, start: start}
	if sync {
		s.synced <- g
	} else {
		s.finish(g, nil)
	}
	return t.rev
}

// allLogged reports whether every request of a group is durable in its
// caller's log (kv.Batch.Logged), so the group needs no fsync here. One
// request that is not makes the whole group wait for the sync: the WAL
// is one sequence.
func allLogged(reqs []*request) bool {
	for _, r := range reqs {
		if !r.batch.Logged {
			return false
		}
	}
	return true
}

func (s *Store) applyRequest(t *txn, r *request) error {
	b := &r.batch
	t.now = b.Now
	if t.now == 0 {
		t.now = s.opts.Now().UnixMilli()
	}
	t.ts = b.Timestamp
	if t.ts.IsZero() {
		t.ts = s.clock.Now()
	} else {
		s.clock.Update(t.ts)
	}
	r.results = make([]kv.Result, len(b.Ops))
	if b.AllAbsent {
		for i := range b.Ops {
			t.kbuf = dataKey(t.kbuf, b.Ops[i].Namespace, b.Ops[i].Key)
			old, ok, err := t.read(b.Ops[i].Namespace, t.kbuf)
			if err != nil {
				return err
			}
			if ok && !old.ExpiredAt(t.now) {
				for j := range b.Ops {
					r.results[j].Prev = old.Value // for diagnostics only
				}
				return nil
			}
		}
	}
	t.fixedRev = b.Revision
	defer func() { t.fixedRev = 0 }()
	for i := range b.Ops {
		res, err := t.apply(&b.Ops[i], b.Shard, b.Shards)
		if err != nil {
			return err
		}
		r.results[i] = res
	}
	for _, m := range b.Marks {
		if m.Value == nil {
			// A nil value removes the mark (a replica that left).
			if err := t.b.Delete(markKey(m.Key), nil); err != nil {
				return err
			}
			continue
		}
		if err := t.b.Set(markKey(m.Key), m.Value, nil); err != nil {
			return err
		}
	}
	return nil
}

// writeMeta persists the revision, clock and touched counters in the batch,
// so a restart resumes them exactly.
func (s *Store) writeMeta(t *txn) error {
	var buf [16]byte
	binary.LittleEndian.PutUint64(buf[:], t.rev)
	if err := t.b.Set(metaRevision, buf[:8], nil); err != nil {
		return err
	}
	last := s.clock.Last()
	binary.LittleEndian.PutUint64(buf[:], uint64(last.WallNanos))
	binary.LittleEndian.PutUint32(buf[8:], last.Logical)
	if err := t.b.Set(metaHLC, buf[:12], nil); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for ns, d := range t.counters {
		c := applyDelta(s.mu.counts[ns], d)
		if c.keys == 0 {
			// An emptied namespace leaves no record behind.
			if err := t.b.Delete(counterKey(ns), nil); err != nil {
				return err
			}
			continue
		}
		binary.LittleEndian.PutUint64(buf[:], uint64(c.keys))
		binary.LittleEndian.PutUint64(buf[8:], uint64(c.expires))
		if err := t.b.Set(counterKey(ns), buf[:16], nil); err != nil {
			return err
		}
	}
	return nil
}

func applyDelta(base nsCounts, d *nsCounts) nsCounts {
	if d.reset {
		base = nsCounts{}
	}
	return nsCounts{keys: base.keys + d.keys, expires: base.expires + d.expires}
}

func (s *Store) publishCounts(t *txn) {
	if len(t.counters) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for ns, d := range t.counters {
		c := applyDelta(s.mu.counts[ns], d)
		if c.keys == 0 {
			delete(s.mu.counts, ns)
			continue
		}
		s.mu.counts[ns] = c
	}
}

func (s *Store) finish(g *group, err error) {
	for _, r := range g.reqs {
		if err != nil {
			r.results, r.err = nil, kv.Errorf(kv.CodeUnavailable, "storage sync failed: %w", err)
		}
		close(r.done)
	}
	g.b.Close()
	s.stats.commitLatency.observe(time.Since(g.start))
}

func (s *Store) fail(err error) {
	s.failed.CompareAndSwap(nil, &err)
	s.opts.Logger.Error("storage failed; refusing writes", "err", err)
}

// runSyncer completes groups once their WAL record is durable (SyncAlways),
// or fsyncs the WAL every SyncInterval (SyncInterval). Handing the wait to
// this goroutine lets the applier build the next group while the disk
// syncs the previous one.
func (s *Store) runSyncer() {
	defer s.wg.Done()
	var tick <-chan time.Time
	if s.opts.Sync == SyncInterval {
		t := time.NewTicker(s.opts.SyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case g, ok := <-s.synced:
			if !ok {
				return // applier stopped
			}
			err := g.b.SyncWait()
			if err != nil {
				s.fail(fmt.Errorf("wal sync: %w", err))
			} else {
				s.stats.lastSync.Store(s.opts.Now().UnixNano())
			}
			s.finish(g, err)
		case <-tick:
			if err := s.syncWAL(); err != nil {
				// A WAL that cannot be synced can no longer keep the
				// promised loss bound: refuse writes, as a failed commit does.
				s.fail(fmt.Errorf("interval WAL sync: %w", err))
			}
		}
	}
}

// Sync forces the WAL to disk. Every write acknowledged before Sync was
// called is durable when it returns nil.
func (s *Store) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.reads.RLock()
	defer s.reads.RUnlock()
	if s.reads.closed {
		return ErrClosed
	}
	return s.syncWAL()
}

func (s *Store) syncWAL() error {
	// Cleared before the sync because writes acknowledged while it runs
	// may not be covered; they mark the store dirty again.
	prev := s.stats.dirtySince.Swap(0)
	start := time.Now()
	// DB.LogData treats a failed sync as fatal (Pebble calls Fatalf);
	// a batch synced through SyncWait returns the error instead, so the
	// store can refuse writes rather than crash.
	b := s.db.NewBatch()
	defer b.Close()
	err := b.LogData(nil, nil)
	if err == nil {
		err = s.db.ApplyNoSyncWait(b, pebble.Sync)
	}
	if err == nil {
		err = b.SyncWait()
	}
	if err != nil {
		s.stats.dirtySince.CompareAndSwap(0, prev)
		return fmt.Errorf("storage: sync: %w", err)
	}
	s.stats.lastSync.Store(s.opts.Now().UnixNano())
	s.stats.syncLatency.observe(time.Since(start))
	return nil
}

// Now returns the store's clock in Unix milliseconds.
func (s *Store) Now() int64 { return s.opts.Now().UnixMilli() }

// Get returns the live value of key, or false if it does not exist or has
// expired. The returned Data is shared with the row cache: callers must not
// modify it.
func (s *Store) Get(ctx context.Context, ns string, key []byte) (kv.Value, bool, error) {
	if err := ctx.Err(); err != nil {
		return kv.Value{}, false, kv.Errorf(kv.CodeTimeout, "get: %w", err)
	}
	if err := kv.ValidateNamespace(ns); err != nil {
		return kv.Value{}, false, err // a 0x00 in ns would alias another namespace's keys
	}
	s.reads.RLock()
	defer s.reads.RUnlock()
	if s.reads.closed {
		return kv.Value{}, false, ErrClosed
	}
	var kb [128]byte
	dk := dataKey(kb[:0], ns, key)
	var (
		r   record
		ok  bool
		gen uint64
	)
	hit := false
	if s.cache != nil {
		var e cacheEntry
		e, hit, gen = s.cache.get(dk)
		r, ok = e.rec, e.exists
	}
	if !hit {
		var err error
		if r, ok, err = readPebble(s.db, dk); err != nil {
			return kv.Value{}, false, fmt.Errorf("storage: get: %w", err)
		}
		if s.cache != nil {
			s.cache.fill(dk, cacheEntry{rec: r, exists: ok}, gen)
		}
	}
	if !ok || (r.ExpireAt != 0 && r.ExpiredAt(s.Now())) {
		return kv.Value{}, false, nil
	}
	return r.Value, true, nil
}

// Scan returns up to req.Limit keys of a namespace in key order from a
// consistent snapshot, hiding expired keys.
func (s *Store) Scan(ctx context.Context, req kv.ScanRequest) (kv.ScanResult, error) {
	var res kv.ScanResult
	if err := kv.ValidateNamespace(req.Namespace); err != nil {
		return res, err
	}
	s.reads.RLock()
	defer s.reads.RUnlock()
	if s.reads.closed {
		return res, ErrClosed
	}
	limit := req.Limit
	if limit <= 0 {
		limit = 100
	}
	now := req.Now
	if now == 0 {
		now = s.Now()
	}
	base := nsKeyPrefix(req.Namespace)
	lo := append(append([]byte(nil), base...), req.Prefix...)
	hi := prefixEnd(lo)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return res, fmt.Errorf("storage: scan: %w", err)
	}
	defer it.Close()
	var ok bool
	if req.After != nil {
		seek := append(append(append([]byte(nil), base...), req.After...), 0)
		ok = it.SeekGE(seek)
	} else {
		ok = it.First()
	}
	examined := 0
	var last []byte
	for ; ok; ok = it.Next() {
		if examined == limit {
			// Non-nil even for the empty key, which is a legal resume point.
			res.Next = append([]byte{}, last...)
			break
		}
		if examined%256 == 0 {
			if err := ctx.Err(); err != nil {
				return res, kv.Errorf(kv.CodeTimeout, "scan: %w", err)
			}
		}
		key := it.Key()[len(base):]
		if len(req.ShardSet) > 0 && !slices.Contains(req.ShardSet, placement.ShardOf(req.Namespace, key, req.Shards)) {
			continue
		}
		examined++
		last = append(last[:0], key...)
		if req.Match != nil && !req.Match(key) {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return res, fmt.Errorf("storage: scan: %w", err)
		}
		r, err := decodeValue(v)
		if err != nil {
			return res, err
		}
		if r.Tombstone || r.ExpiredAt(now) {
			continue
		}
		e := kv.KeyValue{Key: append([]byte(nil), key...), Value: r.Value}
		if req.KeysOnly {
			e.Value.Data = nil
		} else {
			e.Value.Data = append([]byte(nil), r.Data...)
		}
		res.Entries = append(res.Entries, e)
	}
	if err := it.Error(); err != nil {
		return res, fmt.Errorf("storage: scan: %w", err)
	}
	return res, nil
}
