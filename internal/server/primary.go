package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrumdb/fulcrum/internal/controlplane"
	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/primary"
	"github.com/fulcrumdb/fulcrum/internal/resp"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// startPrimary starts the failover authority (it answers only while this
// node leads the control plane) and the primary/replica engine of
// replication=primary namespaces. The engine's shards are the namespaces'
// replication groups. timeout is cluster.failover_timeout, the failover
// timeout of the namespaces that set none; each shard runs with its
// namespace's (Primaries.FailoverFor).
func (c *cluster) startPrimary(timeout time.Duration, now func() time.Time, logger *slog.Logger) error {
	fc := failover.ConfigFor(timeout)
	start := time.Now()
	mono := func() int64 { return int64(time.Since(start)) }
	c.authority = controlplane.NewPrimaries(c.meta, controlplane.PrimariesConfig{
		Self:     c.id,
		Timeout:  timeout,
		Failover: fc,
		Leader: func() (uint64, uint64) {
			st, ok := c.node.Status(controlplane.MetaGroup)
			if !ok || st.State != "StateLeader" {
				return st.Leader, st.Term
			}
			return c.id, st.Term
		},
		Clock:  mono,
		Logger: logger.With("component", "failover"),
	})
	cfg := primary.DefaultConfig().WithFailover(fc)
	cfg.NodeID = failover.NodeID(c.id)
	cfg.Clock = mono
	cfg.Now = now
	cfg.Logger = logger.With("component", "primary")
	cfg.Owns = func(ns string) bool {
		n, ok := c.meta.View().Namespaces[ns]
		return ok && n.Policy.Engine() == kv.EnginePrimary
	}
	cfg.Scope = func(shard int) (string, int, int, bool) {
		for _, n := range c.meta.View().Namespaces {
			if n.Policy.Engine() != kv.EnginePrimary {
				continue
			}
			for _, sh := range n.Shards {
				if sh.Group == uint64(shard) {
					return n.Name, sh.Shard, n.Policy.Shards, true
				}
			}
		}
		return "", 0, 0, false
	}
	e, err := primary.New(cfg, c.tr, c.store, authorityClient{c})
	if err != nil {
		return fmt.Errorf("cluster: primary engine: %w", err)
	}
	c.primary = e
	c.primaryShards = make(map[uint64]bool)
	return nil
}

// syncPrimaryShards makes the engine's shards match the view: it stops
// the replicas of dropped primary namespaces (Engine.RemoveShard) and
// starts those the view places here, each with its namespace's failover
// timing. A primary namespace's layout never changes (no rebalancing), so
// a replica stops only when its namespace is dropped; its rows go with
// the namespace's (dropLeaderless). Called with reconciling held.
func (c *cluster) syncPrimaryShards(v *controlplane.View) bool {
	ok := true
	if _, loaded := v.Namespaces["default"]; loaded {
		// Only a loaded view says what was dropped (the default
		// namespace is never dropped).
		for group := range c.primaryShards {
			if primaryPlaced(v, group, c.id) {
				continue
			}
			delete(c.primaryShards, group)
			// Not here: RemoveShard waits for the shard's goroutines, and
			// one may be in an authority call waiting for the view reload
			// that is calling this function.
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				ctx, cancel := context.WithTimeout(c.bg, 30*time.Second)
				defer cancel()
				if err := c.primary.RemoveShard(ctx, int(group)); err != nil && !errors.Is(err, primary.ErrUnknownShard) {
					c.logger.Error("cannot stop a dropped primary shard's replica; its log stays on disk", "group", group, "err", err)
					return
				}
				c.logger.Info("dropped primary shard's replica stopped", "group", group)
			}()
		}
	}
	for _, ns := range v.Namespaces {
		if ns.Policy.Engine() != kv.EnginePrimary {
			continue
		}
		_, fc := c.authority.FailoverFor(ns.Policy)
		for _, sh := range ns.Shards {
			if c.primaryShards[sh.Group] || !slices.Contains(sh.Replicas, c.id) {
				continue
			}
			members := make([]failover.NodeID, len(sh.Replicas))
			for i, id := range sh.Replicas {
				members[i] = failover.NodeID(id)
			}
			sc := primary.ShardConfig{Policy: controlplane.AckPolicy(ns.Policy), Members: members, Failover: fc}
			if err := c.primary.AddShard(int(sh.Group), sc); err != nil {
				c.logger.Error("cannot start a primary shard replica", "namespace", ns.Name, "shard", sh.Shard, "group", sh.Group, "err", err)
				ok = false
				continue
			}
			c.primaryShards[sh.Group] = true
		}
	}
	return ok
}

