package failover

import (
	"errors"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		seen, msg Epoch
		want      Verdict
		wantErr   string
	}{
		{5, 5, Accept, ""},
		{0, 0, Accept, ""},
		{5, 3, RefuseStale, "stale epoch: message epoch 3, current 5"},
		{1, 0, RefuseStale, "stale epoch: message epoch 0, current 1"},
		{5, 6, StepDown, ""},
		{0, 9, StepDown, ""},
	} {
		got, err := Check(tc.seen, tc.msg)
		if got != tc.want {
			t.Fatalf("Check(%d, %d): got %v, want %v", tc.seen, tc.msg, got, tc.want)
		}
		switch {
		case tc.wantErr == "" && err != nil:
			t.Fatalf("Check(%d, %d): got error %v, want none", tc.seen, tc.msg, err)
		case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr || !errors.Is(err, ErrStaleEpoch)):
			t.Fatalf("Check(%d, %d): got error %v, want %q wrapping ErrStaleEpoch", tc.seen, tc.msg, err, tc.wantErr)
		}
	}
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{Accept: "accept", RefuseStale: "refuse-stale", StepDown: "step-down", 9: "Verdict(9)"} {
		if got := v.String(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}
