package controlplane

import (
	"context"
	"slices"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// perNode counts the replicas each node holds in a layout.
func perNode(ns kv.NamespaceInfo) map[uint64]int {
	m := map[uint64]int{}
	for _, sh := range ns.Shards {
		for _, id := range sh.Replicas {
			m[id]++
		}
	}
	return m
}

func TestRebalanceOnJoinAndRemove(t *testing.T) {
	s, _ := newTestService(t)
	ctx := context.Background()
	for id := uint64(1); id <= 3; id++ {
		if err := s.RegisterMember(ctx, Member{ID: id, PeerAddr: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	p := kv.Policy{Consistency: kv.ConsistencyStrong, Replicas: 3, Shards: 16}
	before, err := s.CreateNamespace(ctx, "ns", p)
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range before.Shards {
		if !slices.Equal(sh.Initial, sh.Replicas) {
			t.Fatalf("shard %d: initial %v, want the replicas %v", sh.Shard, sh.Initial, sh.Replicas)
		}
	}
	// Balanced already: nothing moves.
	if n, err := s.Rebalance(ctx); err != nil || n != 0 {
		t.Fatalf("rebalance of a balanced layout: moved %d, %v", n, err)
	}

	// A fourth node joins: it takes its share (12 of 48), one replica per
	// moved shard, and the nodes it replaces lose the right to bootstrap.
	if err := s.RegisterMember(ctx, Member{ID: 4, PeerAddr: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := s.Rebalance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after, err := s.Namespace(ctx, "ns")
	if err != nil {
		t.Fatal(err)
	}
	if got := perNode(after); got[4] != 12 || got[1] != 12 || got[2] != 12 || got[3] != 12 {
		t.Fatalf("replicas per node after join: %v, want 12 each", got)
	}
	if n != 12 {
		t.Fatalf("moved %d shards, want 12 (one replica each)", n)
	}
	for i, sh := range after.Shards {
		if slices.Contains(sh.Initial, 4) {
			t.Fatalf("shard %d: the joined node may bootstrap: initial %v", i, sh.Initial)
		}
		for _, id := range sh.Initial {
			if !slices.Contains(sh.Replicas, id) {
				t.Fatalf("shard %d: initial %v not within replicas %v", i, sh.Initial, sh.Replicas)
			}
		}
		if sh.Group != before.Shards[i].Group {
			t.Fatalf("shard %d changed group", i)
		}
	}
	if n, err := s.Rebalance(ctx); err != nil || n != 0 {
		t.Fatalf("second rebalance moved %d, %v", n, err)
	}

	// Removing node 2 moves its replicas to the other three.
	if err := s.RemoveMember(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.View().Members[2].State; st != StateLeaving {
		t.Fatalf("node 2 state %q, want leaving", st)
	}
	// Its record rewritten at restart keeps the state.
	if err := s.RegisterMember(ctx, Member{ID: 2, PeerAddr: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.View().Members[2].State; st != StateLeaving {
		t.Fatalf("node 2 state after re-registering %q, want leaving", st)
	}
	if _, err := s.Rebalance(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := perNode(s.View().Namespaces["ns"]); got[2] != 0 || got[1] != 16 || got[3] != 16 || got[4] != 16 {
		t.Fatalf("replicas per node after removing 2: %v", got)
	}
	if s.View().Holds(2) {
		t.Fatal("Holds(2) after it was emptied")
	}
	// Another removal would leave 2 nodes for 3 replicas.
	if err := s.RemoveMember(ctx, 3); kv.CodeOf(err) != kv.CodeInvalid {
		t.Fatalf("removing below the replication factor: got %v, want INVALID", err)
	}
	if err := s.RemoveMember(ctx, 9); kv.CodeOf(err) != kv.CodeNotFound {
		t.Fatalf("removing a stranger: got %v, want NOT_FOUND", err)
	}
	// Creating a namespace now uses only the active nodes.
	if _, err := s.CreateNamespace(ctx, "later", kv.Policy{Consistency: kv.ConsistencyStrong, Replicas: 3, Shards: 4}); err != nil {
		t.Fatal(err)
	}
	if s.Refresh(ctx) == nil && perNode(s.View().Namespaces["later"])[2] != 0 {
		t.Fatal("a new namespace was placed on a leaving node")
	}
}

func TestMetaMembers(t *testing.T) {
	v := &View{Members: map[uint64]Member{
		1: {ID: 1}, 2: {ID: 2, State: StateLeaving}, 3: {ID: 3}, 4: {ID: 4}, 5: {ID: 5, State: StateRemoved},
	}}
	voters, learners := MetaMembers(v, []uint64{1, 2, 3})
	if !slices.Equal(voters, []uint64{1, 3, 4}) || !slices.Equal(learners, []uint64{2}) {
		t.Fatalf("got voters %v learners %v, want [1 3 4] and [2]", voters, learners)
	}
	// Fewer active members than voters: as many as there are.
	v.Members[4] = Member{ID: 4, State: StateRemoved}
	voters, learners = MetaMembers(v, []uint64{1, 2, 3})
	if !slices.Equal(voters, []uint64{1, 3}) || !slices.Equal(learners, []uint64{2}) {
		t.Fatalf("got voters %v learners %v, want [1 3] and [2]", voters, learners)
	}
}

// Removing a node that holds a replica of a primary namespace is refused
// (its replicas are not moved): the removal would never finish.
func TestRemoveMemberRefusesPrimaryReplicas(t *testing.T) {
	s, _ := newTestService(t)
	ctx := context.Background()
	for id := uint64(1); id <= 4; id++ {
		if err := s.RegisterMember(ctx, Member{ID: id, PeerAddr: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	p := kv.Policy{Replication: kv.ReplicationPrimary, Ack: kv.AckSync, Availability: kv.AvailabilityActivePassive, Replicas: 3, Shards: 1}
	info, err := s.CreateNamespace(ctx, "orders", p.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	holder := info.Shards[0].Replicas[0]
	if err := s.RemoveMember(ctx, holder); kv.CodeOf(err) != kv.CodeInvalid {
		t.Fatalf("removing node %d, which holds a primary namespace's replica: got %v, want INVALID", holder, err)
	}
	for id := uint64(1); id <= 4; id++ {
		if !slices.Contains(info.Shards[0].Replicas, id) {
			if err := s.RemoveMember(ctx, id); err != nil {
				t.Fatalf("removing node %d, which holds none: %v", id, err)
			}
		}
	}
}
