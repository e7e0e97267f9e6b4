package failover

import (
	"errors"
	"slices"
	"testing"
)

// run returns entries lsn from..to of one epoch.
func run(epoch Epoch, from, to LSN) []Entry {
	var out []Entry
	for l := from; l <= to; l++ {
		out = append(out, Entry{l, epoch})
	}
	return out
}

func TestLostWrites(t *testing.T) {
	cat := func(parts ...[]Entry) []Entry { return slices.Concat(parts...) }
	for _, tc := range []struct {
		name    string
		suffix  []Entry
		history []EpochStart
		want    []Entry
		wantErr error
	}{
		{"old primary's unreplicated tail",
			run(1, 5, 10), []EpochStart{{1, 1}, {2, 8}}, run(1, 8, 10), nil},
		{"nothing lost",
			run(1, 5, 7), []EpochStart{{1, 1}, {2, 8}}, nil, nil},
		{"new primary wrote nothing yet: the tail is still lost",
			run(1, 1, 10), []EpochStart{{1, 1}, {2, 8}}, run(1, 8, 10), nil},
		{"two failovers missed",
			run(1, 1, 10), []EpochStart{{1, 1}, {2, 7}, {3, 10}}, run(1, 7, 10), nil},
		{"an epoch the new primary never saw",
			cat(run(1, 5, 6), run(2, 7, 8)), []EpochStart{{1, 1}, {3, 7}}, run(2, 7, 8), nil},
		{"a replica of the current primary is kept",
			cat(run(1, 6, 7), run(2, 8, 9)), []EpochStart{{1, 1}, {2, 8}}, nil, nil},
		{"an empty epoch in the history",
			cat(run(1, 3, 4), run(2, 5, 6)), []EpochStart{{1, 1}, {2, 5}, {3, 5}}, run(2, 5, 6), nil},
		{"entry of the epoch after an empty one",
			cat(run(1, 3, 4), run(3, 5, 6)), []EpochStart{{1, 1}, {2, 5}, {3, 5}}, nil, nil},
		{"empty suffix", nil, []EpochStart{{1, 1}}, nil, nil},
		{"the primary is staler than the node",
			run(4, 5, 6), []EpochStart{{1, 1}, {3, 4}}, nil, ErrStaleEpoch},
		{"suffix before the history", run(2, 3, 4), []EpochStart{{2, 5}}, nil, ErrInvalidLog},
		{"suffix out of order", []Entry{{5, 1}, {4, 1}}, []EpochStart{{1, 1}}, nil, ErrInvalidLog},
		{"suffix epochs go back", []Entry{{4, 2}, {5, 1}}, []EpochStart{{1, 1}}, nil, ErrInvalidLog},
		{"no history", run(1, 1, 2), nil, nil, ErrInvalidLog},
		{"history out of order", run(1, 1, 2), []EpochStart{{2, 1}, {1, 3}}, nil, ErrInvalidLog},
		{"history from LSN 0", run(1, 1, 2), []EpochStart{{1, 0}}, nil, ErrInvalidLog},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LostWrites(tc.suffix, tc.history)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
