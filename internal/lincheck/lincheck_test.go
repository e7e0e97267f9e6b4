package lincheck

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// script builds a history by hand. Its clock advances one tick per reading,
// so the order of the Begin and End calls is the order of the events.
type script struct{ r *Recorder }

func newScript() *script {
	var tick int64
	return &script{NewRecorderClock(func() time.Time { tick++; return time.Unix(0, tick) })}
}

func (s *script) begin(client int, in Input) *Pending { return s.r.Begin(client, in) }

// do records a call that returns before anything else happens.
func (s *script) do(client int, in Input, out Output) { s.r.Begin(client, in).End(out) }

func put(k, v string) Input { return Input{Kind: Put, Key: k, Value: v} }
func get(k string) Input    { return Input{Kind: Get, Key: k} }
func del(k string) Input    { return Input{Kind: Delete, Key: k} }
func cas(k string, ifv uint64, v string) Input {
	return Input{Kind: CAS, Key: k, Value: v, IfVersion: ifv}
}

func read(v string, version uint64) Output { return Output{Exists: true, Value: v, Version: version} }
func at(version uint64) Output             { return Output{Version: version} }
func applied(version uint64) Output        { return Output{OK: true, Version: version} }

var (
	absent     = Output{}
	notApplied = Output{}
	existed    = Output{OK: true}
	wasAbsent  = Output{}
)

type historyCase struct {
	name  string
	build func(s *script)
	want  porcupine.CheckResult
}

func runCases(t *testing.T, cases []historyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newScript()
			tc.build(s)
			res, err := s.r.Check(10 * time.Second)
			if res.Outcome != tc.want {
				t.Fatalf("got %s (%v), want %s", res.Outcome, err, tc.want)
			}
			switch tc.want {
			case porcupine.Ok:
				if err != nil {
					t.Fatalf("got error %v, want nil", err)
				}
			case porcupine.Illegal:
				if !errors.Is(err, ErrNotLinearizable) {
					t.Fatalf("got error %v, want ErrNotLinearizable", err)
				}
				t.Logf("%v", err)
			}
		})
	}
}

func TestLinearizable(t *testing.T) {
	runCases(t, []historyCase{
		{"empty", func(s *script) {}, porcupine.Ok},
		{"read during a write sees the old state", func(s *script) {
			w := s.begin(0, put("k", "a"))
			s.do(1, get("k"), absent)
			w.End(at(1))
			s.do(1, get("k"), read("a", 1))
		}, porcupine.Ok},
		{"read during a write sees the new state", func(s *script) {
			w := s.begin(0, put("k", "a"))
			s.do(1, get("k"), read("a", 1))
			w.End(at(1))
		}, porcupine.Ok},
		{"overlapping writes in either order", func(s *script) {
			a := s.begin(0, put("k", "a"))
			b := s.begin(1, put("k", "b"))
			b.End(at(2))
			a.End(at(3)) // a was applied last, after b
			s.do(2, get("k"), read("a", 3))
		}, porcupine.Ok},
		{"overlapping CAS on one version: one wins", func(s *script) {
			s.do(0, put("k", "a"), at(1))
			b := s.begin(1, cas("k", 1, "b"))
			c := s.begin(2, cas("k", 1, "c"))
			c.End(notApplied)
			b.End(applied(2))
			s.do(0, get("k"), read("b", 2))
		}, porcupine.Ok},
		{"versions grow but skip", func(s *script) {
			s.do(0, put("k", "a"), at(10))
			s.do(0, put("k", "b"), at(25))
			s.do(1, get("k"), read("b", 25))
			s.do(1, cas("k", 25, "c"), applied(90))
			s.do(0, get("k"), read("c", 90))
		}, porcupine.Ok},
		{"delete and re-create above the old version", func(s *script) {
			s.do(0, put("k", "a"), at(3))
			s.do(0, del("k"), existed)
			s.do(1, get("k"), absent)
			s.do(1, del("k"), wasAbsent)
			s.do(0, put("k", "b"), at(7))
			s.do(1, get("k"), read("b", 7))
		}, porcupine.Ok},
		{"CAS on an absent key does not apply", func(s *script) {
			s.do(0, cas("k", 0, "a"), notApplied)
			s.do(0, get("k"), absent)
		}, porcupine.Ok},
	})
}

