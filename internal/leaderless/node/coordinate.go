package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/leaderless"
	"github.com/fulcrumdb/fulcrum/internal/transport"
	"github.com/fulcrumdb/fulcrum/internal/versionvec"
)

// WriteOptions are the settings of one Put or Delete; the router fills them
// from the namespace's policy and the request.
type WriteOptions struct {
	// N is the replication factor: the first N nodes of the preference
	// list are the key's home replicas.
	N int
	// W is how many of the N must acknowledge (1..N).
	W int
	// Sloppy lets fallbacks stand in for unreachable home replicas,
	// keeping the write as a hint (see leaderless.Plan.Sloppy).
	Sloppy bool
	// KeepSiblings keeps concurrent writes as siblings (version-vector
	// mode); false collapses every state to its last-writer-wins winner.
	KeepSiblings bool
	// Context is the causal context of the client's last read of the key
	// (ReadResult.Context): the siblings it covers are replaced. Nil makes
	// a blind write, concurrent with everything stored.
	Context versionvec.Vector
	// Timeout bounds the request when ctx has no earlier deadline; 0:
	// Config.RequestTimeout.
	Timeout time.Duration
}

// WriteResult describes a write, successful or not.
type WriteResult struct {
	// Timestamp and Dot name the write (its last-writer-wins order); zero
	// when the write failed before it was minted.
	Timestamp hlc.Timestamp
	Dot       versionvec.Dot
	// Acked is how many replicas acknowledged before the answer, Hinted
	// how many of them were fallbacks holding a hint, Required is W.
	Acked, Hinted, Required int
	// Indeterminate is set on a failed write that may have been applied
	// on some replicas (it is not rolled back).
	Indeterminate bool
}

// ReadOptions are the settings of one Get.
type ReadOptions struct {
	// N is the replication factor, R how many replicas must answer.
	N, R int
	// Sloppy lets fallbacks answer (from the hints they hold) for
	// unreachable home replicas.
	Sloppy bool
	// Repair is the read-repair mode. Its zero value is RepairOff (weak
	// consistency); eventual namespaces should pass RepairAsync or
	// RepairBlocking.
	Repair leaderless.RepairMode
	// KeepSiblings: see WriteOptions.
	KeepSiblings bool
	// Timeout: see WriteOptions.
	Timeout time.Duration
}

// ReadResult is the answer to a read.
type ReadResult struct {
	// Found reports whether the key has a live value: false when no
	// replica that answered had it, or when the newest write deletes it.
	Found bool
	// Value, Timestamp and Dot are the newest live value (last writer
	// wins among Siblings).
	Value     []byte
	Timestamp hlc.Timestamp
	Dot       versionvec.Dot
	// Siblings are every live concurrent value (one under last-writer
	// -wins); a client resolving them writes back with Context.
	Siblings []versionvec.Sibling
	// Context is the causal context to pass in WriteOptions.Context.
	Context versionvec.Vector
	// Answered replicas answered, Agreed of them held the newest state
	// (Answered-Agreed were stale), Required is R.
	Answered, Agreed, Required int
	// Repaired is how many read repairs were sent before the answer;
	// RepairsAcked and RepairsFailed how many had been reported (all of
	// them under RepairBlocking, unless the deadline passed).
	Repaired, RepairsAcked, RepairsFailed int
}

// Put writes value to key in ns, coordinated by this node, which must be
// one of the key's N home replicas (else ErrNotReplica). It returns once W
// replicas acknowledged, and keeps sending to the others in the
// background until they answer or the deadline passes.
func (e *Engine) Put(ctx context.Context, ns string, key, value []byte, opts WriteOptions) (WriteResult, error) {
	// The request keeps going after the answer: it must not share the
	// caller's buffers (a protocol reader reuses them).
	return e.write(ctx, ns, bytes.Clone(key), append([]byte{}, value...), opts)
}

// Delete writes a tombstone for key in ns, like Put. A key whose newest
// write is a tombstone reads as absent on every replica, including one
// that missed the delete once it has been repaired.
func (e *Engine) Delete(ctx context.Context, ns string, key []byte, opts WriteOptions) (WriteResult, error) {
	return e.write(ctx, ns, bytes.Clone(key), nil, opts)
}

