package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/controlplane"
	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/primary"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// failoverConfig derives the lease timing from cluster.failover_timeout:
// a lease of 80% of it, renewed four times per lease, 10% of the lease
// allowed for clock drift, and 10% of the timeout as the control plane's
// margin (1 s gives failover.DefaultConfig).
func failoverConfig(timeout time.Duration) failover.Config {
	fc := failover.DefaultConfig()
	fc.LeaseDuration = timeout * 8 / 10
	fc.Margin = timeout / 10
	fc.RenewInterval = fc.LeaseDuration / 4
	fc.MaxDrift = fc.LeaseDuration / 10
	fc.MaxLagTime = max(fc.LeaseDuration*5/8, 50*time.Millisecond)
	return fc
}

// startPrimary starts the failover authority (it answers only while this
// node leads the control plane) and the primary/replica engine of
// replication=primary namespaces. The engine's shards are the namespaces'
// replication groups.
func (c *cluster) startPrimary(timeout time.Duration, now func() time.Time, logger *slog.Logger) error {
	fc := failoverConfig(timeout)
	start := time.Now()
	mono := func() int64 { return int64(time.Since(start)) }
	c.authority = controlplane.NewPrimaries(c.meta, controlplane.PrimariesConfig{
		Self:     c.id,
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
	cfg := primary.DefaultConfig()
	cfg.NodeID = failover.NodeID(c.id)
	cfg.Failover = fc
	cfg.ReportInterval = fc.RenewInterval
	cfg.HeartbeatInterval = fc.MaxLagTime / 4
	cfg.RPCTimeout = fc.RenewInterval
	cfg.Clock = mono
	cfg.Now = now
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

// addPrimaryShards starts the engine's replicas of the primary
// namespaces' shards the view places here. A primary namespace's layout
// never changes (no rebalancing), so there is nothing to stop until the
// namespace is dropped. Called with reconciling held.
func (c *cluster) addPrimaryShards(v *controlplane.View) bool {
	ok := true
	for _, ns := range v.Namespaces {
		if ns.Policy.Engine() != kv.EnginePrimary {
			continue
		}
		for _, sh := range ns.Shards {
			if c.primaryShards[sh.Group] || !slices.Contains(sh.Replicas, c.id) {
				continue
			}
			members := make([]failover.NodeID, len(sh.Replicas))
			for i, id := range sh.Replicas {
				members[i] = failover.NodeID(id)
			}
			if err := c.primary.AddShard(int(sh.Group), controlplane.AckPolicy(ns.Policy), members); err != nil {
				c.logger.Error("cannot start a primary shard replica", "namespace", ns.Name, "shard", sh.Shard, "group", sh.Group, "err", err)
				ok = false
				continue
			}
			c.primaryShards[sh.Group] = true
		}
	}
	return ok
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
