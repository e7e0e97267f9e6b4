package leaderless

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// ctNodes splits "a b c" into node ids.
func ctNodes(s string) []NodeID {
	var out []NodeID
	for _, f := range strings.Fields(s) {
		out = append(out, NodeID(f))
	}
	return out
}

// ctSends renders requests as "a d(b)": d stands in for b.
func ctSends(ss []Send) string {
	var parts []string
	for _, s := range ss {
		if s.HintFor != "" {
			parts = append(parts, fmt.Sprintf("%s(%s)", s.To, s.HintFor))
		} else {
			parts = append(parts, string(s.To))
		}
	}
	return strings.Join(parts, " ")
}

// ctWriteOutcome renders an outcome as "ok acks=[a d(b)]" or
// "fail acks=[a] indeterminate: <error>".
func ctWriteOutcome(o *WriteOutcome) string {
	if o == nil {
		return "<none>"
	}
	var acks []string
	for _, a := range o.Acks {
		if a.HintFor != "" {
			acks = append(acks, fmt.Sprintf("%s(%s)", a.Node, a.HintFor))
		} else {
			acks = append(acks, string(a.Node))
		}
	}
	s := fmt.Sprintf("acks=[%s]", strings.Join(acks, " "))
	if o.OK() {
		return "ok " + s
	}
	if o.Indeterminate {
		s += " indeterminate"
	}
	return fmt.Sprintf("fail %s: %v", s, o.Err)
}

// ctWriteEvent feeds one scripted input ("ack a", "nack a", "never a",
// "lost a", "refused a", "timeout") to c.
func ctWriteEvent(t *testing.T, c *WriteCoordinator, ev string) WriteStep {
	t.Helper()
	f := strings.Fields(ev)
	switch {
	case f[0] == "timeout":
		return c.Timeout()
	case len(f) != 2:
	case f[0] == "ack":
		return c.Reply(NodeID(f[1]), true)
	case f[0] == "nack":
		return c.Reply(NodeID(f[1]), false)
	case f[0] == "never":
		return c.Failed(NodeID(f[1]), NeverSent)
	case f[0] == "lost":
		return c.Failed(NodeID(f[1]), LostAfterSend)
	case f[0] == "refused":
		return c.Failed(NodeID(f[1]), Refused)
	}
	t.Fatalf("bad event %q", ev)
	return WriteStep{}
}

