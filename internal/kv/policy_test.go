package kv

import (
	"context"
	"strings"
	"testing"
)

// TestPolicyConflicts: conflicts=siblings is for eventual namespaces only;
// eventual defaults to lww, weak takes lww at most, strong and primary
// none.
func TestPolicyConflicts(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Policy
		want string // "" valid, else a substring of the INVALID message
		str  string // a substring of String() when valid
	}{
		{"eventual default", Policy{Consistency: ConsistencyEventual, Replicas: 3, Shards: 4}, "", "read_repair=async conflicts=lww"},
		{"eventual lww", Policy{Consistency: ConsistencyEventual, Replicas: 3, Shards: 4, Conflicts: ConflictsLWW}, "", "conflicts=lww"},
		{"eventual siblings", Policy{Consistency: ConsistencyEventual, Replicas: 3, Shards: 4, Conflicts: ConflictsSiblings}, "", "conflicts=siblings"},
		{"eventual unknown", Policy{Consistency: ConsistencyEventual, Replicas: 3, Shards: 4, Conflicts: "crdt"}, `conflicts "crdt": want lww or siblings`, ""},
		{"eventual upper case", Policy{Consistency: ConsistencyEventual, Replicas: 3, Shards: 4, Conflicts: "Siblings"}, `conflicts "Siblings"`, ""},
		{"weak default", Policy{Consistency: ConsistencyWeak, Replicas: 3, Shards: 4}, "", "w=1 r=1"},
		{"weak lww", Policy{Consistency: ConsistencyWeak, Replicas: 3, Shards: 4, Conflicts: ConflictsLWW}, "", "conflicts=lww"},
		{"weak siblings", Policy{Consistency: ConsistencyWeak, Replicas: 3, Shards: 4, Conflicts: ConflictsSiblings}, "a weak namespace keeps the last writer only", ""},
		{"strong siblings", Policy{Consistency: ConsistencyStrong, Replicas: 3, Shards: 4, Conflicts: ConflictsSiblings}, "conflicts applies to eventual namespaces", ""},
		{"strong lww", Policy{Consistency: ConsistencyStrong, Replicas: 3, Shards: 4, Conflicts: ConflictsLWW}, "conflicts applies to eventual namespaces", ""},
		{"primary siblings", Policy{Replication: ReplicationPrimary, Replicas: 3, Shards: 4, Conflicts: ConflictsSiblings}, "conflicts apply to eventual namespaces, not replication=primary", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p.WithDefaults()
			err := p.Validate(3)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate(%+v) = %v, want nil", p, err)
			case tc.want != "" && (err == nil || CodeOf(err) != CodeInvalid || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate(%+v) = %v, want INVALID containing %q", p, err, tc.want)
			case tc.want == "" && !strings.Contains(p.String(), tc.str):
				t.Fatalf("String() = %q, want it to contain %q", p.String(), tc.str)
			}
			if got, want := p.KeepSiblings(), tc.p.Conflicts == ConflictsSiblings; tc.want == "" && got != want {
				t.Fatalf("KeepSiblings() = %t, want %t", got, want)
			}
		})
	}
	// Strong and primary policies keep no conflict mode after defaults
	// (their JSON stays as it was).
	for _, p := range []Policy{{Consistency: ConsistencyStrong}, {Replication: ReplicationPrimary, Replicas: 3}, {Consistency: ConsistencyWeak}} {
		if got := p.WithDefaults().Conflicts; got != "" {
			t.Errorf("%+v WithDefaults().Conflicts = %q, want empty", p, got)
		}
	}
}

// TestCausalContextText: the text form round-trips, and anything that is
// not one is INVALID.
func TestCausalContextText(t *testing.T) {
	for _, cc := range [][]byte{{0}, {2, 1, 5, 3, 200, 1}, []byte("\xff\xfe+/=")} {
		s := FormatCausalContext(cc)
		if strings.ContainsAny(s, "+/= \r\n") {
			t.Errorf("FormatCausalContext(%x) = %q: not header- and URL-safe", cc, s)
		}
		got, err := ParseCausalContext(s)
		if err != nil || string(got) != string(cc) {
			t.Errorf("ParseCausalContext(%q) = %x, %v; want %x", s, got, err, cc)
		}
	}
	for _, bad := range []string{"", "!!", "AA==", "A", strings.Repeat("A", MaxCausalContext+1)} {
		if _, err := ParseCausalContext(bad); CodeOf(err) != CodeInvalid {
			t.Errorf("ParseCausalContext(%.20q) = %v, want INVALID", bad, err)
		}
	}
	ctx := context.Background()
	if _, ok := CausalContextFrom(ctx); ok {
		t.Fatal("a bare context carries a causal context")
	}
	if got, ok := CausalContextFrom(WithCausalContext(ctx, []byte{1, 2})); !ok || string(got) != "\x01\x02" {
		t.Fatalf("CausalContextFrom = %x, %t", got, ok)
	}
}
