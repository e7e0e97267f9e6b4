package raftstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

func TestPlanMembership(t *testing.T) {
	caughtUp := func(ids ...uint64) (map[uint64]uint64, map[uint64]bool) {
		m, a := map[uint64]uint64{}, map[uint64]bool{}
		for _, id := range ids {
			m[id], a[id] = 1000, true
		}
		return m, a
	}
	leader := func(self uint64, voters, learners []uint64, caught ...uint64) GroupStatus {
		m, a := caughtUp(caught...)
		for _, id := range append(slices.Clone(voters), learners...) {
			if _, ok := m[id]; !ok {
				m[id], a[id] = 10, true // far behind
			}
		}
		return GroupStatus{Leader: self, Commit: 1000, Voters: voters, Learners: learners, Match: m, Active: a}
	}
	for _, tc := range []struct {
		name             string
		st               GroupStatus
		self             uint64
		voters, learners []uint64
		want             Step
	}{
		{"not the leader", GroupStatus{Leader: 2, Voters: []uint64{1, 2, 3}}, 1, []uint64{1, 2, 4}, nil, Step{}},
		{"already there", leader(1, []uint64{1, 2, 3}, nil, 1, 2, 3), 1, []uint64{3, 2, 1}, nil, Step{}},
		{"joint: wait", func() GroupStatus {
			s := leader(1, []uint64{1, 2, 3, 4}, nil, 1, 2, 3, 4)
			s.Joint = true
			return s
		}(), 1, []uint64{1, 2, 4}, nil, Step{Kind: StepWait}},
		{"new replica starts as a learner", leader(1, []uint64{1, 2, 3}, nil, 1, 2, 3), 1, []uint64{1, 2, 4}, nil,
			Step{Kind: StepAddLearner, Node: 4}},
		{"learner behind: wait", leader(1, []uint64{1, 2, 3}, []uint64{4}, 1, 2, 3), 1, []uint64{1, 2, 4}, nil,
			Step{Kind: StepWait}},
		{"caught-up learner replaces the outgoing voter in one change", leader(1, []uint64{1, 2, 3}, []uint64{4}, 1, 2, 3, 4), 1, []uint64{1, 2, 4}, nil,
			Step{Kind: StepPromote, Node: 4, Remove: 3}},
		{"the leader leaving hands over first", leader(3, []uint64{1, 2, 3}, []uint64{4}, 1, 2, 3, 4), 3, []uint64{1, 2, 4}, nil,
			Step{Kind: StepTransfer, Node: 1}},
		{"the leader leaving, no caught-up voter that stays: keeps adding", func() GroupStatus {
			s := leader(3, []uint64{1, 2, 3}, nil, 3)
			s.Active[1], s.Active[2] = false, false
			return s
		}(), 3, []uint64{1, 2, 4}, nil, Step{Kind: StepAddLearner, Node: 4}},
		{"an unwanted learner is removed", leader(1, []uint64{1, 2, 3}, []uint64{5}, 1, 2, 3, 5), 1, []uint64{1, 2, 3}, nil,
			Step{Kind: StepRemove, Node: 5}},
		{"growing: promote without removal", leader(1, []uint64{1, 2, 3}, []uint64{4, 5}, 1, 2, 3, 4, 5), 1, []uint64{1, 2, 3, 4, 5}, nil,
			Step{Kind: StepPromote, Node: 4}},
		{"shrinking: remove the extra voter", leader(1, []uint64{1, 2, 3, 4, 5}, nil, 1, 2, 3, 4, 5), 1, []uint64{1, 2, 3}, nil,
			Step{Kind: StepRemove, Node: 4}},
		{"meta: the replaced voter stays a learner", leader(1, []uint64{1, 2, 3}, []uint64{4}, 1, 2, 3, 4), 1, []uint64{1, 2, 4}, []uint64{3},
			Step{Kind: StepPromote, Node: 4, Remove: 3, Demote: true}},
		{"meta: missing learners are added", leader(1, []uint64{1, 2, 3}, nil, 1, 2, 3), 1, []uint64{1, 2, 3}, []uint64{5, 4},
			Step{Kind: StepAddLearner, Node: 4}},
		{"an inactive learner is not caught up", func() GroupStatus {
			s := leader(1, []uint64{1, 2, 3}, []uint64{4}, 1, 2, 3, 4)
			s.Active[4] = false
			return s
		}(), 1, []uint64{1, 2, 4}, nil, Step{Kind: StepWait}},
		{"the leader is the last to go: wait for a caught-up voter", func() GroupStatus {
			s := leader(3, []uint64{1, 2, 3, 4}, nil, 3, 4)
			s.Active[4] = false
			return s
		}(), 3, []uint64{1, 2, 4}, nil, Step{Kind: StepWait}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PlanMembership(tc.st, tc.self, tc.voters, tc.learners); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestMoveReplicaUnderWrites moves a group's replica from node 3 to node 4
// (learner, catch-up by snapshot, joint promote-and-remove, leadership
// handed off by a leaving leader) while writers run, and checks that every
// acknowledged write is on the new replica set.
func TestMoveReplicaUnderWrites(t *testing.T) {
	for _, leaving := range []uint64{3, 0} { // 0: the leader leaves
		t.Run(fmt.Sprintf("leaving=%d", leaving), func(t *testing.T) {
			c := newTestCluster(t, 11, 3, 1, func(cfg *Config) { cfg.CompactAfter = 50 })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			lead := c.leader(1, 5*time.Second)
			if leaving == 0 {
				leaving = lead
			}
			target := []uint64{4}
			for _, id := range c.ids {
				if id != leaving {
					target = append(target, id)
				}
			}
			slices.Sort(target)

			// Writers on the nodes that stay, through the move.
			var acked sync.Map
			var nacked atomic.Int64
			var stop atomic.Bool
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					via := target[w%2]
					for i := 0; !stop.Load(); i++ {
						key := fmt.Sprintf("w%d-%d", w, i%50)
						wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
						_, err := c.node(via).Write(wctx, 1, set(key, fmt.Sprint(i)))
						wcancel()
						if err == nil {
							acked.Store(key, fmt.Sprint(i))
							nacked.Add(1)
						}
					}
				}()
			}
			waitAcks := func(n int64) {
				t.Helper()
				for deadline := time.Now().Add(10 * time.Second); nacked.Load() < n; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("only %d writes acknowledged, want %d", nacked.Load(), n)
					}
				}
			}
			waitAcks(20)
			// The new replica waits for a conf change and a snapshot.
			c.specs[0].Peers = nil
			if err := c.start(4, vfs.NewCrashableMem()); err != nil {
				t.Fatal(err)
			}
			var steps []Step
			deadline := time.Now().Add(20 * time.Second)
			for {
				st, _ := c.node(target[0]).Status(1)
				if slices.Equal(st.Voters, target) && len(st.Learners) == 0 && !st.Joint {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("membership did not converge: voters %v learners %v joint %v; steps %v", st.Voters, st.Learners, st.Joint, steps)
				}
				for _, id := range append(slices.Clone(c.ids), 4) {
					n := c.node(id)
					if n == nil {
						continue
					}
					sctx, scancel := context.WithTimeout(ctx, time.Second)
					s, err := n.ConvergeMembership(sctx, 1, target, nil)
					scancel()
					if s.Kind != StepNone && s.Kind != StepWait {
						steps = append(steps, s)
					}
					if err != nil && !errors.Is(err, context.DeadlineExceeded) && kv.CodeOf(err) == kv.CodeInternal {
						t.Fatalf("converge on %d: %v", id, err)
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
			waitAcks(nacked.Load() + 20) // the new set takes writes
			stop.Store(true)
			wg.Wait()
			t.Logf("steps: %v", steps)
			if !slices.ContainsFunc(steps, func(s Step) bool { return s.Kind == StepPromote && s.Node == 4 && s.Remove == leaving }) {
				t.Fatalf("no joint promote-and-remove among the steps %v", steps)
			}
			// Every acknowledged write is on every replica of the new set.
			acked.Range(func(k, v any) bool {
				for _, id := range target {
					got, ok, err := c.node(id).Get(ctx, 1, testNS, []byte(k.(string)))
					if err != nil || !ok {
						t.Fatalf("node %d: acknowledged %s missing: %v %v", id, k, ok, err)
					}
					_ = got // a later unacknowledged write may have overwritten it
				}
				return true
			})
			// The new set elects among itself.
			lead = c.node(target[0]).Leader(1)
			if !slices.Contains(target, lead) {
				t.Fatalf("leader %d is not in the new set %v", lead, target)
			}
		})
	}
}
