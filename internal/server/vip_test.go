package server

import (
	"slices"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/controlplane"
	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/kv"
)

func TestActiveNode(t *testing.T) {
	ap := kv.Policy{Replication: kv.ReplicationPrimary, Ack: kv.AckSync, Availability: kv.AvailabilityActivePassive}
	aa := ap
	aa.Availability = kv.AvailabilityActiveActive
	ns := func(name string, p kv.Policy, groups ...uint64) kv.NamespaceInfo {
		n := kv.NamespaceInfo{Name: name, Policy: p}
		for i, g := range groups {
			n.Shards = append(n.Shards, kv.ShardInfo{Shard: i, Group: g, Replicas: []uint64{1, 2, 3}})
		}
		return n
	}
	view := func(prims map[uint64]uint64, nss ...kv.NamespaceInfo) *controlplane.View {
		v := &controlplane.View{Namespaces: map[string]kv.NamespaceInfo{}, Primaries: map[uint64]controlplane.PrimaryRecord{}}
		for _, n := range nss {
			v.Namespaces[n.Name] = n
		}
		for g, p := range prims {
			v.Primaries[g] = controlplane.PrimaryRecord{Group: g, Epoch: 1, Primary: failover.NodeID(p)}
		}
		return v
	}
	for _, tc := range []struct {
		name   string
		v      *controlplane.View
		active uint64
		shards []uint64
	}{
		{"none", view(nil), 0, nil},
		{"no primary yet", view(nil, ns("a", ap, 10, 11)), 0, nil},
		{"one node holds all", view(map[uint64]uint64{10: 3, 11: 3}, ns("a", ap, 10, 11)), 3, []uint64{10, 11}},
		{"most shards win", view(map[uint64]uint64{10: 1, 11: 2, 12: 2}, ns("a", ap, 10, 11, 12)), 2, []uint64{11, 12}},
		{"ties to the highest id", view(map[uint64]uint64{10: 1, 11: 2}, ns("a", ap, 10, 11)), 2, []uint64{11}},
		{"active-active does not count", view(map[uint64]uint64{10: 1, 20: 3, 21: 3}, ns("a", ap, 10), ns("b", aa, 20, 21)), 1, []uint64{10}},
		{"strong does not count", view(map[uint64]uint64{10: 1}, ns("a", ap, 10), ns("s", kv.Policy{Consistency: kv.ConsistencyStrong}, 30)), 1, []uint64{10}},
	} {
		active, shards := activeNode(tc.v)
		if active != tc.active || !slices.Equal(shards, tc.shards) {
			t.Errorf("%s: got %d %v, want %d %v", tc.name, active, shards, tc.active, tc.shards)
		}
	}
}
