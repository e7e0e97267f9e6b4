package raftstore

import (
	"context"
	"fmt"
	"slices"

	pb "go.etcd.io/raft/v3/raftpb"
)

// StepKind says what a membership Step does.
type StepKind int

// Membership steps, in the order PlanMembership considers them.
const (
	// StepNone: the group already has the target membership, or this
	// replica does not lead it.
	StepNone StepKind = iota
	// StepWait: a change is under way (a joint configuration, a learner
	// catching up); nothing to do until it finishes.
	StepWait
	// StepTransfer: the leader is leaving, so it hands the leadership to
	// Node (a caught-up voter that stays) before anything is removed.
	StepTransfer
	// StepAddLearner: Node joins as a learner and starts catching up.
	StepAddLearner
	// StepPromote: the caught-up learner Node becomes a voter; in the same
	// joint change Remove (if not 0) leaves, or turns learner if Demote.
	StepPromote
	// StepRemove: Node leaves the group (or turns learner if Demote).
	StepRemove
)

func (k StepKind) String() string {
	switch k {
	case StepNone:
		return "none"
	case StepWait:
		return "wait"
	case StepTransfer:
		return "transfer"
	case StepAddLearner:
		return "add-learner"
	case StepPromote:
		return "promote"
	case StepRemove:
		return "remove"
	}
	return fmt.Sprintf("step(%d)", int(k))
}

// Step is one membership change toward a target.
type Step struct {
	Kind   StepKind
	Node   uint64
	Remove uint64
	// Demote makes the leaving voter a learner instead of removing it.
	Demote bool
}

func (s Step) String() string {
	switch s.Kind {
	case StepPromote:
		if s.Remove != 0 {
			verb := "remove"
			if s.Demote {
				verb = "demote"
			}
			return fmt.Sprintf("promote %d, %s %d", s.Node, verb, s.Remove)
		}
		return fmt.Sprintf("promote %d", s.Node)
	case StepRemove:
		if s.Demote {
			return fmt.Sprintf("demote %d", s.Node)
		}
		return fmt.Sprintf("remove %d", s.Node)
	case StepTransfer, StepAddLearner:
		return fmt.Sprintf("%s %d", s.Kind, s.Node)
	}
	return s.Kind.String()
}

// CatchUpSlack is how many entries behind the commit index a learner may
// be and still count as caught up: under steady load a healthy learner is
// always a few in-flight appends behind.
const CatchUpSlack = 256

// PlanMembership returns the next change that moves a group from the
// membership st shows toward voters (and learners, a disjoint set), as
// seen by the replica self. Only the leader plans (st.Match is its
// progress view); every other replica gets StepNone.
//
// It never lowers the group's fault tolerance on the way: a new voter is
// added as a learner first and promoted only once caught up, in one joint
// change with the voter it replaces; an outgoing voter is removed on its
// own only once every target voter is in; a leaving leader hands off its
// leadership before it is removed. The plan is deterministic (nodes are
// considered in id order), so repeated rounds make steady progress.
func PlanMembership(st GroupStatus, self uint64, voters, learners []uint64) Step {
	if st.Leader != self || st.Match == nil || len(voters) == 0 {
		return Step{}
	}
	if st.Joint {
		return Step{Kind: StepWait}
	}
	target := idSet(voters)
	targetL := idSet(learners)
	for id := range target {
		delete(targetL, id)
	}
	cur, curL := idSet(st.Voters), idSet(st.Learners)
	caught := func(id uint64) bool {
		return st.Active[id] && st.Match[id]+CatchUpSlack >= st.Commit
	}
	// Leaving the voters, the leader first hands over to a caught-up
	// voter that stays; if there is none yet, it keeps leading (and adds
	// learners) until there is.
	if !target[self] {
		for _, id := range sortedIDs(cur) {
			if target[id] && caught(id) {
				return Step{Kind: StepTransfer, Node: id}
			}
		}
	}
	for _, id := range sortedIDs(curL) {
		if !target[id] && !targetL[id] {
			return Step{Kind: StepRemove, Node: id}
		}
	}
	for _, id := range sortedIDs(idUnion(target, targetL)) {
		if !cur[id] && !curL[id] {
			return Step{Kind: StepAddLearner, Node: id}
		}
	}
	// The voters that should go, the leader itself last.
	var outgoing []uint64
	for _, id := range sortedIDs(cur) {
		if !target[id] && id != self {
			outgoing = append(outgoing, id)
		}
	}
	if !target[self] && cur[self] {
		outgoing = append(outgoing, self)
	}
	waiting := false
	for _, id := range sortedIDs(curL) {
		if !target[id] {
			continue
		}
		if !caught(id) {
			waiting = true
			continue
		}
		s := Step{Kind: StepPromote, Node: id}
		if len(outgoing) > 0 && outgoing[0] != self {
			s.Remove, s.Demote = outgoing[0], targetL[outgoing[0]]
		}
		return s
	}
	if waiting {
		return Step{Kind: StepWait}
	}
	if len(outgoing) > 0 && outgoing[0] != self {
		return Step{Kind: StepRemove, Node: outgoing[0], Demote: targetL[outgoing[0]]}
	}
	if len(outgoing) > 0 {
		// Only the leader is left to go and no voter that stays is caught
		// up to take over yet.
		return Step{Kind: StepWait}
	}
	return Step{}
}

// ConvergeMembership makes one change, if this replica leads the group,
// toward voters and learners (see PlanMembership) and returns it. It
// returns once the change is applied here (a transfer: once requested).
func (n *Node) ConvergeMembership(ctx context.Context, group uint64, voters, learners []uint64) (Step, error) {
	st, ok := n.Status(group)
	if !ok {
		return Step{}, nil
	}
	s := PlanMembership(st, n.cfg.NodeID, voters, learners)
	var err error
	switch s.Kind {
	case StepTransfer:
		err = n.TransferLeadership(ctx, group, s.Node)
	case StepAddLearner:
		err = n.AddLearner(ctx, group, s.Node)
	case StepPromote:
		add := pb.ConfChangeAddNode
		changes := []*pb.ConfChangeSingle{{Type: &add, NodeId: &s.Node}}
		if s.Remove != 0 {
			changes = append(changes, leave(s.Remove, s.Demote))
		}
		err = n.changeMembership(ctx, group, &pb.ConfChangeV2{Changes: changes})
	case StepRemove:
		err = n.changeMembership(ctx, group, &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{leave(s.Node, s.Demote)}})
	}
	if err != nil {
		return s, fmt.Errorf("group %d: %s: %w", group, s, err)
	}
	return s, nil
}

// leave is the change that takes node out of the voters: removed, or
// kept as a learner.
func leave(node uint64, demote bool) *pb.ConfChangeSingle {
	t := pb.ConfChangeRemoveNode
	if demote {
		t = pb.ConfChangeAddLearnerNode
	}
	return &pb.ConfChangeSingle{Type: &t, NodeId: &node}
}

func idSet(ids []uint64) map[uint64]bool {
	m := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

func idUnion(a, b map[uint64]bool) map[uint64]bool {
	m := make(map[uint64]bool, len(a)+len(b))
	for id := range a {
		m[id] = true
	}
	for id := range b {
		m[id] = true
	}
	return m
}

func sortedIDs(m map[uint64]bool) []uint64 {
	out := make([]uint64, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}
