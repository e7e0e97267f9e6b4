package leaderless

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/placement"
)

// NodeID names a node. It is placement's type, so a preference list from
// placement is a plan's Preference as is.
type NodeID = placement.NodeID

// Errors callers branch on.
var (
	// ErrUnavailable is the cause of a failed outcome: fewer than the
	// required replicas answered before the deadline. The edge maps it to
	// the UNAVAILABLE code.
	ErrUnavailable = errors.New("unavailable")
	// ErrInvalidPlan is returned by NewWrite and NewRead for a plan that
	// cannot be coordinated (quorum outside 1..N, too short or duplicated
	// preference list, nil comparator).
	ErrInvalidPlan = errors.New("leaderless: invalid plan")
)

// RepairMode says what a read does about replicas that returned an older
// version or nothing.
type RepairMode uint8

// Read-repair modes.
const (
	// RepairOff sends no repairs (weak consistency).
	RepairOff RepairMode = iota
	// RepairAsync returns the repairs in the same step as the outcome; the
	// answer does not wait for them.
	RepairAsync
	// RepairBlocking holds the outcome back until every repair sent so far
	// has been reported with RepairDone (or Timeout), so that a client that
	// saw a value can count on the replicas that answered holding it.
	RepairBlocking
)

// Plan is what a coordinator needs to know about one request. It is copied
// by NewWrite and NewRead.
type Plan struct {
	// Preference is the key's preference list: the first N nodes are the
	// home replicas, in order, and the rest are fallbacks, tried in order.
	Preference []NodeID
	// N is the replication factor.
	N int
	// Quorum is W for a write, R for a read: how many of the N slots must
	// answer for success. 1 <= Quorum <= N.
	Quorum int
	// Down lists nodes believed down (by the failure detector); they are
	// never sent to. Nodes outside Preference are ignored.
	Down []NodeID
	// Sloppy allows fallbacks to stand in for unreachable home replicas.
	// A sloppy quorum is weaker than a strict one (see the package doc).
	Sloppy bool
	// Repair is the read-repair mode; writes ignore it.
	Repair RepairMode
}

// validate checks the plan's own rules.
func (p *Plan) validate() error {
	if p.N < 1 {
		return fmt.Errorf("%w: N is %d, want at least 1", ErrInvalidPlan, p.N)
	}
	if p.Quorum < 1 || p.Quorum > p.N {
		return fmt.Errorf("%w: quorum %d outside 1..N (N=%d)", ErrInvalidPlan, p.Quorum, p.N)
	}
	if len(p.Preference) < p.N {
		return fmt.Errorf("%w: preference list has %d nodes, N is %d", ErrInvalidPlan, len(p.Preference), p.N)
	}
	seen := make(map[NodeID]bool, len(p.Preference))
	for _, n := range p.Preference {
		if n == "" {
			return fmt.Errorf("%w: empty node id in preference list", ErrInvalidPlan)
		}
		if seen[n] {
			return fmt.Errorf("%w: node %s twice in preference list", ErrInvalidPlan, n)
		}
		seen[n] = true
	}
	if p.Repair > RepairBlocking {
		return fmt.Errorf("%w: unknown repair mode %d", ErrInvalidPlan, p.Repair)
	}
	return nil
}

// Failure says how a request to a node failed; it decides whether the slot
// may move to a fallback and whether a failed write is indeterminate.
type Failure uint8

// Failure kinds.
const (
	// NeverSent: the request certainly did not leave this node (no
	// connection, queue full). The node is not tried again, and its slot
	// moves to a fallback if the plan is sloppy.
	NeverSent Failure = iota + 1
	// LostAfterSend: the request left but no answer will come (connection
	// broke, node's deadline). The node may have applied a write.
	LostAfterSend
	// Refused: the node answered that it did not apply the request (a
	// storage error, a full hint store). Same as Reply(node, false) for a
	// write.
	Refused
)

func (f Failure) String() string {
	switch f {
	case NeverSent:
		return "never-sent"
	case LostAfterSend:
		return "lost-after-send"
	case Refused:
		return "refused"
	}
	return fmt.Sprintf("Failure(%d)", uint8(f))
}

// Send is one request the caller must send. When HintFor is set, To is a
// fallback standing in for the home replica HintFor: for a write it stores
// a hint for HintFor; for a read it answers from the hints it holds for
// HintFor.
type Send struct {
	To      NodeID
	HintFor NodeID
}

// Order is how two versions of one key relate.
type Order int8

// Orders. A total order (LWW) never reports Concurrent.
const (
	Before     Order = -1 // a happened before b: b supersedes a
	Equal      Order = 0  // the same version
	After      Order = 1  // a supersedes b
	Concurrent Order = 2  // neither supersedes the other (siblings)
)

func (o Order) String() string {
	switch o {
	case Before:
		return "before"
	case Equal:
		return "equal"
	case After:
		return "after"
	case Concurrent:
		return "concurrent"
	}
	return fmt.Sprintf("Order(%d)", int8(o))
}

// LWW is a last-writer-wins version: the hybrid-logical-clock time of the
// write and the node that stamped it, which breaks ties between two writes
// stamped with the same time on different nodes.
type LWW struct {
	Timestamp hlc.Timestamp
	Node      NodeID
}

