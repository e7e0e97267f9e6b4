package failover

import "testing"

func TestActive(t *testing.T) {
	for _, tc := range []struct {
		in   []NodeID
		want NodeID
	}{
		{nil, 0},
		{[]NodeID{0, 0}, 0},
		{[]NodeID{3, 3}, 3},
		{[]NodeID{1, 2, 2}, 2},
		{[]NodeID{2, 1, 1}, 1},
		{[]NodeID{1, 2}, 2},
		{[]NodeID{2, 1}, 2},
		{[]NodeID{0, 1, 0}, 1},
		{[]NodeID{3, 1, 2, 1, 3}, 3},
	} {
		if got := Active(tc.in); got != tc.want {
			t.Errorf("Active(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
