package server

import (
	"slices"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/controlplane"
	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/raftstore"
)

// The control plane's leadership goes only to a caught-up voter, and not
// while a primary's node looks down (its failover would wait a lease
// longer under a new leader).
func TestMetaLeaderPlacementInputs(t *testing.T) {
	st := raftstore.GroupStatus{Voters: []uint64{1, 2, 3}, Commit: 50, Match: map[uint64]uint64{1: 50, 2: 50, 3: 12}}
	if got := caughtUp(st, 1); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("caughtUp = %v, want [1 2] (3 lags)", got)
	}
	view := func(primaries ...uint64) *controlplane.View {
		v := &controlplane.View{Primaries: map[uint64]controlplane.PrimaryRecord{}}
		for i, p := range primaries {
			v.Primaries[uint64(10+i)] = controlplane.PrimaryRecord{Primary: failover.NodeID(p)}
		}
		return v
	}
	for _, tc := range []struct {
		name string
		v    *controlplane.View
		want bool
	}{
		{"no primaries", view(), false},
		{"primaries on caught-up voters", view(1, 2), false},
		{"a primary on the lagging voter", view(2, 3), true},
		{"a primary on a node that is not a voter", view(9), false},
	} {
		if got := failoverLikely(tc.v, st, 1); got != tc.want {
			t.Errorf("%s: failoverLikely = %v, want %v", tc.name, got, tc.want)
		}
	}
	// Where MetaLeaderFor then points: with node 3 down and holding
	// nothing, not at node 3.
	if got := controlplane.MetaLeaderFor(view(1, 1), caughtUp(st, 1), 1, 1); got != 2 {
		t.Fatalf("MetaLeaderFor over caught-up voters = %d, want 2", got)
	}
}
