package leaderless

import (
	"fmt"
	"slices"
)

// Repair is one read repair the caller must send: write Version (with its
// value) to the home replica To, which answered with something older or
// nothing. Repairs go to home replicas only; a fallback that answered
// stale is left to hinted handoff and anti-entropy.
type Repair[V any] struct {
	To      NodeID
	Version V
}

// ReadOutcome is the answer to a read.
type ReadOutcome[V any] struct {
	// Err is nil on success and wraps ErrUnavailable otherwise.
	Err error
	// Found reports whether any answer held a version; when false the key
	// is absent on every replica that answered.
	Found bool
	// Value is the newest version among the first R answers.
	Value V
	// Siblings are the other versions concurrent with Value, all of them
	// newest. Always empty under a total order such as CompareLWW.
	Siblings []V
	// Answered is how many replicas answered (with a version or without).
	Answered int
	// Agreed is how many of them held Value or one of its Siblings (or,
	// when Found is false, nothing): Answered-Agreed replicas were stale.
	Agreed int
	// Required is R.
	Required int
	// RepairsSent, RepairsAcked and RepairsFailed count read repairs as of
	// the answer. Under RepairBlocking, Acked+Failed == Sent unless the
	// deadline passed first; under RepairAsync the acknowledgements have
	// not arrived yet.
	RepairsSent, RepairsAcked, RepairsFailed int
}

// OK reports whether R replicas answered.
func (o *ReadOutcome[V]) OK() bool { return o.Err == nil }

// ReadStep is what the caller must do after one input: send the read
// requests in Send, the repairs in Repairs, and answer the client if
// Outcome is set. Outcome is set in exactly one step.
type ReadStep[V any] struct {
	Send    []Send
	Repairs []Repair[V]
	Outcome *ReadOutcome[V]
}

// readReply is one replica's answer and the versions it is known to hold
// (its answer, plus the repairs sent to it).
type readReply[V any] struct {
	node  NodeID
	home  bool
	found bool
	has   []V
}

// ReadCoordinator is the state machine of one read with versions of type
// V. Build it with NewRead; feed it Reply, Failed, RepairDone and Timeout
// until Done. The read is decided by the first R answers; answers that
// arrive later still produce repairs (and a late answer newer than the
// value returned makes every replica that answered older get the newer
// version).
type ReadCoordinator[V any] struct {
	d        *dispatch
	cmp      func(a, b V) Order
	replies  []*readReply[V] // in order of arrival
	newest   []V             // pairwise concurrent maximal versions seen
	decided  *ReadOutcome[V]
	released bool
	timedOut bool

	waiting                            map[NodeID]int // repairs not yet reported, per node
	repairsSent, repairsAck, repairsNo int
}

// NewRead starts coordinating a read under plan p, with cmp ordering
// versions (CompareLWW for last-writer-wins), and returns the requests to
// send. When fewer than R replicas can be asked at all, the first step
// asks nobody and carries the failed outcome.
func NewRead[V any](p Plan, cmp func(a, b V) Order) (*ReadCoordinator[V], ReadStep[V], error) {
	if cmp == nil {
		return nil, ReadStep[V]{}, fmt.Errorf("%w: nil comparator", ErrInvalidPlan)
	}
	d, err := newDispatch(p)
	if err != nil {
		return nil, ReadStep[V]{}, err
	}
	c := &ReadCoordinator[V]{
		d:       d,
		cmp:     cmp,
		waiting: make(map[NodeID]int),
	}
	step := ReadStep[V]{Send: d.start()}
	c.advance(&step)
	return c, step, nil
}

// Reply records node's answer: found with version v, or not found (v is
// then ignored). Answers from nodes not asked, duplicates and late answers
// are ignored.
func (c *ReadCoordinator[V]) Reply(node NodeID, found bool, v V) ReadStep[V] {
	var step ReadStep[V]
	if c.timedOut {
		return step
	}
	i, ok := c.d.pendingSlot(node)
	if !ok {
		return step
	}
	s := &c.d.slots[i]
	s.state = slotAnswered
	r := &readReply[V]{node: node, home: s.target == s.owner, found: found}
	if found {
		r.has = []V{v}
		c.merge(v)
	}
	c.replies = append(c.replies, r)
	c.advance(&step)
	return step
}

// Failed records that node's request failed. A NeverSent request moves its
// slot to a fallback when the plan is sloppy and the read is undecided.
func (c *ReadCoordinator[V]) Failed(node NodeID, kind Failure) ReadStep[V] {
	var step ReadStep[V]
	if c.timedOut {
		return step
	}
	i, ok := c.d.pendingSlot(node)
	if !ok {
		return step
	}
	if s, ok := c.d.fail(i, kind, c.decided == nil); ok {
		step.Send = []Send{s}
	}
	c.advance(&step)
	return step
}

