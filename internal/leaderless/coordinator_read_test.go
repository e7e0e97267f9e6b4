package leaderless

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
)

// ctVersion parses "5" or "5@y" (wall time 5 stamped by node y; default w).
func ctVersion(t *testing.T, s string) LWW {
	t.Helper()
	wall, node, ok := strings.Cut(s, "@")
	if !ok {
		node = "w"
	}
	n, err := strconv.ParseInt(wall, 10, 64)
	if err != nil {
		t.Fatalf("bad version %q", s)
	}
	return LWW{Timestamp: hlc.Timestamp{WallNanos: n}, Node: NodeID(node)}
}

func ctFormatVersion(v LWW) string {
	if v.Node == "w" {
		return strconv.FormatInt(v.Timestamp.WallNanos, 10)
	}
	return fmt.Sprintf("%d@%s", v.Timestamp.WallNanos, v.Node)
}

func ctRepairs(rs []Repair[LWW]) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s<-%s", r.To, ctFormatVersion(r.Version)))
	}
	return strings.Join(parts, " ")
}

// ctReadOutcome renders an outcome as
// "ok 5 answered=2 agreed=1 repairs=1/0/0" (sent/acked/failed), "ok absent ..."
// or "fail answered=1: <error>".
func ctReadOutcome(o *ReadOutcome[LWW]) string {
	if o == nil {
		return "<none>"
	}
	if !o.OK() {
		return fmt.Sprintf("fail answered=%d: %v", o.Answered, o.Err)
	}
	v := "absent"
	if o.Found {
		v = ctFormatVersion(o.Value)
	}
	return fmt.Sprintf("ok %s answered=%d agreed=%d repairs=%d/%d/%d", v, o.Answered, o.Agreed, o.RepairsSent, o.RepairsAcked, o.RepairsFailed)
}

// ctReadEvent feeds one scripted input ("val a 5", "none a", "never a",
// "lost a", "refused a", "rok a", "rfail a", "timeout") to c.
func ctReadEvent(t *testing.T, c *ReadCoordinator[LWW], ev string) ReadStep[LWW] {
	t.Helper()
	f := strings.Fields(ev)
	switch {
	case f[0] == "timeout":
		return c.Timeout()
	case f[0] == "val" && len(f) == 3:
		return c.Reply(NodeID(f[1]), true, ctVersion(t, f[2]))
	case len(f) != 2:
	case f[0] == "none":
		return c.Reply(NodeID(f[1]), false, LWW{})
	case f[0] == "never":
		return c.Failed(NodeID(f[1]), NeverSent)
	case f[0] == "lost":
		return c.Failed(NodeID(f[1]), LostAfterSend)
	case f[0] == "refused":
		return c.Failed(NodeID(f[1]), Refused)
	case f[0] == "rok":
		return c.RepairDone(NodeID(f[1]), true)
	case f[0] == "rfail":
		return c.RepairDone(NodeID(f[1]), false)
	}
	t.Fatalf("bad event %q", ev)
	return ReadStep[LWW]{}
}

