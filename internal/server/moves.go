package server

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/controlplane"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/raftstore"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// Replica moves work in three layers. The control plane's leader writes
// targets (Rebalance: a shard's replica set in its namespace record).
// Each group's leader moves the group's Raft membership to its target one
// safe step at a time (raftstore.ConvergeMembership). Every node creates
// the replicas the targets give it and drops the ones that are out of
// their group's membership (reconcile, dropLingering).

// maintainInterval is how often a node works toward the targets;
// leaderBalanceEvery rounds it also hands leaderships back.
const (
	maintainInterval   = 500 * time.Millisecond
	leaderBalanceEvery = 4
)

// maintain runs until ctx ends: it retries a failed reconciliation,
// converges the groups this node leads, rebalances (on the control
// plane's leader), drops replicas that left their groups, records this
// node as removed once a removal emptied it, and every
// leaderBalanceEvery rounds gives leaderships back to their preferred
// replicas. metaPreferred is the control plane's preferred leader when
// no node is spared primaries by moving it (controlplane.MetaLeaderFor).
func (c *cluster) maintain(ctx context.Context, metaPreferred uint64) {
	t := time.NewTicker(maintainInterval)
	defer t.Stop()
	for round := 1; ; round++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c.reconcileFailed.Load() {
			c.reconcile(c.meta.View()) // a replica could not start or stop: try again
		}
		v := c.meta.View()
		settled := c.converge(ctx, v)
		if st, ok := c.node.Status(controlplane.MetaGroup); ok && st.Leader == c.id {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if _, err := c.meta.Rebalance(rctx); err != nil && ctx.Err() == nil {
				c.logger.Warn("rebalance failed; retrying", "err", err)
			}
			cancel()
		}
		c.dropLingering(ctx, v)
		c.finishRemoval(ctx, v)
		metaPref := metaPreferred
		if st, ok := c.node.Status(controlplane.MetaGroup); ok && st.Leader == c.id {
			c.removeSilent(ctx, v)
			// Checked every round, not every leaderBalanceEvery: while the
			// failover authority shares a node with primaries, a crash of
			// that node costs their failover an election.
			metaPref = controlplane.MetaLeaderFor(v, caughtUp(st, c.id), c.id, metaPreferred)
			if metaPref != c.id && settled[controlplane.MetaGroup] && !failoverLikely(v, st, c.id) {
				c.handLeadership(ctx, st, metaPref)
			}
		}
		if round%leaderBalanceEvery == 0 {
			c.balanceLeaders(ctx, v, metaPref, settled)
		}
	}
}