// RepairDone records that the repair sent to node was applied (ok) or not.
// Only RepairBlocking waits for it; in the other modes it just counts.
func (c *ReadCoordinator[V]) RepairDone(node NodeID, ok bool) ReadStep[V] {
	var step ReadStep[V]
	if c.timedOut || c.waiting[node] == 0 {
		return step
	}
	c.waiting[node]--
	if ok {
		c.repairsAck++
	} else {
		c.repairsNo++
	}
	c.advance(&step)
	return step
}

// Timeout records that the deadline passed: an undecided read fails, a
// decided read waiting for blocking repairs answers now, and every later
// input is ignored.
func (c *ReadCoordinator[V]) Timeout() ReadStep[V] {
	var step ReadStep[V]
	if c.timedOut {
		return step
	}
	c.timedOut = true
	c.d.expire()
	if c.decided == nil {
		c.decided = c.failed()
	}
	if !c.released {
		step.Outcome = c.release()
	}
	return step
}

// Outcome returns the outcome once the client has been answered, else nil.
func (c *ReadCoordinator[V]) Outcome() *ReadOutcome[V] {
	if !c.released {
		return nil
	}
	return c.decided
}

// Done reports whether the coordinator has nothing left to do: answered
// with no request outstanding, or timed out.
func (c *ReadCoordinator[V]) Done() bool {
	return c.timedOut || (c.released && c.d.count(slotPending) == 0)
}

// advance decides the read when it can, adds the repairs now due, and
// releases the outcome when it may be.
func (c *ReadCoordinator[V]) advance(step *ReadStep[V]) {
	if c.decided == nil {
		r := c.d.plan.Quorum
		switch {
		case len(c.replies) >= r:
			c.decided = c.succeeded()
		case len(c.replies)+c.d.count(slotPending) < r:
			c.decided = c.failed()
		default:
			return
		}
	}
	if c.decided.OK() && c.d.plan.Repair != RepairOff {
		step.Repairs = c.repairs()
	}
	if !c.released && (c.d.plan.Repair != RepairBlocking || !c.decided.OK() || c.outstanding() == 0) {
		step.Outcome = c.release()
	}
}

func (c *ReadCoordinator[V]) succeeded() *ReadOutcome[V] {
	o := &ReadOutcome[V]{Answered: len(c.replies), Required: c.d.plan.Quorum}
	if len(c.newest) > 0 {
		o.Found = true
		o.Value = c.newest[0]
		o.Siblings = slices.Clone(c.newest[1:])
	}
	for _, r := range c.replies {
		if (!o.Found && !r.found) || (o.Found && r.found && c.isNewest(r.has[0])) {
			o.Agreed++
		}
	}
	return o
}

func (c *ReadCoordinator[V]) failed() *ReadOutcome[V] {
	return &ReadOutcome[V]{
		Err:      unavailable(len(c.replies), c.d.plan.Quorum),
		Answered: len(c.replies),
		Required: c.d.plan.Quorum,
	}
}

// release hands out the outcome with the repair counts as they stand.
func (c *ReadCoordinator[V]) release() *ReadOutcome[V] {
	c.released = true
	c.decided.RepairsSent, c.decided.RepairsAcked, c.decided.RepairsFailed = c.repairsSent, c.repairsAck, c.repairsNo
	return c.decided
}

func (c *ReadCoordinator[V]) outstanding() int {
	n := 0
	for _, w := range c.waiting {
		n += w
	}
	return n
}

// isNewest reports whether v is (or supersedes) one of the newest.
func (c *ReadCoordinator[V]) isNewest(v V) bool {
	for _, m := range c.newest {
		if o := c.cmp(v, m); o == Equal || o == After {
			return true
		}
	}
	return false
}

func (c *ReadCoordinator[V]) holds(has []V, m V) bool {
	for _, h := range has {
		if o := c.cmp(h, m); o == Equal || o == After {
			return true
		}
	}
	return false
}

// merge adds v to the newest versions unless one of them already covers
// it, dropping those v supersedes.
func (c *ReadCoordinator[V]) merge(v V) {
	for _, m := range c.newest {
		if o := c.cmp(v, m); o == Before || o == Equal {
			return
		}
	}
	kept := c.newest[:0]
	for _, m := range c.newest {
		if c.cmp(m, v) != Before {
			kept = append(kept, m)
		}
	}
	c.newest = append(kept, v)
}

// repairs returns a repair for every newest version that a home replica
// which answered does not hold yet, and counts it as held from now on.
func (c *ReadCoordinator[V]) repairs() []Repair[V] {
	var out []Repair[V]
	for _, r := range c.replies {
		if !r.home {
			continue
		}
		for _, m := range c.newest {
			if c.holds(r.has, m) {
				continue
			}
			out = append(out, Repair[V]{To: r.node, Version: m})
			r.has = append(r.has, m)
			c.waiting[r.node]++
			c.repairsSent++
		}
	}
	return out
}