// CompareLWW orders LWW versions by timestamp, then node id. It is a total
// order: it never returns Concurrent, so every read has one winner and
// every replica converges on it.
func CompareLWW(a, b LWW) Order {
	if c := a.Timestamp.Compare(b.Timestamp); c != 0 {
		return Order(c)
	}
	return Order(strings.Compare(string(a.Node), string(b.Node)))
}

// slotState is where one home replica's slot stands.
type slotState uint8

const (
	slotUnsent  slotState = iota // no node could be sent to
	slotPending                  // sent to target, no answer yet
	slotAnswered
	slotRefused
	slotLost // sent, outcome unknown (lost, or pending at timeout)
)

// slot is one of the N home replicas and the node currently serving it:
// the owner itself, or a fallback holding a hint for it.
type slot struct {
	owner  NodeID
	target NodeID
	state  slotState
}

// dispatch assigns slots to nodes: home replicas first, then fallbacks in
// preference order, never the same node twice. Both coordinators embed it.
type dispatch struct {
	plan      Plan
	slots     []slot
	fallbacks []NodeID
	nextFB    int             // index of the next fallback to try
	avoid     map[NodeID]bool // down, or failed before sending
	sent      map[NodeID]int  // every node ever sent to -> its slot
}

func newDispatch(p Plan) (*dispatch, error) {
	p.Preference = append([]NodeID(nil), p.Preference...)
	p.Down = append([]NodeID(nil), p.Down...)
	if err := p.validate(); err != nil {
		return nil, err
	}
	d := &dispatch{
		plan:      p,
		slots:     make([]slot, p.N),
		fallbacks: p.Preference[p.N:],
		avoid:     make(map[NodeID]bool, len(p.Down)),
		sent:      make(map[NodeID]int, p.N),
	}
	for _, n := range p.Down {
		d.avoid[n] = true
	}
	for i := range d.slots {
		d.slots[i].owner = p.Preference[i]
	}
	return d, nil
}

// start places every slot and returns the requests, or nothing when fewer
// than Quorum slots could be placed: a request that cannot succeed is
// refused before it writes anywhere.
func (d *dispatch) start() []Send {
	var sends []Send
	for i := range d.slots {
		if s, ok := d.place(i); ok {
			sends = append(sends, s)
		}
	}
	if len(sends) < d.plan.Quorum {
		for i := range d.slots {
			d.slots[i] = slot{owner: d.slots[i].owner}
		}
		clear(d.sent)
		return nil
	}
	return sends
}

// place gives slot i its owner if it is not down, else a fallback.
func (d *dispatch) place(i int) (Send, bool) {
	s := &d.slots[i]
	if !d.avoid[s.owner] {
		return d.assign(i, s.owner), true
	}
	return d.substitute(i)
}

// substitute moves slot i to the next healthy fallback, if sloppy quorums
// are allowed and one is left; otherwise the slot stays unsent.
func (d *dispatch) substitute(i int) (Send, bool) {
	d.slots[i].state, d.slots[i].target = slotUnsent, ""
	if !d.plan.Sloppy {
		return Send{}, false
	}
	for d.nextFB < len(d.fallbacks) {
		fb := d.fallbacks[d.nextFB]
		d.nextFB++
		if d.avoid[fb] {
			continue
		}
		return d.assign(i, fb), true
	}
	return Send{}, false
}

func (d *dispatch) assign(i int, n NodeID) Send {
	s := &d.slots[i]
	s.target, s.state = n, slotPending
	d.sent[n] = i
	out := Send{To: n}
	if n != s.owner {
		out.HintFor = s.owner
	}
	return out
}

// pendingSlot returns the slot waiting for node's answer, if any. Anything
// else — a node never asked, a duplicate, an answer for a settled slot — is
// not.
func (d *dispatch) pendingSlot(n NodeID) (int, bool) {
	i, ok := d.sent[n]
	if !ok || d.slots[i].target != n || d.slots[i].state != slotPending {
		return 0, false
	}
	return i, true
}

// count returns how many slots are in state st.
func (d *dispatch) count(st slotState) int {
	c := 0
	for _, s := range d.slots {
		if s.state == st {
			c++
		}
	}
	return c
}

// fail settles slot i after its node failed; a never-sent request moves
// the slot to a fallback when substitute is true.
func (d *dispatch) fail(i int, kind Failure, substitute bool) (Send, bool) {
	switch kind {
	case NeverSent:
		d.avoid[d.slots[i].target] = true
		if substitute {
			return d.substitute(i)
		}
		d.slots[i].state = slotUnsent
	case Refused:
		d.slots[i].state = slotRefused
	default:
		d.slots[i].state = slotLost
	}
	return Send{}, false
}

// expire marks every pending slot lost: the deadline passed.
func (d *dispatch) expire() {
	for i := range d.slots {
		if d.slots[i].state == slotPending {
			d.slots[i].state = slotLost
		}
	}
}

func unavailable(got, need int) error {
	return fmt.Errorf("%w: only %d of %d required replicas answered", ErrUnavailable, got, need)
}