func TestReadCoordinator(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pref   string
		n, r   int
		down   string
		sloppy bool
		repair RepairMode
		events []string
		// sends and repairs are everything emitted, in order; decided is
		// the index of the event whose step carried the outcome (-1: the
		// first step).
		sends, repairs string
		decided        int
		outcome        string
		done           bool
	}{{
		name: "R=2 chooses the newest and repairs the stale replica", pref: "a b c", n: 3, r: 2, repair: RepairAsync,
		events: []string{"val a 3", "val b 5"},
		sends:  "a b c", repairs: "a<-5", decided: 1, outcome: "ok 5 answered=2 agreed=1 repairs=1/0/0",
	}, {
		name: "a replica without the key is repaired", pref: "a b c", n: 3, r: 2, repair: RepairAsync,
		events: []string{"none a", "val b 5"},
		sends:  "a b c", repairs: "a<-5", decided: 1, outcome: "ok 5 answered=2 agreed=1 repairs=1/0/0",
	}, {
		name: "agreement needs no repair", pref: "a b c", n: 3, r: 2, repair: RepairAsync,
		events: []string{"val a 5", "val c 5", "val b 5"},
		sends:  "a b c", repairs: "", decided: 1, outcome: "ok 5 answered=2 agreed=2 repairs=0/0/0", done: true,
	}, {
		name: "absent everywhere", pref: "a b c", n: 3, r: 2, repair: RepairAsync,
		events: []string{"none a", "none c"},
		sends:  "a b c", repairs: "", decided: 1, outcome: "ok absent answered=2 agreed=2 repairs=0/0/0",
	}, {
		name: "ties broken by node id", pref: "a b c", n: 3, r: 2, repair: RepairAsync,
		events: []string{"val a 5@y", "val b 5@x"},
		sends:  "a b c", repairs: "b<-5@y", decided: 1, outcome: "ok 5@y answered=2 agreed=1 repairs=1/0/0",
	}, {
		name: "late stale reply is repaired", pref: "a b c", n: 3, r: 2, repair: RepairAsync,
		events: []string{"val a 5", "val b 5", "val c 3"},
		sends:  "a b c", repairs: "c<-5", decided: 1, outcome: "ok 5 answered=2 agreed=2 repairs=0/0/0", done: true,
	}, {
		name: "late newer reply repairs everyone older", pref: "a b c", n: 3, r: 1, repair: RepairAsync,
		events: []string{"val a 3", "val b 5", "none c"},
		sends:  "a b c", repairs: "a<-5 c<-5", decided: 0, outcome: "ok 3 answered=1 agreed=1 repairs=0/0/0", done: true,
	}, {
		name: "blocking: the answer waits for the repair", pref: "a b c", n: 3, r: 2, repair: RepairBlocking,
		events: []string{"val a 3", "val b 5", "rok a"},
		sends:  "a b c", repairs: "a<-5", decided: 2, outcome: "ok 5 answered=2 agreed=1 repairs=1/1/0",
	}, {
		name: "blocking: a failed repair still answers", pref: "a b c", n: 3, r: 2, repair: RepairBlocking,
		events: []string{"none a", "val b 5", "rok b", "rfail a"},
		sends:  "a b c", repairs: "a<-5", decided: 3, outcome: "ok 5 answered=2 agreed=1 repairs=1/0/1",
	}, {
		name: "blocking: deadline while repairing answers with repairs pending", pref: "a b c", n: 3, r: 2, repair: RepairBlocking,
		events: []string{"val a 3", "val b 5", "timeout"},
		sends:  "a b c", repairs: "a<-5", decided: 2, outcome: "ok 5 answered=2 agreed=1 repairs=1/0/0", done: true,
	}, {
		name: "blocking without repairs answers at once", pref: "a b c", n: 3, r: 2, repair: RepairBlocking,
		events: []string{"val a 5", "val b 5"},
		sends:  "a b c", repairs: "", decided: 1, outcome: "ok 5 answered=2 agreed=2 repairs=0/0/0",
	}, {
		name: "repair off: no repairs, staleness still reported", pref: "a b c", n: 3, r: 2, repair: RepairOff,
		events: []string{"val a 3", "val b 5", "none c"},
		sends:  "a b c", repairs: "", decided: 1, outcome: "ok 5 answered=2 agreed=1 repairs=0/0/0", done: true,
	}, {
		name: "weak: R=1 strict, a home down, no hint, no repair", pref: "a b c d", n: 3, r: 1, down: "a",
		events: []string{"val b 3", "val c 5"},
		sends:  "b c", repairs: "", decided: 0, outcome: "ok 3 answered=1 agreed=1 repairs=0/0/0", done: true,
	}, {
		name: "sloppy: a fallback answers for a down home and is not repaired", pref: "a b c d", n: 3, r: 2, down: "b", sloppy: true, repair: RepairAsync,
		events: []string{"none d", "val a 5"},
		sends:  "a d(b) c", repairs: "", decided: 1, outcome: "ok 5 answered=2 agreed=1 repairs=0/0/0",
	}, {
		name: "never sent moves to a fallback before the decision only", pref: "a b c d e", n: 3, r: 1, sloppy: true, repair: RepairAsync,
		events: []string{"never a", "val e 1", "val b 1", "never c"},
		sends:  "a b c d(a)", repairs: "", decided: 2, outcome: "ok 1 answered=1 agreed=1 repairs=0/0/0",
	}, {
		name: "timeout before R answers", pref: "a b c", n: 3, r: 2, repair: RepairAsync,
		events: []string{"val a 5", "timeout", "val b 5"},
		sends:  "a b c", repairs: "", decided: 1, outcome: "fail answered=1: unavailable: only 1 of 2 required replicas answered", done: true,
	}, {
		name: "two lost: fails without waiting for the deadline", pref: "a b c", n: 3, r: 2, repair: RepairAsync,
		events: []string{"val a 5", "lost b", "refused c"},
		sends:  "a b c", repairs: "", decided: 2, outcome: "fail answered=1: unavailable: only 1 of 2 required replicas answered", done: true,
	}, {
		name: "strict with two homes down fails fast", pref: "a b c", n: 3, r: 2, down: "a b", repair: RepairAsync,
		sends: "", repairs: "", decided: -1, outcome: "fail answered=0: unavailable: only 0 of 2 required replicas answered", done: true,
	}, {
		name: "duplicate and stranger replies are ignored", pref: "a b c", n: 3, r: 2, repair: RepairAsync,
		events: []string{"val a 3", "val a 9", "val x 9", "rok a", "val b 3"},
		sends:  "a b c", repairs: "", decided: 4, outcome: "ok 3 answered=2 agreed=2 repairs=0/0/0",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p := Plan{Preference: ctNodes(tc.pref), N: tc.n, Quorum: tc.r, Down: ctNodes(tc.down), Sloppy: tc.sloppy, Repair: tc.repair}
			c, step, err := NewRead(p, CompareLWW)
			if err != nil {
				t.Fatalf("NewRead: %v", err)
			}
			sends, repairs := step.Send, step.Repairs
			var outcome *ReadOutcome[LWW]
			decided := -2
			if step.Outcome != nil {
				outcome, decided = step.Outcome, -1
			}
			for i, ev := range tc.events {
				step := ctReadEvent(t, c, ev)
				sends = append(sends, step.Send...)
				repairs = append(repairs, step.Repairs...)
				if step.Outcome != nil {
					if outcome != nil {
						t.Fatalf("event %d %q: second outcome %s", i, ev, ctReadOutcome(step.Outcome))
					}
					outcome, decided = step.Outcome, i
				}
			}
			if got := ctSends(sends); got != tc.sends {
				t.Errorf("sends: got %q, want %q", got, tc.sends)
			}
			if got := ctRepairs(repairs); got != tc.repairs {
				t.Errorf("repairs: got %q, want %q", got, tc.repairs)
			}
			if got := ctReadOutcome(outcome); got != tc.outcome {
				t.Errorf("outcome: got %q, want %q", got, tc.outcome)
			}
			if decided != tc.decided {
				t.Errorf("decided at event %d, want %d", decided, tc.decided)
			}
			if c.Outcome() != outcome {
				t.Errorf("Outcome(): got %s, want %s", ctReadOutcome(c.Outcome()), ctReadOutcome(outcome))
			}
			if got := c.Done(); got != tc.done {
				t.Errorf("Done: got %v, want %v", got, tc.done)
			}
		})
	}
}