// Get reads key in ns from R replicas and answers with the newest state
// among them, repairing stale home replicas as opts.Repair says.
func (e *Engine) Get(ctx context.Context, ns string, key []byte, opts ReadOptions) (ReadResult, error) {
	key = bytes.Clone(key) // repairs may outlive the call
	if err := e.begin(); err != nil {
		return ReadResult{}, err
	}
	driving := false
	defer func() {
		if !driving {
			e.wg.Done()
		}
	}()
	plan, err := e.plan(ns, key, opts.N, opts.R, opts.Sloppy, opts.Repair)
	if err != nil {
		return ReadResult{}, err
	}
	c, first, err := leaderless.NewRead(plan, compareStates)
	if err != nil {
		return ReadResult{}, kv.Errorf(kv.CodeInvalid, "read %s/%q: %w", ns, key, err)
	}
	dctx, cancel := e.requestContext(ctx, opts.Timeout)
	done := make(chan readDone, 1)
	r := &readRun{e: e, c: c, ns: ns, key: key, lww: !opts.KeepSiblings, done: done}
	driving = true
	go r.run(dctx, cancel, first)
	var d readDone
	select {
	case d = <-done:
	case <-ctx.Done():
		select {
		case d = <-done:
		default:
			return ReadResult{}, kv.Errorf(kv.CodeTimeout, "read %s/%q: %w", ns, key, ctx.Err())
		}
	}
	o := d.outcome
	if !o.OK() {
		e.stats.readsFailed.Add(1)
		code := kv.CodeUnavailable
		if d.timedOut {
			code = kv.CodeTimeout
		}
		return ReadResult{Answered: o.Answered, Required: o.Required}, kv.Errorf(code, "read %s/%q: %w", ns, key, o.Err)
	}
	e.stats.readsOK.Add(1)
	return readResult(o, !opts.KeepSiblings), nil
}

func (e *Engine) write(ctx context.Context, ns string, key, value []byte, opts WriteOptions) (WriteResult, error) {
	if err := e.begin(); err != nil {
		return WriteResult{}, err
	}
	driving := false
	defer func() {
		if !driving {
			e.wg.Done()
		}
	}()
	plan, err := e.plan(ns, key, opts.N, opts.W, opts.Sloppy, leaderless.RepairOff)
	if err != nil {
		return WriteResult{}, err
	}
	if !slices.Contains(plan.Preference[:plan.N], e.self) {
		return WriteResult{}, &kv.Error{
			Code:    kv.CodeNotLeader,
			Message: fmt.Sprintf("write %s/%q: node %s is not a home replica; home replicas: %v", ns, key, e.self, plan.Preference[:plan.N]),
			Err:     ErrNotReplica,
		}
	}
	c, first, err := leaderless.NewWrite(plan)
	if err != nil {
		return WriteResult{}, kv.Errorf(kv.CodeInvalid, "write %s/%q: %w", ns, key, err)
	}
	if o := first.Outcome; o != nil && !o.OK() {
		// Not enough replicas can even be asked: refused before anything
		// is written anywhere.
		e.stats.writesFailed.Add(1)
		return WriteResult{Required: o.Required}, writeError(ns, key, o, false)
	}
	dctx, cancel := e.requestContext(ctx, opts.Timeout)
	lww := !opts.KeepSiblings
	st, w, err := e.mint(dctx, ns, key, value, value == nil, lww, opts.Context)
	if err != nil {
		cancel()
		e.stats.writesFailed.Add(1)
		return WriteResult{}, kv.Errorf(kv.CodeOf(err), "write %s/%q: %w", ns, key, err)
	}
	done := make(chan writeDone, 1)
	r := &writeRun{e: e, c: c, req: request{op: opPut, ns: ns, key: key, lww: lww, state: st}, done: done, results: make(chan reply)}
	// The first step runs here: it takes this node's own acknowledgement,
	// so that a W=1 write is answered without waiting for the driver
	// goroutine to be scheduled. A W=1 write leaves its remote calls to
	// the driver too, since its answer does not wait for them; a larger W
	// needs their answers, so they start here at once.
	r.deferCalls = opts.W <= 1
	r.apply(dctx, first)
	r.runLocal(dctx)
	r.deferCalls = false
	driving = true
	go r.run(dctx, cancel)
	res := WriteResult{Timestamp: w.Timestamp, Dot: w.Dot}
	var d writeDone
	select {
	case d = <-done:
	case <-ctx.Done():
		select {
		case d = <-done:
		default:
			res.Indeterminate = true
			e.stats.writesIndeterminate.Add(1)
			return res, &kv.Error{Code: kv.CodeTimeout, Message: fmt.Sprintf("write %s/%q: outcome unknown (%v); the write is indeterminate", ns, key, ctx.Err()), Err: fmt.Errorf("%w: %w", ErrIndeterminate, ctx.Err())}
		}
	}
	o := d.outcome
	res.Acked, res.Hinted, res.Required, res.Indeterminate = len(o.Acks), o.Hinted(), o.Required, o.Indeterminate
	if !o.OK() {
		e.stats.writesFailed.Add(1)
		if o.Indeterminate {
			e.stats.writesIndeterminate.Add(1)
		}
		return res, writeError(ns, key, o, d.timedOut)
	}
	e.stats.writesOK.Add(1)
	if res.Hinted > 0 {
		e.stats.writesHinted.Add(1)
	}
	return res, nil
}

