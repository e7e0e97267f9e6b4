package leaderless

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
)

// ctCluster is a random plan and what the oracle knows of it.
type ctCluster struct {
	plan Plan
	home map[NodeID]bool
	down map[NodeID]bool
}

func ctRandomCluster(rng *rand.Rand) ctCluster {
	n := 1 + rng.IntN(5)
	total := n + rng.IntN(4)
	c := ctCluster{home: map[NodeID]bool{}, down: map[NodeID]bool{}}
	c.plan = Plan{N: n, Quorum: 1 + rng.IntN(n), Sloppy: rng.IntN(2) == 0, Repair: RepairMode(rng.IntN(3))}
	for i := range total {
		id := NodeID(fmt.Sprintf("n%d", i))
		c.plan.Preference = append(c.plan.Preference, id)
		if i < n {
			c.home[id] = true
		}
		if rng.IntN(4) == 0 {
			c.plan.Down = append(c.plan.Down, id)
			c.down[id] = true
		}
	}
	return c
}

// ctOracle follows the requests of one coordinator the dumb way: a fate
// per node, a current target per home slot.
type ctOracle struct {
	ctCluster
	fate    map[NodeID]string // pending, ok, refused, lost, never
	hintFor map[NodeID]NodeID // fallback -> owner it stands in for
	target  map[NodeID]NodeID // owner -> node currently serving its slot
	trace   []string
	seen    map[string]int // the cases this run went through
}

func newCtOracle(c ctCluster) *ctOracle {
	return &ctOracle{ctCluster: c, fate: map[NodeID]string{}, hintFor: map[NodeID]NodeID{}, target: map[NodeID]NodeID{}, seen: map[string]int{}}
}

func (o *ctOracle) logf(format string, args ...any) {
	o.trace = append(o.trace, fmt.Sprintf(format, args...))
}

func (o *ctOracle) count(fate string) int {
	c := 0
	for _, f := range o.fate {
		if f == fate {
			c++
		}
	}
	return c
}

