package lincheck

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Errors of Check. Check wraps them with a description.
var (
	// ErrNotLinearizable: no order of the operations explains the results.
	ErrNotLinearizable = errors.New("history is not linearizable")
	// ErrInconclusive: the check ran out of time before deciding.
	ErrInconclusive = errors.New("linearizability check timed out")
)

// never is the return time of an indeterminate operation: later than any
// other, so it may take effect at any point after its call.
const never = math.MaxInt64

type status uint8

const (
	pending status = iota
	ended
	failed
	unknown
)

type record struct {
	client    int
	in        Input
	out       Output
	call, ret int64
	status    status
}

// Recorder records a history of operations. It is safe for concurrent use.
type Recorder struct {
	now   func() time.Time
	start time.Time
	mu    struct {
		sync.Mutex
		ops []record
		// info is the last Check's, for WriteVisualization.
		info    porcupine.LinearizationInfo
		checked bool
	}
}

// NewRecorder returns a recorder that timestamps operations with the
// monotonic clock.
func NewRecorder() *Recorder { return NewRecorderClock(time.Now) }

// NewRecorderClock returns a recorder that timestamps operations with now,
// which must be safe for concurrent use and never go backwards (a fake
// clock, or time.Now inside a testing/synctest bubble). Operations whose intervals share an instant are
// concurrent, so a clock that advances only on demand is fine: it merely
// orders fewer operations.
func NewRecorderClock(now func() time.Time) *Recorder {
	return &Recorder{now: now, start: now()}
}

// since is the clock's reading as the checker's timestamp.
func (r *Recorder) since() int64 { return int64(r.now().Sub(r.start)) }

// Pending is an operation that has been called and not yet resolved. Exactly
// one of End, Fail and Unknown must be called on it; one left unresolved
// when Check runs counts as indeterminate.
type Pending struct {
	r *Recorder
	i int
}

// Begin records that client invoked in, now. Call it before sending the
// request, so the recorded interval contains the operation's effect.
// Clients should be numbered from 0 for the visualization.
func (r *Recorder) Begin(client int, in Input) *Pending {
	call := r.since()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.ops = append(r.mu.ops, record{client: client, in: in, call: call})
	return &Pending{r: r, i: len(r.mu.ops) - 1}
}

// End records that the operation returned out. Call it after the response
// arrived.
func (p *Pending) End(out Output) {
	ret := p.r.since()
	p.resolve(ended, func(rec *record) { rec.out, rec.ret = out, ret })
}

// Fail records that the operation certainly did not take effect (refused
// before it was proposed, say). It is left out of the history.
func (p *Pending) Fail() { p.resolve(failed, nil) }

// Unknown records that the operation may or may not have taken effect, now
// or at any later time (a timeout, a lost connection).
func (p *Pending) Unknown() { p.resolve(unknown, nil) }

func (p *Pending) resolve(s status, set func(*record)) {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	rec := &p.r.mu.ops[p.i]
	if rec.status != pending {
		panic(fmt.Sprintf("lincheck: operation %d (%s %q) resolved twice", p.i, rec.in.Kind, rec.in.Key))
	}
	rec.status = s
	if set != nil {
		set(rec)
	}
}

// history is the recorded history as porcupine takes it.
func (r *Recorder) history() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := make([]porcupine.Operation, 0, len(r.mu.ops))
	for _, rec := range r.mu.ops {
		op := porcupine.Operation{ClientId: rec.client, Input: rec.in, Call: rec.call}
		switch {
		case rec.status == ended:
			op.Output, op.Return = outcome{Output: rec.out}, rec.ret
		case rec.status == failed, rec.in.Kind == Get:
			continue // no effect, or a read nobody saw: nothing to check
		default: // unknown, or still pending
			op.Output, op.Return = outcome{Unknown: true}, never
		}
		h = append(h, op)
	}
	return h
}

// Result is the outcome of a Check.
type Result struct {
	Outcome porcupine.CheckResult
	// Ops is the number of operations checked: those that ended, and
	// writes of unknown outcome.
	Ops int
	// Info is porcupine's account of the check, for visualization.
	Info porcupine.LinearizationInfo
}

