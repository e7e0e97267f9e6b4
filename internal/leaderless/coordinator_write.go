package leaderless

// Ack is one replica that acknowledged a write: Node itself, or when
// HintFor is set, a fallback that holds the write as a hint for HintFor.
type Ack struct {
	Node    NodeID
	HintFor NodeID
}

// WriteOutcome is the answer to a write.
type WriteOutcome struct {
	// Err is nil on success and wraps ErrUnavailable otherwise, with a
	// message such as "only 1 of 2 required replicas answered".
	Err error
	// Acks lists the replicas that acknowledged before the decision, in
	// order of arrival: where the write certainly is.
	Acks []Ack
	// Required is W.
	Required int
	// Indeterminate is set on a failed write that may nevertheless have been
	// applied: some replica acknowledged it, or a request was lost or still
	// unanswered. The write is not rolled back; later reads may see it. A
	// failed write that is not Indeterminate was applied nowhere.
	Indeterminate bool
}

// OK reports whether the write reached its quorum.
func (o *WriteOutcome) OK() bool { return o.Err == nil }

// Hinted returns how many of the acknowledgements came from fallbacks: a
// nonzero count means the quorum was sloppy.
func (o *WriteOutcome) Hinted() int {
	c := 0
	for _, a := range o.Acks {
		if a.HintFor != "" {
			c++
		}
	}
	return c
}

// WriteStep is what the caller must do after one input: send every request
// in Send (the write's payload, with a hint for Send.HintFor when set), and
// answer the client if Outcome is set. Outcome is set in exactly one step.
type WriteStep struct {
	Send    []Send
	Outcome *WriteOutcome
}

// WriteCoordinator is the state machine of one write. Build it with
// NewWrite; feed it Reply, Failed and Timeout until Done. After a success
// it keeps replacing never-sent home replicas with fallbacks, so the write
// still reaches N nodes for durability; keep driving it until Done if that
// matters, or call Timeout to stop.
type WriteCoordinator struct {
	d        *dispatch
	acks     []Ack
	outcome  *WriteOutcome
	timedOut bool
}

// NewWrite starts coordinating a write under plan p and returns the
// requests to send. When fewer than W replicas can be sent to at all, the
// first step sends nothing and carries the failed outcome (not
// Indeterminate: the write went nowhere).
func NewWrite(p Plan) (*WriteCoordinator, WriteStep, error) {
	d, err := newDispatch(p)
	if err != nil {
		return nil, WriteStep{}, err
	}
	c := &WriteCoordinator{d: d}
	step := WriteStep{Send: d.start()}
	step.Outcome = c.decide()
	return c, step, nil
}

// Reply records node's answer: ok if it applied the write, not ok if it
// refused it. Answers from nodes not asked, duplicates and late answers are
// ignored.
func (c *WriteCoordinator) Reply(node NodeID, ok bool) WriteStep {
	if c.timedOut {
		return WriteStep{}
	}
	i, found := c.d.pendingSlot(node)
	if !found {
		return WriteStep{}
	}
	if !ok {
		c.d.fail(i, Refused, false)
		return WriteStep{Outcome: c.decide()}
	}
	c.d.slots[i].state = slotAnswered
	if c.outcome == nil {
		c.acks = append(c.acks, Ack{Node: node, HintFor: c.hintFor(i)})
	}
	return WriteStep{Outcome: c.decide()}
}

// Failed records that node's request failed. A NeverSent request moves its
// slot to a fallback when the plan is sloppy and the write has not failed.
func (c *WriteCoordinator) Failed(node NodeID, kind Failure) WriteStep {
	if c.timedOut {
		return WriteStep{}
	}
	i, found := c.d.pendingSlot(node)
	if !found {
		return WriteStep{}
	}
	var step WriteStep
	if s, ok := c.d.fail(i, kind, c.outcome == nil || c.outcome.OK()); ok {
		step.Send = []Send{s}
	}
	step.Outcome = c.decide()
	return step
}

// Timeout records that the deadline passed: an undecided write fails, and
// every later input is ignored.
func (c *WriteCoordinator) Timeout() WriteStep {
	if c.timedOut {
		return WriteStep{}
	}
	c.timedOut = true
	c.d.expire()
	if c.outcome != nil {
		return WriteStep{}
	}
	return WriteStep{Outcome: c.fail()}
}

// Outcome returns the outcome once decided, else nil.
func (c *WriteCoordinator) Outcome() *WriteOutcome { return c.outcome }

// Done reports whether the coordinator has nothing left to do: decided
// with no request outstanding, or timed out.
func (c *WriteCoordinator) Done() bool {
	return c.timedOut || (c.outcome != nil && c.d.count(slotPending) == 0)
}

func (c *WriteCoordinator) hintFor(i int) NodeID {
	if s := c.d.slots[i]; s.target != s.owner {
		return s.owner
	}
	return ""
}

// decide returns the outcome if this input decided it, else nil.
func (c *WriteCoordinator) decide() *WriteOutcome {
	if c.outcome != nil {
		return nil
	}
	w := c.d.plan.Quorum
	if len(c.acks) >= w {
		c.outcome = &WriteOutcome{Acks: c.acks, Required: w}
		return c.outcome
	}
	if len(c.acks)+c.d.count(slotPending) < w {
		return c.fail()
	}
	return nil
}

func (c *WriteCoordinator) fail() *WriteOutcome {
	w := c.d.plan.Quorum
	c.outcome = &WriteOutcome{
		Err:           unavailable(len(c.acks), w),
		Acks:          c.acks,
		Required:      w,
		Indeterminate: len(c.acks) > 0 || c.d.count(slotPending) > 0 || c.d.count(slotLost) > 0,
	}
	return c.outcome
}