func TestWriteCoordinator(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pref   string
		n, w   int
		down   string
		sloppy bool
		events []string
		// sends are all requests in order; decided is the index of the
		// event whose step carried the outcome (-1: the first step).
		sends   string
		decided int
		outcome string
		done    bool
	}{{
		name: "W=1 N=3 fast path", pref: "a b c d", n: 3, w: 1, sloppy: true,
		events: []string{"ack b"},
		sends:  "a b c", decided: 0, outcome: "ok acks=[b]",
	}, {
		name: "W=1 late acks change nothing and finish the request", pref: "a b c", n: 3, w: 1,
		events: []string{"ack b", "ack a", "ack c"},
		sends:  "a b c", decided: 0, outcome: "ok acks=[b]", done: true,
	}, {
		name: "W=2 one home down: fallback with a hint counts", pref: "a b c d e", n: 3, w: 2, down: "b", sloppy: true,
		events: []string{"ack d", "ack a"},
		sends:  "a d(b) c", decided: 1, outcome: "ok acks=[d(b) a]",
	}, {
		name: "down fallback skipped", pref: "a b c d e", n: 3, w: 3, down: "b d", sloppy: true,
		events: []string{"ack a", "ack e", "ack c"},
		sends:  "a e(b) c", decided: 2, outcome: "ok acks=[a e(b) c]", done: true,
	}, {
		name: "W=2 one home down, strict: the other two suffice", pref: "a b c d", n: 3, w: 2, down: "b",
		events: []string{"ack c", "ack a"},
		sends:  "a c", decided: 1, outcome: "ok acks=[c a]", done: true,
	}, {
		name: "strict, two home down: fail fast, nothing sent", pref: "a b c d e", n: 3, w: 2, down: "a c",
		sends: "", decided: -1, outcome: "fail acks=[]: unavailable: only 0 of 2 required replicas answered", done: true,
	}, {
		name: "sloppy, not enough fallbacks: fail fast", pref: "a b c d", n: 3, w: 3, down: "a c", sloppy: true,
		sends: "", decided: -1, outcome: "fail acks=[]: unavailable: only 0 of 3 required replicas answered", done: true,
	}, {
		name: "W=2 two failures after send: indeterminate, lists the ack", pref: "a b c d", n: 3, w: 2, sloppy: true,
		events: []string{"ack a", "lost b", "lost c"},
		sends:  "a b c", decided: 2, outcome: "fail acks=[a] indeterminate: unavailable: only 1 of 2 required replicas answered", done: true,
	}, {
		name: "lost after send is not replaced by a fallback", pref: "a b c d", n: 3, w: 3, sloppy: true,
		events: []string{"lost b"},
		sends:  "a b c", decided: 0, outcome: "fail acks=[] indeterminate: unavailable: only 0 of 3 required replicas answered",
	}, {
		name: "never sent is replaced by the next fallback", pref: "a b c d e", n: 3, w: 2, sloppy: true,
		events: []string{"never b", "ack d", "ack c"},
		sends:  "a b c d(b)", decided: 2, outcome: "ok acks=[d(b) c]",
	}, {
		name: "never sent twice walks down the fallbacks", pref: "a b c d e", n: 3, w: 3, sloppy: true,
		events: []string{"never b", "never d", "ack e", "ack a", "ack c"},
		sends:  "a b c d(b) e(b)", decided: 4, outcome: "ok acks=[e(b) a c]", done: true,
	}, {
		name: "never sent, strict: slot lost", pref: "a b c d", n: 3, w: 3,
		events: []string{"never b"},
		sends:  "a b c", decided: 0, outcome: "fail acks=[] indeterminate: unavailable: only 0 of 3 required replicas answered",
	}, {
		name: "every request never sent: determinate", pref: "a b", n: 2, w: 1,
		events: []string{"never a", "never b"},
		sends:  "a b", decided: 1, outcome: "fail acks=[]: unavailable: only 0 of 1 required replicas answered", done: true,
	}, {
		name: "two refusals, one unanswered: indeterminate", pref: "a b c", n: 3, w: 2,
		events: []string{"nack a", "refused b"},
		sends:  "a b c", decided: 1, outcome: "fail acks=[] indeterminate: unavailable: only 0 of 2 required replicas answered",
	}, {
		name: "all refused: applied nowhere", pref: "a b", n: 2, w: 1,
		events: []string{"nack a", "refused b"},
		sends:  "a b", decided: 1, outcome: "fail acks=[]: unavailable: only 0 of 1 required replicas answered", done: true,
	}, {
		name: "timeout after one ack", pref: "a b c", n: 3, w: 2,
		events: []string{"ack a", "timeout", "ack b"},
		sends:  "a b c", decided: 1, outcome: "fail acks=[a] indeterminate: unavailable: only 1 of 2 required replicas answered", done: true,
	}, {
		name: "timeout with nothing answered is indeterminate", pref: "a b c", n: 3, w: 1,
		events: []string{"timeout"},
		sends:  "a b c", decided: 0, outcome: "fail acks=[] indeterminate: unavailable: only 0 of 1 required replicas answered", done: true,
	}, {
		name: "duplicates, strangers and down nodes ignored", pref: "a b c d", n: 3, w: 2, down: "c",
		events: []string{"ack a", "ack a", "ack x", "ack c", "ack d", "lost a", "never a", "ack b"},
		sends:  "a b", decided: 7, outcome: "ok acks=[a b]", done: true,
	}, {
		name: "answer after the slot moved on is ignored", pref: "a b c d", n: 3, w: 3, sloppy: true,
		events: []string{"never b", "ack b", "ack a", "ack c", "ack d"},
		sends:  "a b c d(b)", decided: 4, outcome: "ok acks=[a c d(b)]", done: true,
	}, {
		name: "after success a never-sent replica still gets a stand-in", pref: "a b c d", n: 3, w: 1, sloppy: true,
		events: []string{"ack a", "never c", "ack d", "ack b"},
		sends:  "a b c d(c)", decided: 0, outcome: "ok acks=[a]", done: true,
	}, {
		name: "after failure no stand-in is sent", pref: "a b c d", n: 3, w: 3, sloppy: true,
		events: []string{"nack a", "never c"},
		sends:  "a b c", decided: 0, outcome: "fail acks=[] indeterminate: unavailable: only 0 of 3 required replicas answered",
	}, {
		name: "weak: W=1, no hints", pref: "a b c d", n: 3, w: 1, down: "a",
		events: []string{"never b", "ack c"},
		sends:  "b c", decided: 1, outcome: "ok acks=[c]", done: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c, step, err := NewWrite(Plan{Preference: ctNodes(tc.pref), N: tc.n, Quorum: tc.w, Down: ctNodes(tc.down), Sloppy: tc.sloppy})
			if err != nil {
				t.Fatalf("NewWrite: %v", err)
			}
			sends := step.Send
			var outcome *WriteOutcome
			decided := -2
			if step.Outcome != nil {
				outcome, decided = step.Outcome, -1
			}
			for i, ev := range tc.events {
				step := ctWriteEvent(t, c, ev)
				sends = append(sends, step.Send...)
				if step.Outcome != nil {
					if outcome != nil {
						t.Fatalf("event %d %q: second outcome %s", i, ev, ctWriteOutcome(step.Outcome))
					}
					outcome, decided = step.Outcome, i
				}
			}
			if got := ctSends(sends); got != tc.sends {
				t.Errorf("sends: got %q, want %q", got, tc.sends)
			}
			if got := ctWriteOutcome(outcome); got != tc.outcome {
				t.Errorf("outcome: got %q, want %q", got, tc.outcome)
			}
			if decided != tc.decided {
				t.Errorf("decided at event %d, want %d", decided, tc.decided)
			}
			if outcome != nil && !outcome.OK() && !errors.Is(outcome.Err, ErrUnavailable) {
				t.Errorf("error %v does not wrap ErrUnavailable", outcome.Err)
			}
			if c.Outcome() != outcome {
				t.Errorf("Outcome(): got %s, want %s", ctWriteOutcome(c.Outcome()), ctWriteOutcome(outcome))
			}
			if got := c.Done(); got != tc.done {
				t.Errorf("Done: got %v, want %v", got, tc.done)
			}
		})
	}
}