// Check checks the history recorded so far, giving up after timeout (0
// means no limit). It returns an error wrapping ErrNotLinearizable, with the
// offending key's history, when the outcome is Illegal, and one wrapping
// ErrInconclusive when the check timed out.
func (r *Recorder) Check(timeout time.Duration) (Result, error) {
	h := r.history()
	m := model()
	verdict, info := porcupine.CheckOperationsVerbose(m, h, timeout)
	r.mu.Lock()
	r.mu.info, r.mu.checked = info, true
	r.mu.Unlock()
	res := Result{Outcome: verdict, Ops: len(h), Info: info}
	switch verdict {
	case porcupine.Illegal:
		return res, fmt.Errorf("%w: %s", ErrNotLinearizable, describeIllegal(m, partition(h), info))
	case porcupine.Unknown:
		return res, fmt.Errorf("%w after %v (%d operations)", ErrInconclusive, timeout, len(h))
	}
	return res, nil
}

// WriteVisualization writes porcupine's HTML view of the last Check to path.
func (r *Recorder) WriteVisualization(path string) error {
	r.mu.Lock()
	info, checked := r.mu.info, r.mu.checked
	r.mu.Unlock()
	if !checked {
		return errors.New("lincheck: visualize: no Check has run")
	}
	if err := porcupine.VisualizePath(model(), info, path); err != nil {
		return fmt.Errorf("lincheck: visualize to %s: %w", path, err)
	}
	return nil
}

// How much of a key's history a failure description shows.
const (
	showLinearized = 12 // last steps of the longest linearization
	showStuck      = 12 // first operations that could not follow it
)

// describeIllegal names the keys whose histories do not linearize and
// explains the first: how far the longest linearization got, and which
// operations could not follow it.
func describeIllegal(m porcupine.Model, parts [][]porcupine.Operation, info porcupine.LinearizationInfo) string {
	partials := info.PartialLinearizations()
	var bad []int
	var best [][]int
	for i, ops := range parts {
		var longest []int
		if i < len(partials) {
			for _, l := range partials[i] {
				if len(l) > len(longest) {
					longest = l
				}
			}
		}
		if len(longest) < len(ops) {
			bad = append(bad, i)
			best = append(best, longest)
		}
	}
	if len(bad) == 0 {
		return "no key's history could be blamed"
	}
	key := func(i int) string { return parts[i][0].Input.(Input).Key }
	ops, longest := parts[bad[0]], best[0]

	var b strings.Builder
	fmt.Fprintf(&b, "key %s: at most %d of its %d operations linearize", quote(key(bad[0])), len(longest), len(ops))
	if len(bad) > 1 {
		others := make([]string, 0, len(bad)-1)
		for _, i := range bad[1:] {
			others = append(others, quote(key(i)))
		}
		fmt.Fprintf(&b, " (also not linearizable: %s)", strings.Join(others, ", "))
	}

	b.WriteString("\n  longest linearization, state after each step:")
	s := m.Init()
	for n, id := range longest {
		op := ops[id]
		_, s = m.Step(s, op.Input, op.Output)
		if n >= len(longest)-showLinearized {
			fmt.Fprintf(&b, "\n    %s  => %s", describeCall(op), m.DescribeState(s))
		} else if n == 0 {
			fmt.Fprintf(&b, "\n    ... %d earlier steps", len(longest)-showLinearized)
		}
	}
	if len(longest) == 0 {
		fmt.Fprintf(&b, "\n    (none) from %s", m.DescribeState(s))
	}

	done := make(map[int]bool, len(longest))
	for _, id := range longest {
		done[id] = true
	}
	var stuck []porcupine.Operation
	for id, op := range ops {
		if !done[id] {
			stuck = append(stuck, op)
		}
	}
	slices.SortStableFunc(stuck, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
	fmt.Fprintf(&b, "\n  none of the other %d operations can follow it; the earliest called:", len(stuck))
	for n, op := range stuck {
		if n == showStuck {
			fmt.Fprintf(&b, "\n    ... %d more", len(stuck)-showStuck)
			break
		}
		fmt.Fprintf(&b, "\n    %s", describeCall(op))
	}
	return b.String()
}

// describeCall renders an operation with its client and interval.
func describeCall(op porcupine.Operation) string {
	ret := "never"
	if op.Return != never {
		ret = time.Duration(op.Return).String()
	}
	return fmt.Sprintf("client %d [%v, %s] %s", op.ClientId, time.Duration(op.Call), ret,
		describeOp(op.Input.(Input), op.Output.(outcome)))
}