// ctVector is a two-node version vector, enough to show how concurrent
// versions (siblings) flow through a read.
type ctVector struct{ x, y int }

func ctCompareVector(a, b ctVector) Order {
	switch {
	case a == b:
		return Equal
	case a.x <= b.x && a.y <= b.y:
		return Before
	case a.x >= b.x && a.y >= b.y:
		return After
	}
	return Concurrent
}

func TestReadSiblings(t *testing.T) {
	c, _, err := NewRead(Plan{Preference: ctNodes("a b c"), N: 3, Quorum: 3, Repair: RepairAsync}, ctCompareVector)
	if err != nil {
		t.Fatal(err)
	}
	c.Reply("a", true, ctVector{1, 0})
	c.Reply("b", true, ctVector{0, 1})
	step := c.Reply("c", true, ctVector{0, 0})
	o := step.Outcome
	if o == nil || !o.OK() {
		t.Fatalf("outcome: got %+v, want success", o)
	}
	if got, want := fmt.Sprint(o.Value, o.Siblings), "{1 0} [{0 1}]"; got != want {
		t.Errorf("value and siblings: got %s, want %s", got, want)
	}
	if o.Agreed != 2 {
		t.Errorf("agreed: got %d, want 2 (each sibling holder agrees)", o.Agreed)
	}
	if got, want := fmt.Sprint(step.Repairs), "[{a {0 1}} {b {1 0}} {c {1 0}} {c {0 1}}]"; got != want {
		t.Errorf("repairs: got %s, want %s", got, want)
	}
	// A version superseding both siblings replaces them.
	c2, _, _ := NewRead(Plan{Preference: ctNodes("a b c"), N: 3, Quorum: 3}, ctCompareVector)
	c2.Reply("a", true, ctVector{1, 0})
	c2.Reply("b", true, ctVector{0, 1})
	o = c2.Reply("c", true, ctVector{1, 1}).Outcome
	if got, want := fmt.Sprint(o.Value, o.Siblings, o.Agreed), "{1 1} [] 1"; got != want {
		t.Errorf("value, siblings, agreed: got %s, want %s", got, want)
	}
}
