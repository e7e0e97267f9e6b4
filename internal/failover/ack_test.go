package failover

import (
	"errors"
	"testing"
)

func TestParseAckMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want AckMode
		ok   bool
	}{
		{"async", AckAsync, true}, {"semi", AckSemi, true}, {"sync", AckSync, true},
		{"SYNC", 0, false}, {"", 0, false}, {"quorum", 0, false},
	} {
		got, err := ParseAckMode(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Fatalf("ParseAckMode(%q): got %v, %v, want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidPolicy) {
			t.Fatalf("ParseAckMode(%q): got %v, want ErrInvalidPolicy", tc.in, err)
		}
		if tc.ok && got.String() != tc.in {
			t.Fatalf("String: got %q, want %q", got.String(), tc.in)
		}
	}
}

func TestAckPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		p        AckPolicy
		replicas int
		ok       bool
	}{
		{AckPolicy{Mode: AckAsync}, 0, true},
		{AckPolicy{Mode: AckSemi, K: 1}, 2, true},
		{AckPolicy{Mode: AckSemi, K: 2}, 2, true},
		{AckPolicy{Mode: AckSemi, K: 0}, 2, false},
		{AckPolicy{Mode: AckSemi, K: 3}, 2, false},
		{AckPolicy{Mode: AckSync, K: 0}, 2, true},
		{AckPolicy{Mode: AckSync, K: 2}, 2, true},
		{AckPolicy{Mode: AckSync, K: 3}, 2, false},
		{AckPolicy{Mode: AckSync, K: -1}, 2, false},
		{AckPolicy{Mode: 7}, 2, false},
	} {
		err := tc.p.Validate(tc.replicas)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidPolicy)) {
			t.Fatalf("%+v.Validate(%d): got %v, want ok=%v", tc.p, tc.replicas, err, tc.ok)
		}
	}
}

func TestCanAcceptWrite(t *testing.T) {
	for _, tc := range []struct {
		p            AckPolicy
		inSync       int
		wantDegraded bool
		wantErr      string
	}{
		{AckPolicy{Mode: AckAsync, K: 2}, 0, false, ""},
		{AckPolicy{Mode: AckSemi, K: 2}, 2, false, ""},
		{AckPolicy{Mode: AckSemi, K: 2}, 1, false, "not enough in-sync replicas: have 1, need 2"},
		{AckPolicy{Mode: AckSemi, K: 2, AllowDegrade: true}, 1, true, ""},
		{AckPolicy{Mode: AckSync, K: 2}, 3, false, ""},
		{AckPolicy{Mode: AckSync, K: 2}, 1, false, "not enough in-sync replicas: have 1, need 2"},
		{AckPolicy{Mode: AckSync, K: 1}, 0, false, "not enough in-sync replicas: have 0, need 1"},
		{AckPolicy{Mode: AckSync, K: 2, AllowDegrade: true}, 0, true, ""},
		{AckPolicy{Mode: AckSync, K: 0}, 0, false, ""},
	} {
		degraded, err := tc.p.CanAcceptWrite(tc.inSync)
		if degraded != tc.wantDegraded {
			t.Fatalf("%+v with %d in sync: got degraded=%v, want %v", tc.p, tc.inSync, degraded, tc.wantDegraded)
		}
		switch {
		case tc.wantErr == "" && err != nil:
			t.Fatalf("%+v with %d in sync: got %v, want no error", tc.p, tc.inSync, err)
		case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr || !errors.Is(err, ErrNotEnoughInSync)):
			t.Fatalf("%+v with %d in sync: got %v, want %q", tc.p, tc.inSync, err, tc.wantErr)
		}
	}
}

func TestAcked(t *testing.T) {
	ids := func(n ...NodeID) []NodeID { return n }
	for _, tc := range []struct {
		name     string
		p        AckPolicy
		required []NodeID
		ackedBy  []NodeID
		want     bool
	}{
		{"async needs nobody", AckPolicy{Mode: AckAsync}, ids(1, 2), nil, true},
		{"semi short", AckPolicy{Mode: AckSemi, K: 2}, ids(1, 2, 3), ids(3), false},
		{"semi enough", AckPolicy{Mode: AckSemi, K: 2}, ids(1, 2, 3), ids(1, 3), true},
		{"semi counts out-of-sync ackers", AckPolicy{Mode: AckSemi, K: 2}, ids(1), ids(2, 3), true},
		{"semi without degrade waits", AckPolicy{Mode: AckSemi, K: 2}, ids(1), ids(1), false},
		{"semi degraded to the set", AckPolicy{Mode: AckSemi, K: 2, AllowDegrade: true}, ids(1), ids(1), true},
		{"semi degraded to nothing", AckPolicy{Mode: AckSemi, K: 2, AllowDegrade: true}, nil, nil, true},
		{"sync all required", AckPolicy{Mode: AckSync, K: 2}, ids(1, 2), ids(1, 2, 3), true},
		{"sync one missing", AckPolicy{Mode: AckSync, K: 2}, ids(1, 2, 3), ids(1, 3), false},
		{"sync set below K waits", AckPolicy{Mode: AckSync, K: 2}, ids(1), ids(1, 2), false},
		{"sync set below K degraded", AckPolicy{Mode: AckSync, K: 2, AllowDegrade: true}, ids(1), ids(1), true},
		{"sync empty set, K 0", AckPolicy{Mode: AckSync, K: 0}, nil, nil, true},
	} {
		if got := tc.p.Acked(tc.required, tc.ackedBy); got != tc.want {
			t.Fatalf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