// pending returns the nodes awaiting an answer, sorted so that a seed
// replays the same run.
func (o *ctOracle) pending() []NodeID {
	var out []NodeID
	for n, f := range o.fate {
		if f == "pending" {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// settled returns a node that must be ignored: answered, failed, never
// asked, or a stranger.
func (o *ctOracle) settled(rng *rand.Rand) NodeID {
	var out []NodeID
	for _, n := range append(slices.Clone(o.plan.Preference), "stranger") {
		if o.fate[n] != "pending" {
			out = append(out, n)
		}
	}
	return out[rng.IntN(len(out))]
}

// nextFallback is the fallback the coordinator must pick next, or "".
func (o *ctOracle) nextFallback() NodeID {
	for _, n := range o.plan.Preference[o.plan.N:] {
		if _, sent := o.fate[n]; !sent && !o.down[n] {
			return n
		}
	}
	return ""
}

// checkSends checks requests against the rules: never a node twice, never
// a down node, home nodes for themselves, fallbacks in order and only for
// a slot whose node was down or never sent, at most N outstanding.
func (o *ctOracle) checkSends(sends []Send, mayReplace bool) error {
	for _, s := range sends {
		o.logf("send %s(%s)", s.To, s.HintFor)
		if s.HintFor != "" {
			o.seen["stand-in"]++
			if mayReplace && o.fate[s.HintFor] == "never" && o.count("ok") > 0 {
				o.seen["stand-in after success"]++
			}
		}
		if _, sent := o.fate[s.To]; sent {
			return fmt.Errorf("sent to %s twice", s.To)
		}
		if o.down[s.To] {
			return fmt.Errorf("sent to %s, which is down", s.To)
		}
		if o.home[s.To] {
			if s.HintFor != "" || o.target[s.To] != "" {
				return fmt.Errorf("home %s sent with hint for %q (slot target %q)", s.To, s.HintFor, o.target[s.To])
			}
			o.target[s.To] = s.To
		} else {
			if !o.plan.Sloppy || !mayReplace {
				return fmt.Errorf("fallback %s used (sloppy %v, may replace %v)", s.To, o.plan.Sloppy, mayReplace)
			}
			if want := o.nextFallback(); s.To != want {
				return fmt.Errorf("fallback %s used, want %s", s.To, want)
			}
			prev := o.target[s.HintFor]
			if !o.home[s.HintFor] || (prev == "" && !o.down[s.HintFor]) || (prev != "" && o.fate[prev] != "never") {
				return fmt.Errorf("fallback %s stands in for %q whose slot was on %q (%s)", s.To, s.HintFor, prev, o.fate[prev])
			}
			o.target[s.HintFor] = s.To
			o.hintFor[s.To] = s.HintFor
		}
		o.fate[s.To] = "pending"
	}
	if p := o.count("pending"); p > o.plan.N {
		return fmt.Errorf("%d requests outstanding, N is %d", p, o.plan.N)
	}
	return nil
}

// replaceable reports whether a never-sent request on node must be
// replaced by a fallback.
func (o *ctOracle) replaceable(mayReplace bool) bool {
	return mayReplace && o.plan.Sloppy && o.nextFallback() != ""
}

func TestWriteCoordinatorRandom(t *testing.T) {
	seen := map[string]int{}
	for seed := uint64(1); seed <= 2000; seed++ {
		o, err := ctRandomWrite(seed)
		if err != nil {
			t.Fatalf("seed %d: %v\nplan %+v\ntrace:\n%s", seed, err, o.plan, strings.Join(o.trace, "\n"))
		}
		for k, v := range o.seen {
			seen[k] += v
		}
	}
	t.Logf("%v", seen)
	ctRequireSeen(t, seen, "success", "sloppy success", "fail fast", "fail early", "fail at timeout", "indeterminate", "determinate", "stand-in", "stand-in after success")
}

// ctRequireSeen fails unless the random runs went through every case.
func ctRequireSeen(t *testing.T, seen map[string]int, cases ...string) {
	t.Helper()
	for _, c := range cases {
		if seen[c] == 0 {
			t.Errorf("no run went through %q; got %v", c, seen)
		}
	}
}

func ctRandomWrite(seed uint64) (*ctOracle, error) {
	rng := rand.New(rand.NewPCG(seed, 0))
	o := newCtOracle(ctRandomCluster(rng))
	w := o.plan.Quorum
	c, step, err := NewWrite(o.plan)
	if err != nil {
		return o, err
	}
	var acks []Ack
	var outcome *WriteOutcome
	timedOut := false
	// check verifies one step and the decision against the oracle.
	check := func(step WriteStep, replaced int) error {
		if err := o.checkSends(step.Send, outcome == nil || outcome.OK()); err != nil {
			return err
		}
		if len(step.Send) != replaced {
			return fmt.Errorf("got %d stand-ins, want %d", len(step.Send), replaced)
		}
		if step.Outcome != nil {
			if outcome != nil {
				return fmt.Errorf("second outcome")
			}
			outcome = step.Outcome
			o.logf("outcome ok=%v acks=%v indeterminate=%v err=%v", outcome.OK(), outcome.Acks, outcome.Indeterminate, outcome.Err)
			if !slices.Equal(outcome.Acks, acks) {
				return fmt.Errorf("outcome acks: got %v, want %v", outcome.Acks, acks)
			}
			switch {
			case outcome.OK() && slices.ContainsFunc(acks, func(a Ack) bool { return a.HintFor != "" }):
				o.seen["sloppy success"]++
			case outcome.OK():
				o.seen["success"]++
			case len(o.fate) == 0:
				o.seen["fail fast"]++
			case timedOut:
				o.seen["fail at timeout"]++
			default:
				o.seen["fail early"]++
			}
			if !outcome.OK() {
				if outcome.Indeterminate {
					o.seen["indeterminate"]++
				} else {
					o.seen["determinate"]++
				}
			}
			if outcome.OK() {
				if len(acks) != w {
					return fmt.Errorf("success with %d acks, want %d", len(acks), w)
				}
			} else {
				pending := o.count("pending")
				if !timedOut && len(acks)+pending >= w {
					return fmt.Errorf("failed early with %d acks and %d pending, W=%d", len(acks), pending, w)
				}
				if !errors.Is(outcome.Err, ErrUnavailable) {
					return fmt.Errorf("error %v does not wrap ErrUnavailable", outcome.Err)
				}
				want := len(acks) > 0 || pending > 0 || o.count("lost") > 0
				if outcome.Indeterminate != want {
					return fmt.Errorf("indeterminate: got %v, want %v", outcome.Indeterminate, want)
				}
			}
		}
		if outcome == nil && (timedOut || len(acks) >= w || len(acks)+o.count("pending") < w) {
			return fmt.Errorf("undecided with %d acks and %d pending, W=%d, timed out %v", len(acks), o.count("pending"), w, timedOut)
		}
		if got, want := c.Done(), timedOut || (outcome != nil && o.count("pending") == 0); got != want {
			return fmt.Errorf("Done: got %v, want %v", got, want)
		}
		return nil
	}
	if err := check(step, len(step.Send)); err != nil {
		return o, err
	}
	for i := 0; i < 60; i++ {
		r := rng.IntN(100)
		pend := o.pending()
		switch {
		case timedOut || r < 12:
			n := o.settled(rng)
			o.logf("ignored input on %s", n)
			var s WriteStep
			switch rng.IntN(3) {
			case 0:
				s = c.Reply(n, true)
			case 1:
				s = c.Failed(n, Failure(1+rng.IntN(3)))
			default:
				if timedOut {
					s = c.Timeout()
				}
			}
			if len(s.Send) != 0 || s.Outcome != nil {
				return o, fmt.Errorf("input on settled %s produced %+v", n, s)
			}
			if timedOut && i > 50 {
				return o, nil
			}
		case len(pend) == 0 || r < 18:
			o.logf("timeout")
			timedOut = true
			for _, n := range pend {
				o.fate[n] = "lost"
			}
			if err := check(c.Timeout(), 0); err != nil {
				return o, err
			}
		default:
			n := pend[rng.IntN(len(pend))]
			var s WriteStep
			replaced := 0
			switch k := rng.IntN(100); {
			case k < 55:
				o.logf("ack %s", n)
				o.fate[n] = "ok"
				if outcome == nil {
					acks = append(acks, Ack{Node: n, HintFor: o.hintFor[n]})
				}
				s = c.Reply(n, true)
			case k < 65:
				o.logf("nack %s", n)
				o.fate[n] = "refused"
				s = c.Reply(n, false)
			case k < 80:
				o.logf("lost %s", n)
				o.fate[n] = "lost"
				s = c.Failed(n, LostAfterSend)
			default:
				o.logf("never %s", n)
				if o.replaceable(outcome == nil || outcome.OK()) {
					replaced = 1
				}
				o.fate[n] = "never"
				s = c.Failed(n, NeverSent)
			}
			if err := check(s, replaced); err != nil {
				return o, err
			}
		}
	}
	if !timedOut {
		o.logf("timeout")
		timedOut = true
		for _, n := range o.pending() {
			o.fate[n] = "lost"
		}
		if err := check(c.Timeout(), 0); err != nil {
			return o, err
		}
	}
	if outcome == nil {
		return o, fmt.Errorf("no outcome")
	}
	return o, nil
}

func TestReadCoordinatorRandom(t *testing.T) {
	seen := map[string]int{}
	for seed := uint64(1); seed <= 2000; seed++ {
		o, err := ctRandomRead(seed)
		if err != nil {
			t.Fatalf("seed %d: %v\nplan %+v\ntrace:\n%s", seed, err, o.plan, strings.Join(o.trace, "\n"))
		}
		for k, v := range o.seen {
			seen[k] += v
		}
	}
	t.Logf("%v", seen)
	ctRequireSeen(t, seen, "success", "stale", "fail fast", "fail early", "fail at timeout", "stand-in", "repair", "late repair", "blocking wait", "blocking timeout")
}

// ctMaybe is a replica's copy of the key: absent, or a version.
type ctMaybe struct {
	found bool
	v     LWW
}

func (m ctMaybe) less(u ctMaybe) bool {
	return u.found && (!m.found || CompareLWW(m.v, u.v) == Before)
}

func ctRandomRead(seed uint64) (*ctOracle, error) {
	rng := rand.New(rand.NewPCG(seed, 1))
	o := newCtOracle(ctRandomCluster(rng))
	r, mode := o.plan.Quorum, o.plan.Repair
	stored := map[NodeID]ctMaybe{}
	for _, n := range o.plan.Preference {
		if rng.IntN(5) > 0 {
			stored[n] = ctMaybe{true, LWW{Timestamp: hlc.Timestamp{WallNanos: 1 + rng.Int64N(4)}, Node: NodeID("pq"[rng.IntN(2):][:1])}}
		}
	}
	c, step, err := NewRead(o.plan, CompareLWW)
	if err != nil {
		return o, err
	}
	var replies []NodeID           // in order of arrival
	held := map[NodeID]ctMaybe{}   // what each replied node holds, with repairs
	waiting := map[NodeID]int{}    // repairs not reported yet
	var sent, acked, failed int    // repairs
	var newest ctMaybe             // over every reply
	var released *ReadOutcome[LWW] // the answer
	var decision *ReadOutcome[LWW] // what the answer must say
	failedEarly, timedOut := false, false
	outstanding := func() int {
		t := 0
		for _, w := range waiting {
			t += w
		}
		return t
	}
	check := func(step ReadStep[LWW], replaced int) error {
		decided := len(replies) >= r || failedEarly || timedOut
		if err := o.checkSends(step.Send, !decided); err != nil {
			return err
		}
		if len(step.Send) != replaced {
			return fmt.Errorf("got %d stand-ins, want %d", len(step.Send), replaced)
		}
		for _, rp := range step.Repairs {
			o.logf("repair %s<-%v", rp.To, rp.Version)
			if mode == RepairOff || decision == nil || !decision.OK() {
				return fmt.Errorf("repair %v with mode %d, decision %+v", rp, mode, decision)
			}
			h, ok := held[rp.To]
			if !ok || !o.home[rp.To] {
				return fmt.Errorf("repair to %s, which is not a home replica that answered", rp.To)
			}
			if rp.Version != newest.v || !h.less(newest) {
				return fmt.Errorf("repair %s<-%v: holds %+v, newest %+v", rp.To, rp.Version, h, newest)
			}
			o.seen["repair"]++
			if released != nil && len(replies) > r {
				o.seen["late repair"]++
			}
			held[rp.To] = newest
			waiting[rp.To]++
			sent++
		}
		if decision != nil && decision.OK() && mode != RepairOff {
			for _, n := range replies {
				if o.home[n] && held[n].less(newest) {
					return fmt.Errorf("%s holds %+v, newest %+v, and got no repair", n, held[n], newest)
				}
			}
		}
		if step.Outcome != nil {
			if released != nil {
				return fmt.Errorf("second outcome")
			}
			released = step.Outcome
			o.logf("outcome %+v", *released)
			switch {
			case released.OK() && released.Agreed < released.Answered:
				o.seen["stale"]++
			case released.OK():
				o.seen["success"]++
			case len(o.fate) == 0:
				o.seen["fail fast"]++
			case timedOut:
				o.seen["fail at timeout"]++
			default:
				o.seen["fail early"]++
			}
			if released.OK() && mode == RepairBlocking && released.RepairsSent > 0 {
				if timedOut {
					o.seen["blocking timeout"]++
				} else {
					o.seen["blocking wait"]++
				}
			}
			if decision == nil {
				return fmt.Errorf("outcome %+v before a decision", *released)
			}
			want := *decision
			want.RepairsSent, want.RepairsAcked, want.RepairsFailed = sent, acked, failed
			got := *released
			if (got.Err == nil) != (want.Err == nil) || (got.Err != nil && got.Err.Error() != want.Err.Error()) {
				return fmt.Errorf("outcome error: got %v, want %v", got.Err, want.Err)
			}
			got.Err, want.Err = nil, nil
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("outcome: got %+v, want %+v", got, want)
			}
		}
		releasable := decision != nil && (timedOut || !decision.OK() || mode != RepairBlocking || outstanding() == 0)
		if step.Outcome != nil && !releasable {
			return fmt.Errorf("answered with %d blocking repairs outstanding", outstanding())
		}
		if released == nil && releasable {
			return fmt.Errorf("not answered, with decision %+v and %d repairs outstanding", decision, outstanding())
		}
		if got, want := c.Done(), timedOut || (released != nil && o.count("pending") == 0); got != want {
			return fmt.Errorf("Done: got %v, want %v", got, want)
		}
		return nil
	}
	// decide computes what the answer must be from the oracle's state
	// before an input is fed in.
	decide := func() {
		if decision != nil {
			return
		}
		switch {
		case len(replies) >= r:
			d := &ReadOutcome[LWW]{Answered: r, Required: r}
			var best ctMaybe
			for _, n := range replies[:r] {
				if best.less(stored[n]) {
					best = stored[n]
				}
			}
			d.Found, d.Value = best.found, best.v
			for _, n := range replies[:r] {
				if stored[n] == best {
					d.Agreed++
				}
			}
			decision = d
		case timedOut || len(replies)+o.count("pending") < r:
			failedEarly = !timedOut
			decision = &ReadOutcome[LWW]{Err: unavailable(len(replies), r), Answered: len(replies), Required: r}
		}
	}
	// The first step's requests are checked before deciding: a read
	// that could not ask R replicas fails at once.
	if err := o.checkSends(step.Send, true); err != nil {
		return o, err
	}
	decide()
	step.Send = nil
	if err := check(step, 0); err != nil {
		return o, err
	}
	for i := 0; i < 60; i++ {
		k := rng.IntN(100)
		pend := o.pending()
		var waitingNodes []NodeID
		for n, w := range waiting {
			if w > 0 {
				waitingNodes = append(waitingNodes, n)
			}
		}
		slices.Sort(waitingNodes)
		switch {
		case timedOut || k < 10:
			n := o.settled(rng)
			o.logf("ignored input on %s", n)
			var s ReadStep[LWW]
			switch rng.IntN(3) {
			case 0:
				s = c.Reply(n, true, LWW{Timestamp: hlc.Timestamp{WallNanos: 99}})
			case 1:
				s = c.Failed(n, Failure(1+rng.IntN(3)))
			default:
				if waiting[n] == 0 {
					s = c.RepairDone(n, true)
				}
			}
			if len(s.Send) != 0 || len(s.Repairs) != 0 || s.Outcome != nil {
				return o, fmt.Errorf("input on settled %s produced %+v", n, s)
			}
			if timedOut && i > 50 {
				return o, nil
			}
		case len(waitingNodes) > 0 && k < 30:
			n := waitingNodes[rng.IntN(len(waitingNodes))]
			ok := rng.IntN(4) > 0
			o.logf("repair done %s %v", n, ok)
			waiting[n]--
			if ok {
				acked++
			} else {
				failed++
			}
			if err := check(c.RepairDone(n, ok), 0); err != nil {
				return o, err
			}
		case len(pend) == 0 || k < 16:
			o.logf("timeout")
			timedOut = true
			for _, n := range pend {
				o.fate[n] = "lost"
			}
			decide()
			if err := check(c.Timeout(), 0); err != nil {
				return o, err
			}
		default:
			n := pend[rng.IntN(len(pend))]
			replaced := 0
			var s ReadStep[LWW]
			switch f := rng.IntN(100); {
			case f < 65:
				o.logf("reply %s %+v", n, stored[n])
				o.fate[n] = "ok"
				replies = append(replies, n)
				held[n] = stored[n]
				if newest.less(stored[n]) {
					newest = stored[n]
				}
				decide()
				s = c.Reply(n, stored[n].found, stored[n].v)
			case f < 80:
				kind := Failure(2 + rng.IntN(2))
				o.logf("%s %s", kind, n)
				o.fate[n] = "lost"
				decide()
				s = c.Failed(n, kind)
			default:
				o.logf("never %s", n)
				if o.replaceable(decision == nil) {
					replaced = 1
				}
				o.fate[n] = "never"
				if replaced == 0 {
					decide()
				}
				s = c.Failed(n, NeverSent)
			}
			if err := check(s, replaced); err != nil {
				return o, err
			}
		}
	}
	if !timedOut {
		o.logf("timeout")
		timedOut = true
		for _, n := range o.pending() {
			o.fate[n] = "lost"
		}
		decide()
		if err := check(c.Timeout(), 0); err != nil {
			return o, err
		}
	}
	if released == nil {
		return o, fmt.Errorf("no outcome")
	}
	return o, nil
}
