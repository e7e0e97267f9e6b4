package controlplane

import (
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/failover"
)

func TestMetaLeaderFor(t *testing.T) {
	view := func(primaries ...uint64) *View {
		v := &View{Primaries: map[uint64]PrimaryRecord{}}
		for i, p := range primaries {
			v.Primaries[uint64(100+i)] = PrimaryRecord{Group: uint64(100 + i), Primary: failover.NodeID(p)}
		}
		return v
	}
	cases := []struct {
		name     string
		v        *View
		voters   []uint64
		current  uint64
		fallback uint64
		want     uint64
	}{
		{"no voters", view(), nil, 0, 1, 0},
		{"no primaries: the fallback", view(), []uint64{1, 2, 3}, 0, 1, 1},
		{"no primaries, fallback not a voter: smallest", view(), []uint64{2, 3}, 0, 1, 2},
		{"nil view", nil, []uint64{3, 2}, 0, 0, 2},
		{"active-passive on node 1: a standby", view(1, 1, 1), []uint64{1, 2, 3}, 0, 1, 2},
		{"active-passive on node 3: the fallback", view(3, 3), []uint64{1, 2, 3}, 0, 1, 1},
		{"fewest primaries wins over the fallback", view(1, 2, 2, 3), []uint64{1, 2, 3}, 0, 2, 1},
		{"a tie among the fewest: the fallback", view(1, 3), []uint64{1, 2, 3, 4}, 0, 4, 4},
		{"a tie without the fallback: smallest", view(1, 3), []uint64{1, 2, 3, 4}, 0, 1, 2},
		{"primary on a non-voter counts nothing", view(9, 9), []uint64{1, 2}, 0, 2, 2},
		{"a tie with the current leader: it stays", view(2), []uint64{1, 2, 3}, 3, 1, 3},
		{"the current leader holds more: it moves", view(3), []uint64{1, 2, 3}, 3, 1, 1},
		{"current leader not a voter: the fallback", view(2), []uint64{1, 2, 3}, 9, 1, 1},
		{"no primaries: back to the fallback", view(), []uint64{1, 2, 3}, 3, 1, 1},
	}
	for _, c := range cases {
		if got := MetaLeaderFor(c.v, c.voters, c.current, c.fallback); got != c.want {
			t.Errorf("%s: MetaLeaderFor = %d, want %d", c.name, got, c.want)
		}
	}
}
