package raftstore

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metricSet counts what the loop does. Counters are atomics (Stats reads
// them); latencies are Prometheus histograms.
type metricSet struct {
	proposals, applied, readIndex           atomic.Uint64
	leaderChanges, snapshotsSent            atomic.Uint64
	snapshotsApplied, compactions           atomic.Uint64
	messagesSent, inboxDropped, badMessages atomic.Uint64
	droppedMessages, persistSyncs           atomic.Uint64
	leaseReads                              atomic.Uint64

	persist, commit, read prometheus.Histogram
}

func newMetricSet() *metricSet {
	buckets := prometheus.ExponentialBuckets(50e-6, 2, 18) // 50µs .. ~6.5s
	return &metricSet{
		persist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fulcrum_raft_log_persist_seconds", Buckets: buckets,
			Help: "Time to write and fsync one loop round of Raft log entries and hard states (all groups together).",
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fulcrum_raft_write_seconds", Buckets: buckets,
			Help: "Time from proposing a write on this node to its being committed and applied here.",
		}),
		read: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fulcrum_raft_read_index_seconds", Buckets: buckets,
			Help: "Time for a linearizable read barrier (ReadIndex round plus waiting to apply).",
		}),
	}
}

// Stats are a node's engine counters since it started.
type Stats struct {
	Proposals        uint64 `json:"proposals"`         // proposals handed to raft
	Applied          uint64 `json:"applied"`           // entries applied to the state machine
	ReadIndex        uint64 `json:"read_index"`        // ReadIndex requests issued (each serves a batch of reads)
	LeaderChanges    uint64 `json:"leader_changes"`    // leader changes seen, over all groups
	SnapshotsSent    uint64 `json:"snapshots_sent"`    //
	SnapshotsApplied uint64 `json:"snapshots_applied"` //
	Compactions      uint64 `json:"compactions"`       // log compactions
	MessagesSent     uint64 `json:"messages_sent"`     // transport messages (each carries many raft messages)
	InboxDropped     uint64 `json:"inbox_dropped"`     // inbound batches dropped because the loop was behind
	BadMessages      uint64 `json:"bad_messages"`      // undecodable inbound batches
	DroppedMessages  uint64 `json:"dropped_messages"`  // raft messages for groups not on this node
	PersistSyncs     uint64 `json:"persist_syncs"`     // synced log commits (one per loop round)
	LeaseReads       uint64 `json:"lease_reads"`       // reads answered from the leader's lease
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	m := n.metrics
	return Stats{
		Proposals: m.proposals.Load(), Applied: m.applied.Load(), ReadIndex: m.readIndex.Load(),
		LeaderChanges: m.leaderChanges.Load(), SnapshotsSent: m.snapshotsSent.Load(),
		SnapshotsApplied: m.snapshotsApplied.Load(), Compactions: m.compactions.Load(),
		MessagesSent: m.messagesSent.Load(), InboxDropped: m.inboxDropped.Load(),
		BadMessages: m.badMessages.Load(), DroppedMessages: m.droppedMessages.Load(),
		PersistSyncs: m.persistSyncs.Load(), LeaseReads: m.leaseReads.Load(),
	}
}

// Collector exports the engine's metrics: node-wide counters and latency
// histograms, and per-group term, leadership, commit/applied index and
// apply lag.
func (n *Node) Collector() prometheus.Collector { return collector{n} }

type collector struct{ n *Node }

var (
	descCounter = func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("fulcrum_raft_"+name, help, nil, nil)
	}
	descProposals     = descCounter("proposals_total", "Writes handed to Raft on this node.")
	descApplied       = descCounter("applied_entries_total", "Log entries applied to the state machine.")
	descReadIndex     = descCounter("read_index_total", "ReadIndex rounds issued (each serves a batch of reads).")
	descLeaderChanges = descCounter("leader_changes_total", "Leader changes seen, over all groups.")
	descSnapSent      = descCounter("snapshots_sent_total", "Snapshots sent to lagging replicas.")
	descSnapApplied   = descCounter("snapshots_applied_total", "Snapshots installed on this node.")
	descDropped       = descCounter("inbox_dropped_total", "Inbound message batches dropped because the engine loop was behind.")
	descLeaseReads    = descCounter("lease_reads_total", "Reads a leader answered from its lease, without a quorum round.")

	groupLabels   = []string{"group", "namespace", "shard"}
	descTerm      = prometheus.NewDesc("fulcrum_raft_term", "Current Raft term of the group.", groupLabels, nil)
	descLeader    = prometheus.NewDesc("fulcrum_raft_is_leader", "1 if this node leads the group.", groupLabels, nil)
	descHasLeader = prometheus.NewDesc("fulcrum_raft_has_leader", "1 if the group has a known leader (0: no quorum reachable or electing).", groupLabels, nil)
	descCommit    = prometheus.NewDesc("fulcrum_raft_commit_index", "Highest log index known committed.", groupLabels, nil)
	descApplyLag  = prometheus.NewDesc("fulcrum_raft_apply_lag", "Committed entries not yet applied here.", groupLabels, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descProposals, descApplied, descReadIndex, descLeaderChanges, descSnapSent, descSnapApplied, descDropped, descLeaseReads,
		descTerm, descLeader, descHasLeader, descCommit, descApplyLag} {
		ch <- d
	}
	c.n.metrics.persist.Describe(ch)
	c.n.metrics.commit.Describe(ch)
	c.n.metrics.read.Describe(ch)
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c.n.metrics
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(descProposals, m.proposals.Load())
	counter(descApplied, m.applied.Load())
	counter(descReadIndex, m.readIndex.Load())
	counter(descLeaderChanges, m.leaderChanges.Load())
	counter(descSnapSent, m.snapshotsSent.Load())
	counter(descSnapApplied, m.snapshotsApplied.Load())
	counter(descDropped, m.inboxDropped.Load())
	counter(descLeaseReads, m.leaseReads.Load())
	m.persist.Collect(ch)
	m.commit.Collect(ch)
	m.read.Collect(ch)
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, st := range c.n.Groups() {
		l := []string{strconv.FormatUint(st.ID, 10), st.Namespace, strconv.Itoa(st.Shard)}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
		}
		gauge(descTerm, float64(st.Term))
		gauge(descLeader, b2f(st.Leader == c.n.cfg.NodeID))
		gauge(descHasLeader, b2f(st.Leader != 0))
		gauge(descCommit, float64(st.Commit))
		gauge(descApplyLag, float64(st.Commit-min(st.Applied, st.Commit)))
	}
}

func since(t time.Time) float64 { return time.Since(t).Seconds() }