func TestWriteOutcomeHinted(t *testing.T) {
	o := WriteOutcome{Acks: []Ack{{Node: "a"}, {Node: "d", HintFor: "b"}}}
	if got := o.Hinted(); got != 1 {
		t.Errorf("Hinted: got %d, want 1", got)
	}
}

func TestPlanValidation(t *testing.T) {
	good := Plan{Preference: ctNodes("a b c d"), N: 3, Quorum: 2}
	for _, tc := range []struct {
		name string
		edit func(*Plan)
	}{
		{"N zero", func(p *Plan) { p.N = 0 }},
		{"quorum zero", func(p *Plan) { p.Quorum = 0 }},
		{"quorum above N", func(p *Plan) { p.Quorum = 4 }},
		{"preference shorter than N", func(p *Plan) { p.Preference = ctNodes("a b") }},
		{"duplicate node", func(p *Plan) { p.Preference = ctNodes("a b a d") }},
		{"duplicate fallback", func(p *Plan) { p.Preference = ctNodes("a b c d d") }},
		{"empty node id", func(p *Plan) { p.Preference = []NodeID{"a", "", "c"} }},
		{"unknown repair mode", func(p *Plan) { p.Repair = 9 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := good
			p.Preference = slices.Clone(good.Preference)
			tc.edit(&p)
			if _, _, err := NewWrite(p); !errors.Is(err, ErrInvalidPlan) {
				t.Errorf("NewWrite: got %v, want ErrInvalidPlan", err)
			}
			if _, _, err := NewRead(p, CompareLWW); !errors.Is(err, ErrInvalidPlan) {
				t.Errorf("NewRead: got %v, want ErrInvalidPlan", err)
			}
		})
	}
	if _, _, err := NewRead[LWW](good, nil); !errors.Is(err, ErrInvalidPlan) {
		t.Errorf("NewRead with nil comparator: got %v, want ErrInvalidPlan", err)
	}
	if _, _, err := NewWrite(good); err != nil {
		t.Errorf("NewWrite(good plan): got %v, want nil", err)
	}
}

// The plan is copied: changing the caller's slices later changes nothing.
func TestPlanIsCopied(t *testing.T) {
	pref, down := ctNodes("a b c d"), ctNodes("b")
	c, step, err := NewWrite(Plan{Preference: pref, N: 3, Quorum: 3, Down: down, Sloppy: true})
	if err != nil {
		t.Fatal(err)
	}
	pref[3], down[0] = "z", "a"
	if got, want := ctSends(step.Send), "a d(b) c"; got != want {
		t.Fatalf("sends: got %q, want %q", got, want)
	}
	for _, n := range ctNodes("a d c") {
		c.Reply(n, true)
	}
	if got, want := ctWriteOutcome(c.Outcome()), "ok acks=[a d(b) c]"; got != want {
		t.Errorf("outcome: got %q, want %q", got, want)
	}
}
