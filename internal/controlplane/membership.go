package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/placement"
)

func placementIDs(ids []uint64) []placement.NodeID {
	out := make([]placement.NodeID, len(ids))
	for i, id := range ids {
		out[i] = placement.NodeID(strconv.FormatUint(id, 10))
	}
	return out
}

func nodeIDs(set []placement.NodeID) []uint64 {
	out := make([]uint64, len(set))
	for i, n := range set {
		out[i], _ = strconv.ParseUint(string(n), 10, 64)
	}
	return out
}

// Rebalance recomputes every namespace's layout over the active members
// and records the ones that change: replicas on leaving members move to
// others, and members that joined take their share, with the fewest moves
// placement can find. It only writes targets; each shard's leader then
// moves the group there one safe step at a time. It returns the number
// of shards whose replica set changed. One node (the control plane's
// leader) runs it; the records' versions make a racing run harmless.
func (s *Service) Rebalance(ctx context.Context) (int, error) {
	v := s.View()
	active := v.Active()
	moved := 0
	for _, name := range sortedNames(v) {
		ns := v.Namespaces[name]
		if ns.Policy.Engine() == kv.EnginePrimary {
			// Log shipping has no membership change yet: a primary
			// namespace keeps the replicas it was created with.
			continue
		}
		if len(active) < ns.Policy.Replicas {
			continue // not enough nodes: keep what there is (RemoveMember refuses this)
		}
		cur := make(placement.Assignment, len(ns.Shards))
		for i, sh := range ns.Shards {
			cur[i] = placementIDs(sh.Replicas)
		}
		next, _, err := placement.Rebalance(name, cur, ns.Policy.Replicas, placementIDs(active))
		if err != nil {
			return moved, fmt.Errorf("control plane: rebalance %q: %w", name, err)
		}
		changed := 0
		out := ns
		out.Shards = slices.Clone(ns.Shards)
		for i, sh := range ns.Shards {
			want := nodeIDs(next[i])
			if sameSet(want, sh.Replicas) {
				continue
			}
			changed++
			initial := sh.Initial
			if len(initial) == 0 {
				initial = sh.Replicas
			}
			// A node that leaves the set loses its right to bootstrap:
			// moved back later, it must start empty and be added.
			var keep []uint64
			for _, id := range initial {
				if slices.Contains(want, id) {
					keep = append(keep, id)
				}
			}
			out.Shards[i].Replicas, out.Shards[i].Initial = want, keep
		}
		if changed == 0 {
			continue
		}
		data, err := json.Marshal(out)
		if err != nil {
			return moved, err
		}
		res, err := s.write(ctx, kv.Op{Kind: kv.OpSet, Key: []byte(nsPrefix + name), Value: data, Cond: kv.CondVersion, IfVersion: v.nsVersions[name]})
		if err != nil {
			return moved, err
		}
		if res[0].Applied {
			moved += changed
			s.cfg.Logger.Info("namespace re-laid out", "namespace", name, "shards_moved", changed)
		}
	}
	if moved > 0 {
		s.kick()
	}
	return moved, nil
}

// RemoveMember starts emptying a member: it is marked leaving, so the
// next rebalance moves its replicas to the others. It fails with INVALID
// when the others could not hold every namespace's replicas.
func (s *Service) RemoveMember(ctx context.Context, id uint64) error {
	if err := s.Refresh(ctx); err != nil {
		return err
	}
	v := s.View()
	m, ok := v.Members[id]
	if !ok {
		return kv.Errorf(kv.CodeNotFound, "node %d is not a member", id)
	}
	if m.State != StateActive {
		return nil // already leaving or removed
	}
	left := len(v.Active()) - 1
	for _, name := range sortedNames(v) {
		ns := v.Namespaces[name]
		if r := ns.Policy.Replicas; r > left {
			return kv.Errorf(kv.CodeInvalid, "cannot remove node %d: namespace %q keeps %d replicas and only %d node(s) would remain", id, name, r, left)
		}
		// Rebalancing does not move a primary namespace's replicas yet, so
		// the removal would never finish: refuse it rather than hang.
		if ns.Policy.Engine() == kv.EnginePrimary && slices.ContainsFunc(ns.Shards, func(sh kv.ShardInfo) bool { return slices.Contains(sh.Replicas, id) }) {
			return kv.Errorf(kv.CodeInvalid, "cannot remove node %d: it holds replicas of replication=primary namespace %q, which are not moved between nodes yet (drop the namespace, or keep the node)", id, name)
		}
	}
	return s.setState(ctx, id, StateLeaving)
}

// MarkRemoved records that a leaving member holds nothing any more; the
// control plane's leader then takes it out of the metadata group.
func (s *Service) MarkRemoved(ctx context.Context, id uint64) error {
	return s.setState(ctx, id, StateRemoved)
}

func (s *Service) setState(ctx context.Context, id uint64, state string) error {
	_, err := s.write(ctx, kv.Op{Kind: kv.OpSet, Key: []byte(statePrefix + strconv.FormatUint(id, 10)), Value: []byte(state)})
	s.kick()
	return err
}

// MetaMembers returns the membership the control plane's own group should
// have, given its current voters: as many voters as now (at most the
// active members), keeping the active ones and filling vacancies with the
// lowest-id active members; every other member that is not removed
// follows as a learner.
func MetaMembers(v *View, voters []uint64) (wantVoters, wantLearners []uint64) {
	active := v.Active()
	n := min(max(len(voters), 1), len(active))
	for _, id := range voters {
		if len(wantVoters) < n && slices.Contains(active, id) {
			wantVoters = append(wantVoters, id)
		}
	}
	for _, id := range active {
		if len(wantVoters) < n && !slices.Contains(wantVoters, id) {
			wantVoters = append(wantVoters, id)
		}
	}
	for _, id := range v.MemberIDs() {
		if v.Members[id].State != StateRemoved && !slices.Contains(wantVoters, id) {
			wantLearners = append(wantLearners, id)
		}
	}
	slices.Sort(wantVoters)
	return wantVoters, wantLearners
}

func sortedNames(v *View) []string {
	names := make([]string, 0, len(v.Namespaces))
	for n := range v.Namespaces {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func sameSet(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for _, id := range a {
		if !slices.Contains(b, id) {
			return false
		}
	}
	return true
}
