package node

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the engine's counters to Prometheus: writes and reads
// by outcome, read repairs, the hint backlog and deliveries,
// anti-entropy's rounds, exchanged states and the age of its last full
// round, and the tombstones collected.
func (e *Engine) Collector() prometheus.Collector { return (*collector)(e) }

type collector Engine

var (
	descWrites      = prometheus.NewDesc("fulcrum_leaderless_writes_total", "Writes coordinated here, by outcome (ok, failed, indeterminate: failed but maybe applied, sloppy: ok with a fallback's ack).", []string{"outcome"}, nil)
	descReads       = prometheus.NewDesc("fulcrum_leaderless_reads_total", "Reads coordinated here, by outcome.", []string{"outcome"}, nil)
	descRepairs     = prometheus.NewDesc("fulcrum_leaderless_read_repairs_total", "Read repairs sent to stale replicas, by outcome (sent, failed).", []string{"outcome"}, nil)
	descHints       = prometheus.NewDesc("fulcrum_leaderless_hints_pending", "Hints held here for owners that were unreachable (the hinted-handoff backlog).", nil, nil)
	descHintEvents  = prometheus.NewDesc("fulcrum_leaderless_hints_total", "Hint events: stored, delivered, expired (dropped after the hint window), refused (hint store full).", []string{"event"}, nil)
	descAERounds    = prometheus.NewDesc("fulcrum_leaderless_anti_entropy_rounds_total", "Shard comparisons with a peer, by outcome.", []string{"outcome"}, nil)
	descAEKeys      = prometheus.NewDesc("fulcrum_leaderless_anti_entropy_states_total", "Key states exchanged by anti-entropy (pulled: merged here, pushed: sent to a peer).", []string{"direction"}, nil)
	descAELastFull  = prometheus.NewDesc("fulcrum_leaderless_anti_entropy_last_full_sync_seconds", "Unix time of the last anti-entropy round that compared every shard with every peer (0: never).", nil, nil)
	descAERanges    = prometheus.NewDesc("fulcrum_leaderless_anti_entropy_ranges_total", "Differing key-hash ranges exchanged by anti-entropy.", nil, nil)
	descDeliveryErr = prometheus.NewDesc("fulcrum_leaderless_hint_delivery_failures_total", "Hint deliveries that failed or owners that did not answer a probe (retried).", nil, nil)
	descTombstones  = prometheus.NewDesc("fulcrum_leaderless_tombstones_collected_total", "Deleted keys whose tombstones the sweep removed after the tombstone grace period.", nil, nil)
	descTombRefused = prometheus.NewDesc("fulcrum_leaderless_tombstones_refused_total", "Tombstones past their grace period that arrived from a peer for a key collected here, and were not stored again.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWrites, descReads, descRepairs, descHints, descHintEvents, descAERounds, descAEKeys, descAELastFull, descAERanges, descDeliveryErr, descTombstones, descTombRefused} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := (*Engine)(c).Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descWrites, st.WritesOK, "ok")
	counter(descWrites, st.WritesFailed, "failed")
	counter(descWrites, st.WritesIndeterminate, "indeterminate")
	counter(descWrites, st.WritesSloppy, "sloppy")
	counter(descReads, st.ReadsOK, "ok")
	counter(descReads, st.ReadsFailed, "failed")
	counter(descRepairs, st.RepairsSent, "sent")
	counter(descRepairs, st.RepairsFailed, "failed")
	ch <- prometheus.MustNewConstMetric(descHints, prometheus.GaugeValue, float64(st.HintsPending))
	counter(descHintEvents, st.HintsStored, "stored")
	counter(descHintEvents, st.HintsDelivered, "delivered")
	counter(descHintEvents, st.HintsExpired, "expired")
	counter(descHintEvents, st.HintsRefused, "refused")
	counter(descDeliveryErr, st.DeliveriesFailed+st.ProbesFailed)
	counter(descAERounds, st.AntiEntropyRounds, "ok")
	counter(descAERounds, st.AntiEntropyFailed, "failed")
	counter(descAEKeys, st.AntiEntropyPulled, "pulled")
	counter(descAEKeys, st.AntiEntropyPushed, "pushed")
	counter(descAERanges, st.AntiEntropyRanges)
	counter(descTombstones, st.TombstonesCollected)
	counter(descTombRefused, st.TombstonesRefused)
	last := 0.0
	if !st.AntiEntropyLastFull.IsZero() {
		last = float64(st.AntiEntropyLastFull.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(descAELastFull, prometheus.GaugeValue, last)
}