// writeError is the coded error of a failed write: UNAVAILABLE, or TIMEOUT
// when the deadline decided it, saying whether it may have been applied.
func writeError(ns string, key []byte, o *leaderless.WriteOutcome, timedOut bool) error {
	code := kv.CodeUnavailable
	if timedOut {
		code = kv.CodeTimeout
	}
	if o.Indeterminate {
		return &kv.Error{
			Code:    code,
			Message: fmt.Sprintf("write %s/%q: %v; the write is indeterminate: %d replica(s) acknowledged it, others may have applied it, and it is not rolled back", ns, key, o.Err, len(o.Acks)),
			Err:     fmt.Errorf("%w: %w", ErrIndeterminate, o.Err),
		}
	}
	return &kv.Error{Code: code, Message: fmt.Sprintf("write %s/%q: %v; applied nowhere", ns, key, o.Err), Err: o.Err}
}

// plan builds the coordinator's plan for a key.
func (e *Engine) plan(ns string, key []byte, n, quorum int, sloppy bool, repair leaderless.RepairMode) (leaderless.Plan, error) {
	pref := e.cfg.Preference(ns, key)
	p := leaderless.Plan{N: n, Quorum: quorum, Sloppy: sloppy, Repair: repair, Preference: make([]leaderless.NodeID, len(pref))}
	members := e.members()
	for i, id := range pref {
		p.Preference[i] = nodeID(id)
		if members != nil && !members[id] && id != e.cfg.Self {
			p.Down = append(p.Down, p.Preference[i])
		}
	}
	if n < 1 || n > len(pref) {
		return p, kv.Errorf(kv.CodeInvalid, "%s/%q: N is %d, preference list has %d nodes: %w", ns, key, n, len(pref), leaderless.ErrInvalidPlan)
	}
	return p, nil
}

// requestContext is a request's lifetime: until the caller's deadline or
// opts' timeout, whichever is first, and at most until Close. It is not
// canceled with the caller's ctx, so a write the client gave up on still
// reaches its replicas.
func (e *Engine) requestContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout <= 0 {
		timeout = e.cfg.RequestTimeout
	}
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	return context.WithDeadline(e.ctx, d) // one timer per request, not two
}

// reply is the end of one replica call.
type reply struct {
	to     leaderless.NodeID
	repair bool
	body   []byte
	err    error
}

// localCall is a request to this node itself, run by the driver between
// inputs instead of in a goroutine: a local answer is always the first
// input, so a write's own replica is counted before any remote failure
// can decide the outcome, and a local read answers an R=1 read at once.
type localCall struct {
	req    request
	repair bool
	// minted: the request puts the state the coordinator's mint has
	// already stored here; it is acknowledged without merging it again
	// (a merge would read the key and find nothing to write).
	minted bool
}

// runLocal runs the queued local calls and returns their replies.
func (e *Engine) runLocal(ctx context.Context, q []localCall) []reply {
	out := make([]reply, len(q))
	for i, lc := range q {
		if lc.minted {
			out[i] = reply{to: e.self}
			continue
		}
		body, err := e.handle(ctx, lc.req)
		out[i] = reply{to: e.self, repair: lc.repair, body: body, err: err}
	}
	return out
}

// startCall sends req to node to in a goroutine of its own and hands the
// reply to results, unless ctx ends first (the driver has stopped
// listening).
func (e *Engine) startCall(ctx context.Context, results chan<- reply, to leaderless.NodeID, req request, repair bool) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		body, err := e.call(ctx, parseNode(to), req)
		select {
		case results <- reply{to: to, repair: repair, body: body, err: err}:
		case <-ctx.Done():
		}
	}()
}

