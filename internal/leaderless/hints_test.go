package leaderless

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
)

func htVersion(wall int64) LWW {
	return LWW{Timestamp: hlc.Timestamp{WallNanos: wall}, Node: "w"}
}

func htHint(owner, key string, wall, expiry int64) Hint {
	return Hint{Owner: NodeID(owner), Namespace: "ns", Key: []byte(key), Version: htVersion(wall), Value: []byte(fmt.Sprintf("%s@%d", key, wall)), Expiry: expiry}
}

// htDue renders Due's answer as "k1@3 k2@1".
func htDue(hs []Hint) string {
	var parts []string
	for _, h := range hs {
		parts = append(parts, string(h.Value))
	}
	return strings.Join(parts, " ")
}

func TestHints(t *testing.T) {
	s := NewHints(3)
	for _, h := range []Hint{htHint("b", "k1", 1, 100), htHint("b", "k2", 1, 50), htHint("c", "k1", 4, 100)} {
		if err := s.Add(h); err != nil {
			t.Fatalf("Add(%v): %v", h, err)
		}
	}
	steps := []struct {
		name string
		do   func() string
		want string
	}{
		{"due in arrival order", func() string { return htDue(s.Due("b", 10, 0)) }, "k1@1 k2@1"},
		{"due with a limit", func() string { return htDue(s.Due("b", 10, 1)) }, "k1@1"},
		{"nothing due for a stranger", func() string { return htDue(s.Due("x", 10, 0)) }, ""},
		{"newer hint replaces, keeps its place", func() string { _ = s.Add(htHint("b", "k1", 3, 100)); return htDue(s.Due("b", 10, 0)) }, "k1@3 k2@1"},
		{"older hint is not stored", func() string { _ = s.Add(htHint("b", "k1", 2, 100)); return htDue(s.Due("b", 10, 0)) }, "k1@3 k2@1"},
		{"full: a new key is refused", func() string { return fmt.Sprint(errors.Is(s.Add(htHint("d", "k", 1, 100)), ErrHintsFull)) }, "true"},
		{"full: a replacement is still taken", func() string { return fmt.Sprint(s.Add(htHint("c", "k1", 5, 100))) }, "<nil>"},
		{"ack of an older version keeps the newer hint", func() string {
			return fmt.Sprintf("%v %s", s.Ack("b", "ns", []byte("k1"), htVersion(1)), htDue(s.Due("b", 10, 0)))
		}, "false k1@3 k2@1"},
		{"ack removes", func() string {
			return fmt.Sprintf("%v %s", s.Ack("b", "ns", []byte("k1"), htVersion(3)), htDue(s.Due("b", 10, 0)))
		}, "true k2@1"},
		{"ack of an unknown key", func() string { return fmt.Sprint(s.Ack("b", "other", []byte("k1"), htVersion(3))) }, "false"},
		{"expired hints are not due", func() string { return htDue(s.Due("b", 50, 0)) }, ""},
		{"owners", func() string { return fmt.Sprint(s.Owners()) }, "[b c]"},
		{"expire", func() string { return fmt.Sprint(s.Expire(50), s.Owners(), s.Len()) }, "1 [c] 1"},
		{"drop owner", func() string { return fmt.Sprint(s.DropOwner("c"), s.Owners(), s.Len()) }, "1 [] 0"},
		{"stats", func() string { return fmt.Sprintf("%+v", s.Stats()) },
			"{Pending:0 Owners:0 Added:3 Superseded:2 Stale:1 Delivered:1 Expired:1 Dropped:1 Rejected:1}"},
		{"no owner", func() string { return fmt.Sprint(errors.Is(s.Add(Hint{Key: []byte("k")}), ErrBadHint)) }, "true"},
	}
	for _, st := range steps {
		if got := st.do(); got != st.want {
			t.Errorf("%s: got %q, want %q", st.name, got, st.want)
		}
	}
}

// The store copies what it keeps: a caller reusing its buffers changes
// nothing.
func TestHintsCopy(t *testing.T) {
	s := NewHints(0)
	h := htHint("b", "k", 1, 10)
	if err := s.Add(h); err != nil {
		t.Fatal(err)
	}
	h.Key[0], h.Value[0] = 'x', 'x'
	due := s.Due("b", 0, 0)
	if len(due) != 1 || string(due[0].Key) != "k" || string(due[0].Value) != "k@1" {
		t.Errorf("got %+v, want the hint as added", due)
	}
}

