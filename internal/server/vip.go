package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/controlplane"
	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/primary"
	"github.com/fulcrumdb/fulcrum/internal/vip"
)

// vipCheck is how often a node decides whether it should carry the
// service address; vipReannounce how often the carrier repeats its
// gratuitous ARP (a switch or a neighbour may have missed the first).
const (
	vipCheck      = 100 * time.Millisecond
	vipReannounce = 5 * time.Second
)

// newVIPOwner builds the owner of cluster.vip, or nil when none is set.
func newVIPOwner(prefix, iface string) (*vip.Owner, error) {
	if prefix == "" {
		return nil, nil
	}
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return nil, fmt.Errorf("cluster.vip: %w", err)
	}
	cfg := vip.DefaultConfig()
	cfg.Address, cfg.Interface = p, iface
	return vip.New(cfg)
}

// activeNode is the active node of the active-passive primary
// namespaces as the view records them (failover.Active over their
// shards' primaries), with the groups it is primary of. 0 when none.
func activeNode(v *controlplane.View) (uint64, []uint64) {
	var groups []uint64
	var prims []failover.NodeID
	for _, ns := range v.Namespaces {
		if ns.Policy.Engine() != kv.EnginePrimary || ns.Policy.Availability != kv.AvailabilityActivePassive {
			continue
		}
		for _, sh := range ns.Shards {
			groups = append(groups, sh.Group)
			prims = append(prims, v.Primaries[sh.Group].Primary)
		}
	}
	active := failover.Active(prims)
	var shards []uint64
	for i, g := range groups {
		if active != 0 && prims[i] == active {
			shards = append(shards, g)
		}
	}
	slices.Sort(shards)
	return uint64(active), shards
}

// shouldCarryVIP says whether this node should carry the service address
// now: the view names it the active node, and its engine is primary of
// one of those shards holding its lease. The second condition makes an
// active cut off from the control plane (whose view cannot move on)
// release the address when its lease runs out, before another node can
// be promoted and take it.
func (c *cluster) shouldCarryVIP() bool {
	active, shards := activeNode(c.meta.View())
	if active != c.id {
		return false
	}
	for _, g := range shards {
		if st, err := c.primary.Status(int(g)); err == nil && st.Role == primary.Primary && st.Lag.Time == 0 {
			return true
		}
	}
	return false
}

// runVIP keeps the service address on this node while it should carry
// it, until ctx ends; then it releases the address. If the kernel does
// not let it manage the address, it says so once and stops: clients can
// still reach the active through any node.
func (c *cluster) runVIP(ctx context.Context, o *vip.Owner) {
	t := time.NewTicker(vipCheck)
	defer t.Stop()
	held := false
	var announced time.Time
	release := func(why string) {
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := o.Release(rctx); err != nil {
			c.logger.Error("cannot release the service address", "vip", o.String(), "err", err)
			return
		}
		held = false
		c.logger.Info("service address released", "vip", o.String(), "why", why)
	}
	// A process killed while it carried the address left it on the
	// interface, where the host still answers ARP for it: drop it until
	// this node is the active one again.
	if stale, err := o.Held(); err == nil && stale {
		held = true
		release("left by an earlier run")
	}
	for {
		select {
		case <-ctx.Done():
			if held {
				release("node stopping")
			}
			return
		case <-t.C:
		}
		want := c.shouldCarryVIP()
		switch {
		case want && !held:
			if err := o.Acquire(ctx); err != nil {
				if errors.Is(err, vip.ErrNotPermitted) || errors.Is(err, vip.ErrNotSupported) {
					c.logger.Error("service address takeover is not possible here; clients must follow the active node themselves", "vip", o.String(), "err", err)
					return
				}
				c.logger.Warn("cannot take the service address; retrying", "vip", o.String(), "err", err)
				continue
			}
			held, announced = true, time.Now()
			c.logger.Info("service address taken: this node is the active one", "vip", o.String())
		case !want && held:
			release("no longer the active node, or its lease lapsed")
		case held && time.Since(announced) >= vipReannounce:
			if err := o.Announce(ctx); err != nil && ctx.Err() == nil {
				c.logger.Warn("cannot announce the service address", "vip", o.String(), "err", err)
			}
			announced = time.Now()
		}
	}
}
