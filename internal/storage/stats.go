package storage

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// statCounters are updated by the store's goroutines and read by Stats and
// the Prometheus collector.
type statCounters struct {
	batches     atomic.Int64 // kv.Batch values applied
	groups      atomic.Int64 // Pebble commits
	expired     atomic.Int64 // expired keys removed or overwritten by writes
	lastSync    atomic.Int64 // unix nanos of the last completed WAL sync
	dirtySince  atomic.Int64 // unix nanos of the first unsynced write, 0 if none
	groupSize   prometheus.Histogram
	commitLat   prometheus.Histogram
	syncLatHist prometheus.Histogram

	commitLatency latencyObserver
	syncLatency   latencyObserver
}

type latencyObserver struct{ h prometheus.Histogram }

func (l latencyObserver) observe(d time.Duration) { l.h.Observe(d.Seconds()) }

func newStatCounters() *statCounters {
	c := &statCounters{
		groupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "fulcrum", Subsystem: "storage", Name: "commit_group_batches",
			Help:    "Write batches committed together in one Pebble commit (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		commitLat: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "fulcrum", Subsystem: "storage", Name: "commit_duration_seconds",
			Help:    "Time from building a commit group to acknowledging it (includes fsync with sync=always).",
			Buckets: prometheus.ExponentialBuckets(5e-6, 2, 20),
		}),
		syncLatHist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "fulcrum", Subsystem: "storage", Name: "wal_sync_duration_seconds",
			Help:    "Explicit WAL syncs (sync=interval ticks, Sync calls).",
			Buckets: prometheus.ExponentialBuckets(5e-6, 2, 20),
		}),
	}
	c.commitLatency = latencyObserver{c.commitLat}
	c.syncLatency = latencyObserver{c.syncLatHist}
	return c
}

func (c *statCounters) record(t *txn, batches int) {
	c.groups.Add(1)
	c.batches.Add(int64(batches))
	c.expired.Add(t.expired)
	c.groupSize.Observe(float64(batches))
}

func (c *statCounters) markDirty(now time.Time) {
	c.dirtySince.CompareAndSwap(0, now.UnixNano())
}

// Stats is a snapshot of the store's counters.
type Stats struct {
	Sync          SyncMode
	SyncInterval  time.Duration
	Batches       int64 // write batches applied
	Commits       int64 // Pebble commits (a commit carries one or more batches)
	ExpiredKeys   int64 // expired keys removed (sweeper) or found expired by writes
	LastSync      time.Time
	UnsyncedSince time.Time // zero when every acknowledged write is on disk (or sync=always)
	DiskUsage     uint64
	Pebble        *pebbleMetrics
}

// pebbleMetrics aliases Pebble's metrics so callers need not import Pebble.
type pebbleMetrics = struct {
	MemtableSize   uint64
	MemtableCount  int64
	WALSize        uint64
	Compactions    int64
	Flushes        int64
	ReadAmp        int
	BlockCacheHits int64
	BlockCacheMiss int64
}

// Stats returns current counters.
func (s *Store) Stats() Stats {
	st := Stats{
		Sync:         s.opts.Sync,
		SyncInterval: s.opts.SyncInterval,
		Batches:      s.stats.batches.Load(),
		Commits:      s.stats.groups.Load(),
		ExpiredKeys:  s.stats.expired.Load(),
	}
	if n := s.stats.lastSync.Load(); n != 0 {
		st.LastSync = time.Unix(0, n)
	}
	if n := s.stats.dirtySince.Load(); n != 0 {
		st.UnsyncedSince = time.Unix(0, n)
	}
	m := s.db.Metrics()
	st.DiskUsage = m.DiskSpaceUsage()
	st.Pebble = &pebbleMetrics{
		MemtableSize:   m.MemTable.Size,
		MemtableCount:  m.MemTable.Count,
		WALSize:        m.WAL.Size,
		Compactions:    m.Compact.Count,
		Flushes:        m.Flush.Count,
		ReadAmp:        m.ReadAmp(),
		BlockCacheHits: m.BlockCache.Hits,
		BlockCacheMiss: m.BlockCache.Misses,
	}
	return st
}