// primaryPlaced says whether the view places a replica of group, a
// primary namespace's shard, on node id.
func primaryPlaced(v *controlplane.View, group, id uint64) bool {
	for _, ns := range v.Namespaces {
		if ns.Policy.Engine() != kv.EnginePrimary {
			continue
		}
		for _, sh := range ns.Shards {
			if sh.Group == group {
				return slices.Contains(sh.Replicas, id)
			}
		}
	}
	return false
}

// primariesOf lists a primary namespace's recorded primaries by shard.
func primariesOf(v *controlplane.View, ns kv.NamespaceInfo) []uint64 {
	out := make([]uint64, len(ns.Shards))
	for i, sh := range ns.Shards {
		out[i] = uint64(v.Primaries[sh.Group].Primary)
	}
	return out
}

// Control calls of the failover authority, after ctlPrimary.
const (
	ctlPrimaryReport = 1
	ctlPrimaryRenew  = 2
	ctlPrimaryISR    = 3
)

// authorityCall is one call's JSON body.
type authorityCall struct {
	Group    uint64                `json:"group"`
	Node     failover.NodeID       `json:"node"`
	Status   primary.ReplicaStatus `json:"status"`
	Epoch    failover.Epoch        `json:"epoch"`
	Proposal failover.ISRProposal  `json:"proposal"`
}

// authorityClient is the engine's link to the failover authority: the
// control plane's leader, called directly when that is this node.
type authorityClient struct{ c *cluster }

var _ primary.Authority = authorityClient{}