// A random sequence of operations against a dumb oracle: a map from
// (owner, key) to the newest hint, scanned in full for every question.
func TestHintsRandom(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		rng := rand.New(rand.NewPCG(seed, 2))
		limit := rng.IntN(8)
		s := NewHints(limit)
		type entry struct {
			h   Hint
			seq int
		}
		oracle := map[string]entry{}
		seq := 0
		id := func(owner NodeID, key []byte) string { return string(owner) + "/" + string(key) }
		for step := 0; step < 200; step++ {
			owner := NodeID("o" + fmt.Sprint(rng.IntN(3)))
			key := []byte{byte('a' + rng.IntN(4))}
			now := int64(step)
			switch op := rng.IntN(10); {
			case op < 4:
				h := Hint{Owner: owner, Namespace: "ns", Key: key, Version: LWW{Timestamp: hlc.Timestamp{WallNanos: rng.Int64N(5)}, Node: NodeID("pq"[rng.IntN(2):][:1])}, Expiry: now + rng.Int64N(30)}
				h.Value = []byte(fmt.Sprint(h.Version, h.Expiry))
				err := s.Add(h)
				old, had := oracle[id(owner, key)]
				switch {
				case had && CompareLWW(h.Version, old.h.Version) == After:
					old.h = h
					oracle[id(owner, key)] = old
				case had:
				case limit > 0 && len(oracle) >= limit:
					if !errors.Is(err, ErrHintsFull) {
						t.Fatalf("seed %d step %d: Add beyond the limit: got %v, want ErrHintsFull", seed, step, err)
					}
					continue
				default:
					seq++
					oracle[id(owner, key)] = entry{h, seq}
				}
				if err != nil {
					t.Fatalf("seed %d step %d: Add: %v", seed, step, err)
				}
			case op < 6:
				due := s.Due(owner, now, 0)
				var want []entry
				for _, e := range oracle {
					if e.h.Owner == owner && e.h.Expiry > now {
						want = append(want, e)
					}
				}
				slices.SortFunc(want, func(a, b entry) int { return a.seq - b.seq })
				if len(due) != len(want) {
					t.Fatalf("seed %d step %d: Due(%s): got %d hints, want %d", seed, step, owner, len(due), len(want))
				}
				for i := range due {
					if g, w := due[i], want[i].h; g.Owner != w.Owner || !bytes.Equal(g.Key, w.Key) || g.Version != w.Version || !bytes.Equal(g.Value, w.Value) || g.Expiry != w.Expiry {
						t.Fatalf("seed %d step %d: Due(%s)[%d]: got %+v, want %+v", seed, step, owner, i, g, w)
					}
				}
			case op < 8:
				v := LWW{Timestamp: hlc.Timestamp{WallNanos: rng.Int64N(5)}, Node: "p"}
				got := s.Ack(owner, "ns", key, v)
				old, had := oracle[id(owner, key)]
				want := had && CompareLWW(old.h.Version, v) != After
				if want {
					delete(oracle, id(owner, key))
				}
				if got != want {
					t.Fatalf("seed %d step %d: Ack(%s, %s, %v): got %v, want %v", seed, step, owner, key, v, got, want)
				}
			case op < 9:
				want := 0
				for k, e := range oracle {
					if e.h.Expiry <= now {
						delete(oracle, k)
						want++
					}
				}
				if got := s.Expire(now); got != want {
					t.Fatalf("seed %d step %d: Expire: got %d, want %d", seed, step, got, want)
				}
			default:
				want := 0
				for k, e := range oracle {
					if e.h.Owner == owner {
						delete(oracle, k)
						want++
					}
				}
				if got := s.DropOwner(owner); got != want {
					t.Fatalf("seed %d step %d: DropOwner: got %d, want %d", seed, step, got, want)
				}
			}
			if s.Len() != len(oracle) {
				t.Fatalf("seed %d step %d: Len: got %d, want %d", seed, step, s.Len(), len(oracle))
			}
			owners := map[NodeID]bool{}
			for _, e := range oracle {
				owners[e.h.Owner] = true
			}
			if st := s.Stats(); st.Owners != len(owners) || st.Pending != len(oracle) {
				t.Fatalf("seed %d step %d: Stats: got %d owners %d pending, want %d and %d", seed, step, st.Owners, st.Pending, len(owners), len(oracle))
			}
		}
	}
}

// The package is pure: it imports nothing that does I/O, reads the clock,
// starts goroutines or draws random numbers, and nothing it depends on
// touches the network (fmt brings os along, hence the two checks).
func TestLeaderlessCoordinatorAndHintsArePure(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{join .Imports \" \"}}", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, imp := range strings.Fields(string(out)) {
		switch imp {
		case "net", "os", "os/exec", "time", "sync", "math/rand", "math/rand/v2", "io", "io/fs", "syscall", "unsafe":
			t.Errorf("leaderless imports %s; it must stay pure", imp)
		}
		if strings.HasPrefix(imp, "net/") {
			t.Errorf("leaderless imports %s; it must stay pure", imp)
		}
	}
	deps, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, d := range strings.Fields(string(deps)) {
		if d == "net" || strings.HasPrefix(d, "net/") || d == "os/exec" {
			t.Errorf("leaderless depends on %s; it must stay pure", d)
		}
	}
}