// converge makes one membership step in every group this node leads whose
// membership differs from its target, in parallel, and returns the groups
// that are at their target.
func (c *cluster) converge(ctx context.Context, v *controlplane.View) map[uint64]bool {
	type target struct{ voters, learners []uint64 }
	targets := make(map[uint64]target)
	for _, ns := range v.Namespaces {
		for _, sh := range ns.Shards {
			targets[sh.Group] = target{voters: sh.Replicas}
		}
	}
	settled := make(map[uint64]bool)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, st := range c.node.Groups() {
		if st.Leader != c.id {
			continue
		}
		tg, ok := targets[st.ID]
		if st.ID == controlplane.MetaGroup {
			tg.voters, tg.learners, ok = c.metaTarget(v, st)
		}
		if !ok {
			continue
		}
		if raftstore.PlanMembership(st, c.id, tg.voters, tg.learners).Kind == raftstore.StepNone {
			settled[st.ID] = true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			step, err := c.node.ConvergeMembership(sctx, st.ID, tg.voters, tg.learners)
			switch {
			case err != nil && ctx.Err() == nil:
				c.logger.Warn("replica move step failed; retrying", "group", st.ID, "namespace", st.Namespace, "shard", st.Shard, "err", err)
			case step.Kind != raftstore.StepNone && step.Kind != raftstore.StepWait:
				c.logger.Info("replica move step", "group", st.ID, "namespace", st.Namespace, "shard", st.Shard, "step", step.String())
			case step.Kind == raftstore.StepNone:
				mu.Lock()
				settled[st.ID] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return settled
}

// metaTarget is the control plane group's target membership; ok is false
// while the cluster is still forming (a voter or learner is not a
// registered member yet), when no change must be made.
func (c *cluster) metaTarget(v *controlplane.View, st raftstore.GroupStatus) (voters, learners []uint64, ok bool) {
	if _, boot := v.Namespaces["default"]; !boot {
		return nil, nil, false
	}
	for _, id := range append(slices.Clone(st.Voters), st.Learners...) {
		if _, ok := v.Members[id]; !ok {
			return nil, nil, false
		}
	}
	voters, learners = controlplane.MetaMembers(v, st.Voters)
	return voters, learners, len(voters) > 0
}

// dropLingering stops and deletes the local replicas whose groups no
// longer count this node: this replica has applied its own removal, or a
// replica of the target set reports a membership without it.
func (c *cluster) dropLingering(ctx context.Context, v *controlplane.View) {
	c.reconciling.Lock()
	ids := make([]uint64, 0, len(c.lingering))
	for id := range c.lingering {
		ids = append(ids, id)
	}
	c.reconciling.Unlock()
	targets := make(map[uint64][]uint64)
	for _, ns := range v.Namespaces {
		for _, sh := range ns.Shards {
			targets[sh.Group] = sh.Replicas
		}
	}
	for _, id := range ids {
		if !c.outOfGroup(ctx, id, targets[id]) {
			continue
		}
		c.reconciling.Lock()
		if c.lingering[id] { // still unwanted (not moved back meanwhile)
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := c.node.RemoveGroup(rctx, id)
			cancel()
			if err == nil {
				delete(c.groups, id)
				delete(c.lingering, id)
				c.logger.Info("shard replica moved away and deleted here", "group", id)
			} else {
				c.logger.Warn("cannot delete a moved-away replica; retrying", "group", id, "err", err)
			}
		}
		c.reconciling.Unlock()
	}
}

// outOfGroup says whether the group's committed membership excludes this
// node, as this replica or one of the target's replicas knows it. A
// remote replica's membership counts only if it applied at least as far
// as this one: an older one may predate this node's latest addition.
func (c *cluster) outOfGroup(ctx context.Context, group uint64, target []uint64) bool {
	excludes := func(voters, learners []uint64) bool {
		return len(voters) > 0 && !slices.Contains(voters, c.id) && !slices.Contains(learners, c.id)
	}
	st, ok := c.node.Status(group)
	if !ok {
		return true // nothing running here
	}
	if excludes(st.Voters, st.Learners) {
		return true
	}
	for _, id := range target {
		if id == c.id {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		reply, err := c.tr.Call(cctx, transport.NodeID(id), transport.KindControl, appendMembershipQuery(nil, group))
		cancel()
		if err != nil {
			continue
		}
		applied, voters, learners, err := decodeMembership(reply)
		if err == nil && applied >= st.Applied && excludes(voters, learners) {
			return true
		}
	}
	return false
}

// finishRemoval records this node as removed once it is leaving and holds
// no data replica any more.
func (c *cluster) finishRemoval(ctx context.Context, v *controlplane.View) {
	if v.Members[c.id].State != controlplane.StateLeaving || v.Holds(c.id) {
		return
	}
	c.reconciling.Lock()
	n := len(c.groups)
	c.reconciling.Unlock()
	if n > 0 {
		return
	}
	mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := c.meta.MarkRemoved(mctx, c.id); err == nil {
		c.logger.Info("this node holds no replica any more: removed from the cluster; it can be stopped")
	}
}

// deadAfter is how long a leaving member must have been silent for the
// control plane's leader to record it removed on its behalf.
const deadAfter = 10 * time.Second

// removeSilent records as removed the leaving members that no layout
// holds any more and that have not been heard from for deadAfter: a node
// removed because it died cannot say so itself. (The shards' leaders take
// it out of their groups whether it is alive or not.)
func (c *cluster) removeSilent(ctx context.Context, v *controlplane.View) {
	for _, id := range v.MemberIDs() {
		if id == c.id || v.Members[id].State != controlplane.StateLeaving || v.Holds(id) {
			continue
		}
		if time.Since(c.node.LastHeard(id)) < deadAfter || time.Since(c.started) < deadAfter {
			continue
		}
		mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := c.meta.MarkRemoved(mctx, id); err == nil {
			c.logger.Info("a leaving node that is silent was recorded removed", "node", id)
		}
		cancel()
	}
}

// balanceLeaders gives back each leadership this node holds of a settled
// group whose preferred leader (the first replica in the layout; for the
// control plane metaPreferred, see controlplane.MetaLeaderFor) is another
// node that is fully caught up. After a failure and recovery the leaders
// return to where placement spread them, instead of piling up on the
// survivors.
func (c *cluster) balanceLeaders(ctx context.Context, v *controlplane.View, metaPreferred uint64, settled map[uint64]bool) {
	preferred := map[uint64]uint64{controlplane.MetaGroup: metaPreferred}
	for _, ns := range v.Namespaces {
		for _, sh := range ns.Shards {
			preferred[sh.Group] = sh.Replicas[0]
		}
	}
	var wg sync.WaitGroup
	for _, st := range c.node.Groups() {
		pref := preferred[st.ID]
		if pref == 0 || !settled[st.ID] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.handLeadership(ctx, st, pref)
		}()
	}
	wg.Wait()
}

// caughtUp lists the group's voters that hold everything committed (self,
// the leader, included): a dead or lagging voter cannot take the
// leadership, so it must not be where MetaLeaderFor points.
func caughtUp(st raftstore.GroupStatus, self uint64) []uint64 {
	var out []uint64
	for _, id := range st.Voters {
		if m, ok := st.Match[id]; id == self || (ok && m >= st.Commit) {
			out = append(out, id)
		}
	}
	return out
}

// failoverLikely says whether a primary's node is a voter that is not
// caught up: probably down, its shards' failover pending. A new
// control-plane leader would count every lease as granted when it took
// office and so delay that failover by a lease: keep the leadership
// until the primaries have moved.
func failoverLikely(v *controlplane.View, st raftstore.GroupStatus, self uint64) bool {
	for _, rec := range v.Primaries {
		id := uint64(rec.Primary)
		if id == 0 || id == self || !slices.Contains(st.Voters, id) {
			continue
		}
		if m, ok := st.Match[id]; !ok || m < st.Commit {
			return true
		}
	}
	return false
}

// handLeadership transfers the leadership of a group this node leads to
// pref if pref is a voter that is fully caught up; otherwise leading
// stays here.
func (c *cluster) handLeadership(ctx context.Context, st raftstore.GroupStatus, pref uint64) {
	if st.Leader != c.id || pref == c.id || !slices.Contains(st.Voters, pref) {
		return
	}
	if m, ok := st.Match[pref]; !ok || m < st.Commit {
		return // not caught up (or down)
	}
	tctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := c.node.TransferLeadership(tctx, st.ID, pref); err == nil {
		c.logger.Info("leadership handed to the preferred replica", "group", st.ID, "namespace", st.Namespace, "shard", st.Shard, "to", pref)
	}
}

// Control calls between nodes: a membership query, and the failover
// authority's calls (a second byte says which; see primary.go).
const (
	ctlMembership = 1
	ctlPrimary    = 2
)

func appendMembershipQuery(dst []byte, group uint64) []byte {
	return binary.AppendUvarint(append(dst, ctlMembership), group)
}

// serveControl answers another node's control call: the membership of a
// group as this replica has applied it, and how far it applied.
func (c *cluster) serveControl(ctx context.Context, from transport.NodeID, kind transport.Kind, req []byte) ([]byte, error) {
	if len(req) >= 2 && req[0] == ctlPrimary {
		return c.serveAuthority(ctx, uint64(from), req[1], req[2:])
	}
	if len(req) == 0 || req[0] != ctlMembership {
		return nil, kv.Errorf(kv.CodeInvalid, "control: unknown call")
	}
	group, n := binary.Uvarint(req[1:])
	if n <= 0 {
		return nil, kv.Errorf(kv.CodeInvalid, "control: corrupt membership query")
	}
	st, ok := c.node.Status(group)
	if !ok {
		return nil, kv.Errorf(kv.CodeNotFound, "control: no replica of group %d on node %d", group, c.id)
	}
	out := binary.AppendUvarint(nil, st.Applied)
	out = binary.AppendUvarint(out, uint64(len(st.Voters)))
	for _, id := range st.Voters {
		out = binary.AppendUvarint(out, id)
	}
	out = binary.AppendUvarint(out, uint64(len(st.Learners)))
	for _, id := range st.Learners {
		out = binary.AppendUvarint(out, id)
	}
	return out, nil
}

func decodeMembership(b []byte) (applied uint64, voters, learners []uint64, err error) {
	bad := errors.New("control: corrupt membership reply")
	applied, k := binary.Uvarint(b)
	if k <= 0 {
		return 0, nil, nil, bad
	}
	b = b[k:]
	list := func() ([]uint64, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > 64 {
			return nil, bad
		}
		b = b[k:]
		out := make([]uint64, 0, n)
		for i := uint64(0); i < n; i++ {
			id, k := binary.Uvarint(b)
			if k <= 0 {
				return nil, bad
			}
			b = b[k:]
			out = append(out, id)
		}
		return out, nil
	}
	if voters, err = list(); err != nil {
		return 0, nil, nil, err
	}
	if learners, err = list(); err != nil {
		return 0, nil, nil, err
	}
	return applied, voters, learners, nil
}

// serveMembers serves DELETE /v1/cluster/members/{id}: start removing a
// node (its replicas move to the others; it reports removed when empty).
func (c *cluster) serveMembers(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	fail := func(err error) {
		code := kv.CodeOf(err)
		w.WriteHeader(code.HTTPStatus())
		_ = json.NewEncoder(w).Encode(map[string]string{"code": string(code), "message": err.Error()})
	}
	if r.Method != http.MethodDelete {
		w.Header().Set("Allow", http.MethodDelete)
		fail(kv.Errorf(kv.CodeInvalid, "method %s not allowed on %s (allowed: DELETE)", r.Method, r.URL.Path))
		return
	}
	id, err := strconv.ParseUint(strings.TrimPrefix(r.URL.Path, "/v1/cluster/members/"), 10, 64)
	if err != nil || id == 0 {
		fail(kv.Errorf(kv.CodeInvalid, "%q is not a node id", strings.TrimPrefix(r.URL.Path, "/v1/cluster/members/")))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := c.meta.RemoveMember(ctx, id); err != nil {
		fail(err)
		return
	}
	c.logger.Info("node removal started", "node", id)
	_ = json.NewEncoder(w).Encode(map[string]any{"node": id, "state": controlplane.StateLeaving})
}
