package server

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/controlplane"
	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	lnode "github.com/fulcrumdb/fulcrum/internal/leaderless/node"
	"github.com/fulcrumdb/fulcrum/internal/placement"
	"github.com/fulcrumdb/fulcrum/internal/router"
)

// startEventual starts the leaderless engine of eventual and weak
// namespaces on the node's transport and state machine: preference lists
// come from the router's table (a shard's replicas, then every other node
// as sloppy-quorum fallbacks), membership and anti-entropy's shards from
// the control plane's view.
func (c *cluster) startEventual(now func() time.Time, logger *slog.Logger) error {
	cfg := lnode.DefaultConfig()
	cfg.Self = c.id
	cfg.Endpoint = c.tr
	cfg.Store = lnode.NewStorageStore(c.store)
	cfg.Clock = hlc.New(func() int64 { return now().UnixNano() })
	cfg.Now = now
	cfg.Nodes = func() []uint64 { return c.meta.View().Active() }
	cfg.Preference = c.router.Preference
	cfg.Shard = func(ns string, key []byte) int {
		n, ok := c.meta.View().Namespaces[ns]
		if !ok {
			return 0
		}
		return placement.ShardOf(ns, key, n.Policy.Shards)
	}
	cfg.Shards = func() []lnode.ShardReplicas { return eventualShards(c.meta.View(), c.id) }
	cfg.AntiEntropyInterval = c.antiEntropy
	cfg.HintWindow = c.hintWindow
	cfg.TombstoneGrace = c.tombstoneGrace
	cfg.AntiEntropyBandwidth = c.aeBandwidth
	cfg.RequestTimeout = c.requestTimeout
	cfg.Namespaces = func() []string {
		var out []string
		for _, ns := range c.meta.View().Namespaces {
			if ns.Policy.Engine() == kv.EngineLeaderless {
				out = append(out, ns.Name)
			}
		}
		return out
	}
	cfg.Logger = logger.With("component", "leaderless")
	e, err := lnode.New(cfg)
	if err != nil {
		return err
	}
	c.eventual = e
	return nil
}

// eventualShards are the shards of eventual namespaces this node is a
// home replica of: what anti-entropy compares (weak namespaces have no
// repair).
func eventualShards(v *controlplane.View, self uint64) []lnode.ShardReplicas {
	var out []lnode.ShardReplicas
	for _, ns := range v.Namespaces {
		if ns.Policy.Consistency != kv.ConsistencyEventual {
			continue
		}
		for _, sh := range ns.Shards {
			if slices.Contains(sh.Replicas, self) {
				out = append(out, lnode.ShardReplicas{Namespace: ns.Name, Shard: sh.Shard, Replicas: sh.Replicas, KeepSiblings: ns.Policy.KeepSiblings()})
			}
		}
	}
	return out
}

// leaderlessRef hands the router the engine, which starts after it.
type leaderlessRef struct{ c *cluster }

var _ router.Leaderless = leaderlessRef{}

func (l leaderlessRef) Put(ctx context.Context, ns string, key, value []byte, o lnode.WriteOptions) (lnode.WriteResult, error) {
	return l.c.eventual.Put(ctx, ns, key, value, o)
}

func (l leaderlessRef) Delete(ctx context.Context, ns string, key []byte, o lnode.WriteOptions) (lnode.WriteResult, error) {
	return l.c.eventual.Delete(ctx, ns, key, o)
}

func (l leaderlessRef) Get(ctx context.Context, ns string, key []byte, o lnode.ReadOptions) (lnode.ReadResult, error) {
	return l.c.eventual.Get(ctx, ns, key, o)
}

// dropLeaderless deletes the local rows of the eventual and weak
// namespaces the view no longer has (dropped), so a namespace created
// later under the same name starts empty. Called with reconciling held.
func (c *cluster) dropLeaderless(ctx context.Context, v *controlplane.View) {
	if _, ok := v.Namespaces["default"]; !ok {
		return // not a loaded view (the default namespace is never dropped)
	}
	now := make(map[string]bool)
	for _, ns := range v.Namespaces {
		if ns.Policy.Engine() != kv.EngineRaft {
			now[ns.Name] = true // leaderless or primary: no Raft group deletes its rows
		}
	}
	for name := range c.leaderlessNS {
		if now[name] {
			continue
		}
		if _, err := c.store.Apply(ctx, kv.Batch{Ops: []kv.Op{{Kind: kv.OpFlush, Namespace: name}}}); err != nil {
			c.logger.Error("cannot delete a dropped namespace's rows", "namespace", name, "err", err)
			continue
		}
		c.logger.Info("dropped namespace's rows deleted here", "namespace", name)
	}
	c.leaderlessNS = now
}