// call runs req on node to: directly when to is this node (hint
// delivery never targets itself, but stay correct), else over the
// transport.
func (e *Engine) call(ctx context.Context, to uint64, req request) ([]byte, error) {
	if to == e.cfg.Self {
		return e.handle(ctx, req)
	}
	return e.cfg.Endpoint.Call(ctx, transport.NodeID(to), KindLeaderless, appendRequest(nil, req))
}

// classify maps a call's error to what the coordinator needs to know: was
// the request certainly not sent, possibly applied, or refused.
func classify(err error) leaderless.Failure {
	switch {
	case errors.Is(err, transport.ErrUnreachable), errors.Is(err, transport.ErrQueueFull),
		errors.Is(err, transport.ErrUnknownPeer), errors.Is(err, transport.ErrClosed),
		errors.Is(err, ErrClosed):
		return leaderless.NeverSent
	case errors.Is(err, kv.ErrTimeout):
		return leaderless.LostAfterSend
	}
	return leaderless.Refused
}

type writeDone struct {
	outcome  *leaderless.WriteOutcome
	timedOut bool
}

// writeRun is the driver of one write: the only goroutine touching its
// coordinator once the caller, which applies the first step, has started
// it.
type writeRun struct {
	e    *Engine
	c    *leaderless.WriteCoordinator
	req  request
	done chan<- writeDone // capacity 1, sent to once

	results  chan reply
	local    []localCall
	inflight int
	answered bool
	timedOut bool

	// deferCalls: remote calls go to deferred, for the driver to start
	// (while the caller applies the first step).
	deferCalls bool
	deferred   []remoteCall
}

// remoteCall is a call to a peer not yet started.
type remoteCall struct {
	to  leaderless.NodeID
	req request
}

// run drives the write to its end once its first step has been applied
// (and its local calls run) by the caller, who hands the coordinator over.
func (r *writeRun) run(ctx context.Context, cancel context.CancelFunc) {
	defer r.e.wg.Done()
	defer cancel()
	for _, c := range r.deferred {
		r.inflight++
		r.e.startCall(ctx, r.results, c.to, c.req, false)
	}
	r.deferred = nil
	for !r.c.Done() || r.inflight > 0 || len(r.local) > 0 {
		if len(r.local) > 0 {
			r.runLocal(ctx)
			continue
		}
		select {
		case rep := <-r.results:
			r.inflight--
			r.receive(ctx, rep)
		case <-ctx.Done():
			r.timedOut = true
			r.apply(ctx, r.c.Timeout())
			return
		}
	}
}

// runLocal runs the queued local calls and takes their replies.
func (r *writeRun) runLocal(ctx context.Context) {
	for len(r.local) > 0 {
		q := r.local
		r.local = nil
		for _, rep := range r.e.runLocal(ctx, q) {
			r.receive(ctx, rep)
		}
	}
}

func (r *writeRun) receive(ctx context.Context, rep reply) {
	if rep.err == nil {
		r.apply(ctx, r.c.Reply(rep.to, true))
	} else {
		r.apply(ctx, r.c.Failed(rep.to, classify(rep.err)))
	}
}

func (r *writeRun) apply(ctx context.Context, st leaderless.WriteStep) {
	for _, s := range st.Send {
		req := r.req
		if s.HintFor != "" {
			req.hintFor = parseNode(s.HintFor)
		}
		if s.To == r.e.self {
			r.local = append(r.local, localCall{req: req, minted: req.hintFor == 0})
			continue
		}
		if r.deferCalls {
			r.deferred = append(r.deferred, remoteCall{to: s.To, req: req})
			continue
		}
		r.inflight++
		r.e.startCall(ctx, r.results, s.To, req, false)
	}
	if st.Outcome != nil && !r.answered {
		r.answered = true
		r.done <- writeDone{outcome: st.Outcome, timedOut: r.timedOut}
	}
}

type readDone struct {
	outcome  *leaderless.ReadOutcome[versionvec.Siblings]
	timedOut bool
}

// readRun is the driver of one read, like writeRun; it also sends the read
// repairs and waits for them before it ends.
type readRun struct {
	e    *Engine
	c    *leaderless.ReadCoordinator[versionvec.Siblings]
	ns   string
	key  []byte
	lww  bool
	done chan<- readDone

	results  chan reply
	local    []localCall
	inflight int
	answered bool
	timedOut bool
}