func TestNotLinearizable(t *testing.T) {
	runCases(t, []historyCase{
		{"stale read after a completed write", func(s *script) {
			s.do(0, put("k", "a"), at(1))
			s.do(0, put("k", "b"), at(2))
			s.do(1, get("k"), read("a", 1))
		}, porcupine.Illegal},
		{"lost write", func(s *script) {
			s.do(0, put("k", "a"), at(1))
			s.do(1, get("k"), absent)
		}, porcupine.Illegal},
		{"CAS succeeds twice on one version", func(s *script) {
			s.do(0, put("k", "a"), at(1))
			b := s.begin(1, cas("k", 1, "b"))
			c := s.begin(2, cas("k", 1, "c"))
			b.End(applied(2))
			c.End(applied(3))
		}, porcupine.Illegal},
		{"read of a value never written", func(s *script) {
			s.do(0, put("k", "a"), at(1))
			s.do(1, get("k"), read("zzz", 1))
		}, porcupine.Illegal},
		{"read with the wrong version", func(s *script) {
			s.do(0, put("k", "a"), at(4))
			s.do(1, get("k"), read("a", 5))
		}, porcupine.Illegal},
		{"reads go back during a write", func(s *script) {
			s.do(0, put("k", "a"), at(1))
			w := s.begin(0, put("k", "b"))
			s.do(1, get("k"), read("b", 2))
			s.do(2, get("k"), read("a", 1))
			w.End(at(2))
		}, porcupine.Illegal},
		{"version does not grow", func(s *script) {
			s.do(0, put("k", "a"), at(5))
			s.do(0, put("k", "b"), at(5))
		}, porcupine.Illegal},
		{"re-created key below its old version", func(s *script) {
			s.do(0, put("k", "a"), at(5))
			s.do(0, del("k"), existed)
			s.do(0, put("k", "b"), at(3))
		}, porcupine.Illegal},
		{"delete of an absent key reports it existed", func(s *script) {
			s.do(0, del("k"), existed)
		}, porcupine.Illegal},
		{"CAS applies at the wrong version", func(s *script) {
			s.do(0, put("k", "a"), at(1))
			s.do(0, cas("k", 2, "b"), applied(3))
		}, porcupine.Illegal},
		{"CAS refused at the right version", func(s *script) {
			s.do(0, put("k", "a"), at(1))
			s.do(0, cas("k", 1, "b"), notApplied)
		}, porcupine.Illegal},
	})
}