// Collector returns a Prometheus collector for the store's metrics: group
// commit sizes and latencies, Pebble's WAL fsync latency, keys per
// namespace, expired keys, and the current data-loss window.
func (s *Store) Collector() prometheus.Collector { return (*collector)(s) }

type collector Store

var (
	descKeys = prometheus.NewDesc("fulcrum_storage_keys", "Keys stored, by namespace (expired keys count until swept).", []string{"namespace"}, nil)
	descExp  = prometheus.NewDesc("fulcrum_storage_keys_with_expiry", "Keys with an expiry, by namespace.", []string{"namespace"}, nil)
	descExpd = prometheus.NewDesc("fulcrum_storage_expired_keys_total", "Expired keys removed.", nil, nil)
	descBat  = prometheus.NewDesc("fulcrum_storage_batches_total", "Write batches applied.", nil, nil)
	descCom  = prometheus.NewDesc("fulcrum_storage_commits_total", "Pebble commits (each carries one or more batches).", nil, nil)
	descLoss = prometheus.NewDesc("fulcrum_storage_unsynced_seconds", "Age of the oldest acknowledged write not yet fsynced: the data-loss window on power failure (0 with sync=always).", nil, nil)
	descDisk = prometheus.NewDesc("fulcrum_storage_disk_bytes", "Bytes on disk used by the store.", nil, nil)
	descComp = prometheus.NewDesc("fulcrum_storage_compactions_total", "Pebble compactions.", nil, nil)
	descRAmp = prometheus.NewDesc("fulcrum_storage_read_amplification", "Pebble read amplification.", nil, nil)
	descMem  = prometheus.NewDesc("fulcrum_storage_memtable_bytes", "Pebble memtable bytes.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := (*Store)(c)
	select {
	case <-s.closing:
		return // Pebble is closing; its metrics are gone
	default:
	}
	for _, ns := range s.Keyspace() {
		ch <- prometheus.MustNewConstMetric(descKeys, prometheus.GaugeValue, float64(ns.Keys), ns.Name)
		ch <- prometheus.MustNewConstMetric(descExp, prometheus.GaugeValue, float64(ns.Expires), ns.Name)
	}
	st := s.Stats()
	ch <- prometheus.MustNewConstMetric(descExpd, prometheus.CounterValue, float64(st.ExpiredKeys))
	ch <- prometheus.MustNewConstMetric(descBat, prometheus.CounterValue, float64(st.Batches))
	ch <- prometheus.MustNewConstMetric(descCom, prometheus.CounterValue, float64(st.Commits))
	loss := 0.0
	if !st.UnsyncedSince.IsZero() {
		loss = s.opts.Now().Sub(st.UnsyncedSince).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(descLoss, prometheus.GaugeValue, loss)
	ch <- prometheus.MustNewConstMetric(descDisk, prometheus.GaugeValue, float64(st.DiskUsage))
	ch <- prometheus.MustNewConstMetric(descComp, prometheus.CounterValue, float64(st.Pebble.Compactions))
	ch <- prometheus.MustNewConstMetric(descRAmp, prometheus.GaugeValue, float64(st.Pebble.ReadAmp))
	ch <- prometheus.MustNewConstMetric(descMem, prometheus.GaugeValue, float64(st.Pebble.MemtableSize))
	s.stats.groupSize.Collect(ch)
	s.stats.commitLat.Collect(ch)
	s.stats.syncLatHist.Collect(ch)
	if h := s.db.Metrics().LogWriter.FsyncLatency; h != nil {
		if m, err := fsyncHistogram(h); err == nil {
			ch <- m
		}
	}
}

var descFsync = prometheus.NewDesc("fulcrum_storage_wal_fsync_duration_seconds", "Pebble WAL fsync latency.", nil, nil)

// fsyncHistogram re-exports Pebble's unnamed, nanosecond-valued WAL fsync
// histogram under our name, in seconds.
func fsyncHistogram(h prometheus.Histogram) (prometheus.Metric, error) {
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		return nil, err
	}
	hist := m.GetHistogram()
	buckets := make(map[float64]uint64, len(hist.GetBucket()))
	for _, b := range hist.GetBucket() {
		buckets[b.GetUpperBound()/1e9] = b.GetCumulativeCount()
	}
	return prometheus.NewConstHistogram(descFsync, hist.GetSampleCount(), hist.GetSampleSum()/1e9, buckets)
}