func (r *readRun) run(ctx context.Context, cancel context.CancelFunc, first leaderless.ReadStep[versionvec.Siblings]) {
	defer r.e.wg.Done()
	defer cancel()
	r.results = make(chan reply)
	r.apply(ctx, first)
	for !r.c.Done() || r.inflight > 0 || len(r.local) > 0 {
		if len(r.local) > 0 {
			q := r.local
			r.local = nil
			for _, rep := range r.e.runLocal(ctx, q) {
				r.apply(ctx, r.receive(rep))
			}
			continue
		}
		select {
		case rep := <-r.results:
			r.inflight--
			r.apply(ctx, r.receive(rep))
		case <-ctx.Done():
			r.timedOut = true
			r.apply(ctx, r.c.Timeout())
			return
		}
	}
}

func (r *readRun) receive(rep reply) leaderless.ReadStep[versionvec.Siblings] {
	if rep.repair {
		if rep.err != nil {
			r.e.stats.repairsFailed.Add(1)
		}
		return r.c.RepairDone(rep.to, rep.err == nil)
	}
	if rep.err != nil {
		return r.c.Failed(rep.to, classify(rep.err))
	}
	g, err := decodeGetReply(rep.body)
	if err != nil {
		return r.c.Failed(rep.to, leaderless.Refused)
	}
	if !g.found {
		return r.c.Reply(rep.to, false, versionvec.Siblings{})
	}
	st, err := versionvec.DecodeSiblings(g.state)
	if err != nil {
		return r.c.Failed(rep.to, leaderless.Refused)
	}
	r.e.observe(st)
	return r.c.Reply(rep.to, true, st)
}

func (r *readRun) apply(ctx context.Context, st leaderless.ReadStep[versionvec.Siblings]) {
	for _, s := range st.Send {
		req := request{op: opGet, ns: r.ns, key: r.key}
		if s.HintFor != "" {
			req.hintFor = parseNode(s.HintFor)
		}
		r.send(ctx, s.To, req, false)
	}
	for _, rp := range st.Repairs {
		r.e.stats.repairsSent.Add(1)
		r.send(ctx, rp.To, request{op: opPut, ns: r.ns, key: r.key, lww: r.lww, state: rp.Version.Encode()}, true)
	}
	if st.Outcome != nil && !r.answered {
		r.answered = true
		r.done <- readDone{outcome: st.Outcome, timedOut: r.timedOut}
	}
}

func (r *readRun) send(ctx context.Context, to leaderless.NodeID, req request, repair bool) {
	if to == r.e.self {
		r.local = append(r.local, localCall{req: req, repair: repair})
		return
	}
	r.inflight++
	r.e.startCall(ctx, r.results, to, req, repair)
}

// compareStates orders two replica states of a key by their causal
// contexts: a state whose context covers the other's has seen every write
// the other has. Concurrent states are both kept and merged by the caller.
func compareStates(a, b versionvec.Siblings) leaderless.Order {
	switch versionvec.Compare(a.Context(), b.Context()) {
	case versionvec.Before:
		return leaderless.Before
	case versionvec.After:
		return leaderless.After
	case versionvec.Equal:
		return leaderless.Equal
	}
	return leaderless.Concurrent
}

// readResult merges the newest states of a successful read.
func readResult(o *leaderless.ReadOutcome[versionvec.Siblings], lww bool) ReadResult {
	res := ReadResult{
		Answered: o.Answered, Agreed: o.Agreed, Required: o.Required,
		Repaired: o.RepairsSent, RepairsAcked: o.RepairsAcked, RepairsFailed: o.RepairsFailed,
	}
	if !o.Found {
		return res
	}
	merged := versionvec.Sync(append([]versionvec.Siblings{o.Value}, o.Siblings...)...)
	if lww {
		merged = merged.Collapse()
	}
	res.Context = merged.Context()
	res.Siblings = merged.Live()
	if len(res.Siblings) == 0 {
		return res
	}
	w := res.Siblings[0]
	for _, s := range res.Siblings[1:] {
		if s.Newer(w) {
			w = s
		}
	}
	res.Found, res.Value, res.Timestamp, res.Dot = true, w.Value, w.Timestamp, w.Dot
	return res
}