func TestIndeterminate(t *testing.T) {
	runCases(t, []historyCase{
		{"unknown put that took effect", func(s *script) {
			s.begin(0, put("k", "a")).Unknown()
			s.do(1, get("k"), read("a", 7))
			s.do(1, put("k", "b"), at(9))
			s.do(1, get("k"), read("b", 9))
		}, porcupine.Ok},
		{"unknown put that never took effect", func(s *script) {
			s.begin(0, put("k", "a")).Unknown()
			s.do(1, get("k"), absent)
			s.do(1, get("k"), absent)
		}, porcupine.Ok},
		{"unknown put that took effect long after its call", func(s *script) {
			s.do(0, put("k", "x"), at(1))
			s.begin(0, put("k", "y")).Unknown()
			s.do(1, get("k"), read("x", 1))
			s.do(1, get("k"), read("x", 1))
			s.do(1, get("k"), read("y", 5))
		}, porcupine.Ok},
		{"unknown put cannot be undone", func(s *script) {
			s.do(0, put("k", "x"), at(1))
			s.begin(0, put("k", "y")).Unknown()
			s.do(1, get("k"), read("y", 5))
			s.do(1, get("k"), read("x", 1))
		}, porcupine.Illegal},
		{"unknown put's version is fixed once read", func(s *script) {
			s.begin(0, put("k", "a")).Unknown()
			s.do(1, get("k"), read("a", 7))
			s.do(1, get("k"), read("a", 8))
		}, porcupine.Illegal},
		{"unknown put's version exceeds earlier versions", func(s *script) {
			s.do(0, put("k", "a"), at(5))
			s.begin(0, put("k", "b")).Unknown()
			s.do(1, get("k"), read("b", 3))
		}, porcupine.Illegal},
		{"unknown put bounds later versions", func(s *script) {
			s.do(0, put("k", "a"), at(5))
			s.begin(0, put("k", "b")).Unknown()
			s.do(1, get("k"), read("b", 8))
			s.do(1, put("k", "c"), at(8))
		}, porcupine.Illegal},
		{"unknown delete that took effect", func(s *script) {
			s.do(0, put("k", "a"), at(1))
			s.begin(0, del("k")).Unknown()
			s.do(1, get("k"), absent)
		}, porcupine.Ok},
		{"unknown delete that did not take effect", func(s *script) {
			s.do(0, put("k", "a"), at(1))
			s.begin(0, del("k")).Unknown()
			s.do(1, get("k"), read("a", 1))
		}, porcupine.Ok},
		{"unknown CAS that applied", func(s *script) {
			s.do(0, put("k", "a"), at(1))
			s.begin(0, cas("k", 1, "b")).Unknown()
			s.do(1, get("k"), read("b", 4))
		}, porcupine.Ok},
		{"unknown CAS that did not apply", func(s *script) {
			s.do(0, put("k", "a"), at(1))
			s.begin(0, cas("k", 1, "b")).Unknown()
			s.do(1, get("k"), read("a", 1))
			s.do(1, put("k", "c"), at(2))
			s.do(1, get("k"), read("c", 2))
		}, porcupine.Ok},
		{"unknown CAS cannot apply at the wrong version", func(s *script) {
			s.do(0, put("k", "a"), at(1))
			s.begin(0, cas("k", 2, "b")).Unknown()
			s.do(1, get("k"), read("b", 3))
		}, porcupine.Illegal},
		{"CAS on the unknown version of an unknown put", func(s *script) {
			s.begin(0, put("k", "a")).Unknown()
			s.do(1, cas("k", 6, "b"), applied(9))
			s.do(1, get("k"), read("b", 9))
		}, porcupine.Ok},
		{"unknown CAS on an unknown put", func(s *script) {
			s.begin(0, put("k", "a")).Unknown()
			s.begin(1, cas("k", 6, "b")).Unknown()
			s.do(2, get("k"), read("b", 9))
			s.do(2, put("k", "c"), at(12))
		}, porcupine.Ok},
		{"failed write is left out", func(s *script) {
			s.begin(0, put("k", "a")).Fail()
			s.do(1, get("k"), absent)
		}, porcupine.Ok},
		{"read of a failed write's value", func(s *script) {
			s.begin(0, put("k", "a")).Fail()
			s.do(1, get("k"), read("a", 1))
		}, porcupine.Illegal},
		{"unresolved write counts as unknown", func(s *script) {
			s.begin(0, put("k", "a")) // the client never reported
			s.do(1, get("k"), read("a", 3))
		}, porcupine.Ok},
	})
}

func TestChecksOnlyWhatConstrains(t *testing.T) {
	s := newScript()
	s.do(0, put("k", "a"), at(1))
	s.begin(0, get("k")).Unknown()
	s.begin(0, get("k")).Fail()
	s.begin(0, put("k", "b")).Fail()
	s.begin(0, put("k", "c")).Unknown()
	s.begin(0, del("k")) // unresolved
	res, err := s.r.Check(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 3 { // the ended put, the unknown put and the unresolved delete
		t.Fatalf("got %d operations checked, want 3", res.Ops)
	}
}

// TestPartitionByKey checks many keys at once: only the key with the
// violation is blamed.
func TestPartitionByKey(t *testing.T) {
	build := func(bad string) *script {
		s := newScript()
		var version uint64
		for i := range 300 {
			k := fmt.Sprintf("k%03d", i)
			version += 3
			w := s.begin(i%7, put(k, "v"+k))
			s.do(i%7+1, get(k), absent) // concurrent with the write
			w.End(at(version))
			if k == bad {
				s.do(0, get(k), absent) // the write is lost
				continue
			}
			s.do(0, get(k), read("v"+k, version))
		}
		return s
	}
	res, err := build("").r.Check(10 * time.Second)
	if err != nil || res.Outcome != porcupine.Ok || res.Ops != 900 {
		t.Fatalf("got %s, %d ops, %v; want Ok, 900 ops, nil", res.Outcome, res.Ops, err)
	}

	res, err = build("k117").r.Check(10 * time.Second)
	if res.Outcome != porcupine.Illegal || !errors.Is(err, ErrNotLinearizable) {
		t.Fatalf("got %s, %v; want Illegal, ErrNotLinearizable", res.Outcome, err)
	}
	msg := err.Error()
	if !strings.Contains(msg, `key "k117": at most`) || strings.Contains(msg, "also not linearizable") {
		t.Fatalf("got message %q, want it to blame key k117 alone", msg)
	}
	if !strings.Contains(msg, `get("k117") -> absent`) {
		t.Fatalf("got message %q, want the stale read listed", msg)
	}
}

// TestCheckTimeout builds a history whose check is exponential: thirty
// writes that never return, then a read no order explains. The check must
// give up and say so, distinct from Illegal.
func TestCheckTimeout(t *testing.T) {
	s := newScript()
	for i := range 30 {
		s.begin(i, put("k", fmt.Sprint("v", i))).Unknown()
	}
	s.do(30, get("k"), read("never written", 1))
	res, err := s.r.Check(50 * time.Millisecond)
	if res.Outcome != porcupine.Unknown || !errors.Is(err, ErrInconclusive) || errors.Is(err, ErrNotLinearizable) {
		t.Fatalf("got %s, %v; want Unknown, ErrInconclusive", res.Outcome, err)
	}
}

func TestWriteVisualization(t *testing.T) {
	s := newScript()
	path := filepath.Join(t.TempDir(), "history.html")
	if err := s.r.WriteVisualization(path); err == nil {
		t.Fatal("WriteVisualization before Check: got nil error")
	}
	s.do(0, put("k", "a"), at(1))
	s.begin(1, put("k", "b")).Unknown()
	s.do(2, get("k"), read("c", 1))
	if _, err := s.r.Check(10 * time.Second); !errors.Is(err, ErrNotLinearizable) {
		t.Fatalf("got %v, want ErrNotLinearizable", err)
	}
	if err := s.r.WriteVisualization(path); err != nil {
		t.Fatal(err)
	}
	html, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(html), `get(\"k\") -\u003e \"c\"@1`) {
		t.Fatalf("visualization does not describe the operations (%d bytes)", len(html))
	}
}