func (a authorityClient) call(ctx context.Context, op byte, req authorityCall, out any) error {
	c := a.c
	st, _ := c.node.Status(controlplane.MetaGroup)
	leader := st.Leader
	if leader == 0 {
		return kv.Errorf(kv.CodeUnavailable, "failover authority: the control plane has no leader")
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	var reply []byte
	if leader == c.id {
		reply, err = c.serveAuthority(ctx, c.id, op, body)
	} else {
		reply, err = c.tr.Call(ctx, transport.NodeID(leader), transport.KindControl, append([]byte{ctlPrimary, op}, body...))
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(reply, out)
}

func (a authorityClient) Report(ctx context.Context, shard int, st primary.ReplicaStatus) (primary.Assignment, error) {
	var out primary.Assignment
	err := a.call(ctx, ctlPrimaryReport, authorityCall{Group: uint64(shard), Status: st}, &out)
	return out, err
}

func (a authorityClient) Renew(ctx context.Context, shard int, holder failover.NodeID, epoch failover.Epoch) (failover.Lease, error) {
	var out failover.Lease
	err := a.call(ctx, ctlPrimaryRenew, authorityCall{Group: uint64(shard), Node: holder, Epoch: epoch}, &out)
	return out, err
}

func (a authorityClient) ProposeISR(ctx context.Context, shard int, p failover.ISRProposal) (failover.ISRRecord, error) {
	var out failover.ISRRecord
	err := a.call(ctx, ctlPrimaryISR, authorityCall{Group: uint64(shard), Node: failover.NodeID(a.c.id), Proposal: p}, &out)
	return out, err
}

// serveAuthority answers a failover authority call from node from, which
// speaks only for itself: the authority checks it against the record
// (only the primary renews and proposes).
func (c *cluster) serveAuthority(ctx context.Context, from uint64, op byte, body []byte) ([]byte, error) {
	var req authorityCall
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, kv.Errorf(kv.CodeInvalid, "failover authority: corrupt call: %v", err)
	}
	if req.Status.Node != 0 && uint64(req.Status.Node) != from || req.Node != 0 && uint64(req.Node) != from {
		return nil, kv.Errorf(kv.CodeInvalid, "failover authority: node %d called for node %d", from, max(req.Status.Node, req.Node))
	}
	var (
		out any
		err error
	)
	switch op {
	case ctlPrimaryReport:
		out, err = c.authority.Report(ctx, req.Group, req.Status)
	case ctlPrimaryRenew:
		out, err = c.authority.Renew(ctx, req.Group, req.Node, req.Epoch)
	case ctlPrimaryISR:
		out, err = c.authority.ProposeISR(ctx, req.Group, req.Node, req.Proposal)
	default:
		return nil, kv.Errorf(kv.CodeInvalid, "failover authority: unknown call %d", op)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

// primaryRef hands the router the engine, which starts after it.
type primaryRef struct{ c *cluster }

func (p primaryRef) Write(ctx context.Context, shard int, b kv.Batch) ([]kv.Result, error) {
	return p.c.primary.Write(ctx, shard, b)
}

func (p primaryRef) Read(ctx context.Context, shard int, ns string, key []byte, maxStaleness time.Duration) (primary.ReadResult, error) {
	return p.c.primary.Read(ctx, shard, ns, key, maxStaleness)
}

func (p primaryRef) Status(shard int) (primary.Status, error) { return p.c.primary.Status(shard) }

// PrimaryShardStatus is one local replica of a replication=primary
// shard, with the control plane's record of it.
type PrimaryShardStatus struct {
	Namespace string `json:"namespace"`
	Shard     int    `json:"shard"`
	Group     uint64 `json:"group"`
	Role      string `json:"role"`
	Epoch     uint64 `json:"epoch"`
	Primary   uint64 `json:"primary"`
	Applied   uint64 `json:"applied"`
	// InSync is the primary's in-sync set (on the primary), Recorded the
	// control plane's record of it.
	InSync   []uint64 `json:"in_sync,omitempty"`
	Recorded []uint64 `json:"recorded_in_sync"`
	// LagEntries and LagMillis: how far this replica may be behind.
	LagEntries uint64 `json:"lag_entries"`
	LagMillis  int64  `json:"lag_ms"`
	// Lost counts the writes this node moved aside when it met a newer
	// primary (acknowledged ones under async); Degraded the writes taken
	// with too few in-sync replicas (allow_degrade).
	Lost     uint64 `json:"lost_writes"`
	Degraded uint64 `json:"degraded_writes"`
	// ISRLeft and ISRJoined count the replicas that left and joined the
	// in-sync set while this node was primary.
	ISRLeft   uint64 `json:"isr_left"`
	ISRJoined uint64 `json:"isr_joined"`
	// FailoverTimeoutMs is the shard's failover timeout: its namespace's
	// (failover_timeout_ms), else cluster.failover_timeout.
	FailoverTimeoutMs int64 `json:"failover_timeout_ms"`
	// Failovers, LastFailover (Unix ms) and FailoverReason come from the
	// control plane's record.
	Failovers      int    `json:"failovers"`
	LastFailover   int64  `json:"last_failover,omitempty"`
	FailoverReason string `json:"failover_reason,omitempty"`
	MayLoseAcked   bool   `json:"may_lose_acked,omitempty"`
}

// primaryStatus lists the local primary-shard replicas, in namespace and
// shard order.
func (c *cluster) primaryStatus() []PrimaryShardStatus {
	v := c.meta.View()
	var out []PrimaryShardStatus
	for _, ns := range v.Namespaces {
		if ns.Policy.Engine() != kv.EnginePrimary {
			continue
		}
		timeout, _ := c.authority.FailoverFor(ns.Policy)
		for _, sh := range ns.Shards {
			st, err := c.primary.Status(int(sh.Group))
			if err != nil {
				continue // not held here
			}
			rec := v.Primaries[sh.Group]
			lag := st.Lag.Time.Milliseconds()
			if st.Lag.Time == math.MaxInt64 {
				lag = -1 // never caught up
			}
			out = append(out, PrimaryShardStatus{
				Namespace: ns.Name, Shard: sh.Shard, Group: sh.Group, Role: st.Role.String(),
				Epoch: uint64(st.Epoch), Primary: uint64(st.Primary), Applied: uint64(st.Applied),
				InSync: nodeIDs(st.InSync), Recorded: nodeIDs(rec.ISR.Members),
				LagEntries: st.Lag.LSN, LagMillis: lag, Lost: st.Lost, Degraded: st.Degraded, ISRLeft: st.ISRLeft, ISRJoined: st.ISRJoined,
				Failovers: rec.Failovers, LastFailover: rec.LastFailover, FailoverReason: rec.Reason, MayLoseAcked: rec.MayLoseAcked,
				FailoverTimeoutMs: timeout.Milliseconds(),
			})
		}
	}
	slices.SortFunc(out, func(a, b PrimaryShardStatus) int {
		if a.Namespace != b.Namespace {
			return strings.Compare(a.Namespace, b.Namespace)
		}
		return a.Shard - b.Shard
	})
	return out
}

func nodeIDs(ids []failover.NodeID) []uint64 {
	out := make([]uint64, len(ids))
	for i, id := range ids {
		out[i] = uint64(id)
	}
	return out
}

// primaryInfo is INFO's summary of the local primary-shard replicas.
func primaryInfo(ps []PrimaryShardStatus) []resp.InfoField {
	var primaries, lost, degraded, failovers, maxLagEntries, left, joined uint64
	maxLag := int64(0)
	for _, p := range ps {
		if p.Role == "primary" {
			primaries++
		}
		lost += p.Lost
		degraded += p.Degraded
		failovers += uint64(p.Failovers)
		left += p.ISRLeft
		joined += p.ISRJoined
		maxLagEntries = max(maxLagEntries, p.LagEntries)
		if p.LagMillis < 0 || maxLag < 0 {
			maxLag = -1
		} else {
			maxLag = max(maxLag, p.LagMillis)
		}
	}
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	return []resp.InfoField{
		{Name: "fulcrum_primary_shards_local", Value: strconv.Itoa(len(ps))},
		{Name: "fulcrum_primary_shards_primary", Value: u(primaries)},
		{Name: "fulcrum_primary_lost_writes", Value: u(lost)},
		{Name: "fulcrum_primary_degraded_writes", Value: u(degraded)},
		{Name: "fulcrum_primary_failovers", Value: u(failovers)},
		{Name: "fulcrum_primary_isr_left", Value: u(left)},
		{Name: "fulcrum_primary_isr_joined", Value: u(joined)},
		{Name: "fulcrum_primary_max_lag_entries", Value: u(maxLagEntries)},
		{Name: "fulcrum_primary_max_lag_ms", Value: strconv.FormatInt(maxLag, 10)},
	}
}

// primaryCollector exports the local primary-shard replicas to
// Prometheus, one series per shard.
type primaryCollector struct{ c *cluster }

var (
	primaryLabels   = []string{"namespace", "shard"}
	descPrimaryRole = prometheus.NewDesc("fulcrum_primary_is_primary", "1 if this node is the shard's primary, else 0.", primaryLabels, nil)
	descEpoch       = prometheus.NewDesc("fulcrum_primary_epoch", "The shard's epoch as this replica knows it.", primaryLabels, nil)
	descLagEntries  = prometheus.NewDesc("fulcrum_primary_lag_entries", "Log entries the primary had that this replica had not applied, as of the primary's last message.", primaryLabels, nil)
	descLagSeconds  = prometheus.NewDesc("fulcrum_primary_lag_seconds", "Time since this replica last knew it held everything the primary had (0 on the primary; -1 if never).", primaryLabels, nil)
	descInSync      = prometheus.NewDesc("fulcrum_primary_in_sync_replicas", "Replicas in the control plane's in-sync record.", primaryLabels, nil)
	descLost        = prometheus.NewDesc("fulcrum_primary_lost_writes_total", "Writes this node moved aside when it met a newer primary (acknowledged ones under ack=async).", primaryLabels, nil)
	descDegraded    = prometheus.NewDesc("fulcrum_primary_degraded_writes_total", "Writes taken with fewer in-sync replicas than ack_replicas (allow_degrade).", primaryLabels, nil)
	descFailovers   = prometheus.NewDesc("fulcrum_primary_failovers_total", "Promotions after the first, from the control plane's record.", primaryLabels, nil)
	descISRChanges  = prometheus.NewDesc("fulcrum_primary_isr_changes_total", "Replicas that left or joined the in-sync set while this node was primary.", append(slices.Clone(primaryLabels), "change"), nil)
)

func (p primaryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPrimaryRole, descEpoch, descLagEntries, descLagSeconds, descInSync, descLost, descDegraded, descFailovers, descISRChanges} {
		ch <- d
	}
}

func (p primaryCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range p.c.primaryStatus() {
		l := []string{s.Namespace, strconv.Itoa(s.Shard)}
		role := 0.0
		if s.Role == "primary" {
			role = 1
		}
		lag := float64(s.LagMillis) / 1000
		if s.LagMillis < 0 {
			lag = -1
		}
		ch <- prometheus.MustNewConstMetric(descPrimaryRole, prometheus.GaugeValue, role, l...)
		ch <- prometheus.MustNewConstMetric(descEpoch, prometheus.GaugeValue, float64(s.Epoch), l...)
		ch <- prometheus.MustNewConstMetric(descLagEntries, prometheus.GaugeValue, float64(s.LagEntries), l...)
		ch <- prometheus.MustNewConstMetric(descLagSeconds, prometheus.GaugeValue, lag, l...)
		ch <- prometheus.MustNewConstMetric(descInSync, prometheus.GaugeValue, float64(len(s.Recorded)), l...)
		ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(s.Lost), l...)
		ch <- prometheus.MustNewConstMetric(descDegraded, prometheus.CounterValue, float64(s.Degraded), l...)
		ch <- prometheus.MustNewConstMetric(descFailovers, prometheus.CounterValue, float64(s.Failovers), l...)
		ch <- prometheus.MustNewConstMetric(descISRChanges, prometheus.CounterValue, float64(s.ISRLeft), append(l, "left")...)
		ch <- prometheus.MustNewConstMetric(descISRChanges, prometheus.CounterValue, float64(s.ISRJoined), append(l, "joined")...)
	}
}

// LostWriteJSON is a write this node moved aside when it met a newer
// primary (GET /v1/cluster/lost-writes): under ack=async, possibly
// acknowledged to a client. Keys and values are base64 (JSON []byte).
type LostWriteJSON struct {
	Namespace string       `json:"namespace"`
	Shard     int          `json:"shard"`
	Epoch     uint64       `json:"epoch"`
	LSN       uint64       `json:"lsn"`
	Ops       []LostOpJSON `json:"ops"`
	Timestamp int64        `json:"timestamp,omitempty"` // the write's HLC wall time, Unix ns
}

// LostOpJSON is one operation of a lost write.
type LostOpJSON struct {
	Op       string `json:"op"`
	Key      []byte `json:"key,omitempty"`
	Value    []byte `json:"value,omitempty"`
	ExpireAt int64  `json:"expire_at,omitempty"`
}

// serveLostWrites answers GET /v1/cluster/lost-writes[?namespace=NS]:
// the writes this node set aside, oldest first per shard, so an operator
// can inspect them and write back what should survive. They are never
// merged back on their own.
func (c *cluster) serveLostWrites(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Method != http.MethodGet {
		w.WriteHeader(http.StatusMethodNotAllowed)
		_ = json.NewEncoder(w).Encode(map[string]string{"code": string(kv.CodeInvalid), "message": "GET only"})
		return
	}
	want := r.URL.Query().Get("namespace")
	out := struct {
		Node   uint64          `json:"node"`
		Writes []LostWriteJSON `json:"writes"`
	}{Node: c.id, Writes: []LostWriteJSON{}}
	for _, ps := range c.primaryStatus() {
		if want != "" && ps.Namespace != want {
			continue
		}
		lost, err := c.primary.LostWrites(r.Context(), int(ps.Group))
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			_ = json.NewEncoder(w).Encode(map[string]string{"code": string(kv.CodeOf(err)), "message": err.Error()})
			return
		}
		for _, lw := range lost {
			j := LostWriteJSON{Namespace: ps.Namespace, Shard: ps.Shard, Epoch: uint64(lw.Epoch), LSN: uint64(lw.LSN), Timestamp: lw.Batch.Timestamp.WallNanos}
			for _, op := range lw.Batch.Ops {
				j.Ops = append(j.Ops, LostOpJSON{Op: strings.ToLower(op.Kind.String()), Key: op.Key, Value: op.Value, ExpireAt: op.ExpireAt})
			}
			out.Writes = append(out.Writes, j)
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}