func TestResolveTwicePanics(t *testing.T) {
	p := newScript().begin(0, put("k", "a"))
	p.End(at(1))
	defer func() {
		if recover() == nil {
			t.Fatal("second resolve did not panic")
		}
	}()
	p.Unknown()
}

// store is a correct store: a map under a mutex, versions from one revision
// counter shared by all keys.
type store struct {
	mu struct {
		sync.Mutex
		rev  uint64
		keys map[string]Output
	}
}

func (s *store) apply(in Input) Output {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.mu.keys[in.Key]
	switch in.Kind {
	case Get:
		return cur
	case Put:
		s.mu.rev++
		s.mu.keys[in.Key] = read(in.Value, s.mu.rev)
		return at(s.mu.rev)
	case Delete:
		s.mu.rev++
		delete(s.mu.keys, in.Key)
		return Output{OK: ok}
	case CAS:
		if !ok || cur.Version != in.IfVersion {
			return notApplied
		}
		s.mu.rev++
		s.mu.keys[in.Key] = read(in.Value, s.mu.rev)
		return applied(s.mu.rev)
	}
	panic("unknown op")
}

// TestRandomHistoryOfCorrectStore records concurrent clients of a correct
// store, some of whose writes end indeterminate or fail, and expects Ok.
func TestRandomHistoryOfCorrectStore(t *testing.T) {
	const (
		seed    = 42
		clients = 10
		perC    = 300
		keys    = 8
	)
	st := &store{}
	st.mu.keys = make(map[string]Output)
	rec := NewRecorder()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(c)))
			seen := make(map[string]uint64) // last version this client saw per key
			for i := range perC {
				k := fmt.Sprint("k", r.IntN(keys))
				var in Input
				switch n := r.IntN(20); {
				case n < 8:
					in = get(k)
				case n < 14:
					in = put(k, fmt.Sprintf("c%d-%d", c, i))
				case n < 17:
					ifv := seen[k]
					if r.IntN(4) == 0 {
						ifv = r.Uint64N(ifv + 2)
					}
					in = cas(k, ifv, fmt.Sprintf("c%d-%d", c, i))
				default:
					in = del(k)
				}
				p := rec.Begin(c, in)
				switch n := r.IntN(100); {
				case n < 3: // refused before it was proposed
					p.Fail()
				case n < 6: // timed out before it was applied
					p.Unknown()
				case n < 9: // applied, but the reply was lost
					st.apply(in)
					p.Unknown()
				default:
					out := st.apply(in)
					if out.Version != 0 {
						seen[k] = out.Version
					}
					p.End(out)
				}
			}
		})
	}
	wg.Wait()
	start := time.Now()
	res, err := rec.Check(30 * time.Second)
	if err != nil || res.Outcome != porcupine.Ok {
		t.Fatalf("seed %d: got %s, %v; want Ok", seed, res.Outcome, err)
	}
	t.Logf("checked %d operations in %v", res.Ops, time.Since(start))
}
