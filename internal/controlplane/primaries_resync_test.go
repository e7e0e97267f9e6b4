package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/fakeclock"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/primary"
	"github.com/fulcrumdb/fulcrum/internal/storage"
)

// These tests drive the failover authority (Primaries) through failed
// writes of a shard's record: a proposal that timed out but committed, a
// CONFLICT because the record changed behind the leader, and the rereads
// (resync, Renew's read) that must bring its cache back to the stored
// record. Faults are injected through the Engine and Reader interfaces
// the Service consumes; time is a fake clock stepped by the test.

// writeFault is what faultEngine does to one write of a primary record.
type writeFault int

const (
	writeOK writeFault = iota
	// writeLost fails the write without applying it.
	writeLost
	// writeTimedOut applies the write, then fails it like a proposal
	// whose outcome the proposer never learnt.
	writeTimedOut
)

// errProposalTimeout is what a timed-out Raft proposal looks like to the
// authority.
var errProposalTimeout = fmt.Errorf("meta group proposal: %w", context.DeadlineExceeded)

// recordWrite is one write of a primary record the authority attempted.
type recordWrite struct {
	rec     PrimaryRecord
	applied bool // its condition held and it was stored, whatever the answer
}

// faultEngine is directEngine with scripted failures of primary record
// writes, a log of those writes and a switchable read barrier.
type faultEngine struct {
	inner *directEngine
	mu    struct {
		sync.Mutex
		faults  []writeFault // for the next record writes, in order
		writes  []recordWrite
		barrier error
	}
}

var _ Engine = (*faultEngine)(nil)

func (e *faultEngine) Write(ctx context.Context, group uint64, b kv.Batch) ([]kv.Result, error) {
	if len(b.Ops) != 1 || b.Ops[0].Kind != kv.OpSet || !strings.HasPrefix(string(b.Ops[0].Key), primaryPrefix) {
		return e.inner.Write(ctx, group, b)
	}
	var rec PrimaryRecord
	if err := json.Unmarshal(b.Ops[0].Value, &rec); err != nil {
		return nil, fmt.Errorf("fault engine: record: %w", err)
	}
	e.mu.Lock()
	f := writeOK
	if len(e.mu.faults) > 0 {
		f, e.mu.faults = e.mu.faults[0], e.mu.faults[1:]
	}
	e.mu.Unlock()
	var res []kv.Result
	var err error
	if f != writeLost {
		res, err = e.inner.Write(ctx, group, b)
	}
	e.mu.Lock()
	e.mu.writes = append(e.mu.writes, recordWrite{rec: rec, applied: err == nil && len(res) == 1 && res[0].Applied})
	e.mu.Unlock()
	if f != writeOK {
		return nil, errProposalTimeout
	}
	return res, err
}

func (e *faultEngine) ReadBarrier(ctx context.Context, group uint64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mu.barrier
}

// pauseReader is the store as the Service reads it, able to hold one read
// of a primary record after it was taken, so a test can interleave a
// reread with a concurrent write deterministically.
type pauseReader struct {
	st *storage.Store
	mu struct {
		sync.Mutex
		afterRead func()
	}
}

var _ Reader = (*pauseReader)(nil)

func (r *pauseReader) Scan(ctx context.Context, req kv.ScanRequest) (kv.ScanResult, error) {
	res, err := r.st.Scan(ctx, req)
	if strings.HasPrefix(string(req.Prefix), primaryPrefix) {
		r.mu.Lock()
		f := r.mu.afterRead
		r.mu.afterRead = nil
		r.mu.Unlock()
		if f != nil {
			f()
		}
	}
	return res, err
}

// authorityHarness is one node's failover authority over a directly
// applied meta store, with one replication=primary shard on nodes 1-3.
// Node 3 is the preferred (active-passive) primary; when it fails, node
// 2 is the most up-to-date replica (reports: node n has applied 10n).
type authorityHarness struct {
	t      *testing.T
	ctx    context.Context
	clk    *fakeclock.Clock
	start  time.Time
	eng    *faultEngine
	rd     *pauseReader
	svc    *Service
	auth   *Primaries
	fc     failover.Config
	group  uint64
	leader atomic.Uint64
	term   atomic.Uint64
}

// step is how far the harness's clock moves per tick: every replica
// reports that often, well inside the failure detector's bound.
const step = 100 * time.Millisecond

func newAuthorityHarness(t *testing.T) *authorityHarness {
	t.Helper()
	st, err := storage.Open(storage.Options{Dir: "/d", FS: vfs.NewMem(), Sync: storage.SyncNone, SweepInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := &authorityHarness{t: t, ctx: context.Background(), clk: fakeclock.New(time.Unix(1_700_000_000, 0)), fc: failover.DefaultConfig()}
	h.start = h.clk.Now()
	h.eng = &faultEngine{inner: &directEngine{st: st}}
	h.rd = &pauseReader{st: st}
	h.svc = New(Config{Engine: h.eng, Store: h.rd, Now: h.clk.Now})
	h.leader.Store(1)
	h.term.Store(1)
	h.auth = NewPrimaries(h.svc, PrimariesConfig{
		Self:     1,
		Failover: h.fc,
		Leader:   func() (uint64, uint64) { return h.leader.Load(), h.term.Load() },
		Clock:    func() int64 { return int64(h.now()) },
	})
	for id := uint64(1); id <= 3; id++ {
		if err := h.svc.RegisterMember(h.ctx, Member{ID: id, PeerAddr: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	// Sync with degrading allowed: a failover prefers the in-sync set but
	// can still promote when it is empty.
	ns, err := h.svc.CreateNamespace(h.ctx, "orders", kv.Policy{Replication: kv.ReplicationPrimary, Replicas: 3, Shards: 1,
		Ack: kv.AckSync, AckReplicas: 1, AllowDegrade: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.svc.Refresh(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.group = ns.Shards[0].Group
	if got := slices.Sorted(slices.Values(ns.Shards[0].Replicas)); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("got replicas %v, want nodes 1-3", got)
	}
	return h
}

// now is the authority's clock: the time since the harness started.
func (h *authorityHarness) now() time.Duration { return h.clk.Now().Sub(h.start) }

func (h *authorityHarness) report(node failover.NodeID) (primary.Assignment, error) {
	return h.auth.Report(h.ctx, h.group, primary.ReplicaStatus{Node: node, Applied: failover.LSN(10 * node)})
}

func (h *authorityHarness) mustReport(node failover.NodeID) primary.Assignment {
	h.t.Helper()
	a, err := h.report(node)
	if err != nil {
		h.t.Fatalf("at %v: report of node %d: %v", h.now(), node, err)
	}
	return a
}

func (h *authorityHarness) renew(node failover.NodeID, epoch failover.Epoch) (failover.Lease, error) {
	return h.auth.Renew(h.ctx, h.group, node, epoch)
}

func (h *authorityHarness) mustRenew(node failover.NodeID, epoch failover.Epoch) {
	h.t.Helper()
	l, err := h.renew(node, epoch)
	if err != nil {
		h.t.Fatalf("at %v: renewal of node %d epoch %d: %v", h.now(), node, epoch, err)
	}
	if l.Holder != node || l.Epoch != epoch {
		h.t.Fatalf("at %v: renewal of node %d epoch %d: got lease %+v", h.now(), node, epoch, l)
	}
}

func (h *authorityHarness) proposeISR(from failover.NodeID, epoch failover.Epoch, base uint64, members ...failover.NodeID) (failover.ISRRecord, error) {
	return h.auth.ProposeISR(h.ctx, h.group, from, failover.ISRProposal{Epoch: epoch, Base: base, Members: members})
}

func (h *authorityHarness) inject(faults ...writeFault) {
	h.eng.mu.Lock()
	defer h.eng.mu.Unlock()
	h.eng.mu.faults = append(h.eng.mu.faults, faults...)
}

func (h *authorityHarness) setBarrier(err error) {
	h.eng.mu.Lock()
	defer h.eng.mu.Unlock()
	h.eng.mu.barrier = err
}

// writes returns the record writes attempted so far.
func (h *authorityHarness) writes() []recordWrite {
	h.eng.mu.Lock()
	defer h.eng.mu.Unlock()
	return slices.Clone(h.eng.mu.writes)
}

// stored returns the record the meta store holds.
func (h *authorityHarness) stored() (PrimaryRecord, uint64) {
	h.t.Helper()
	rec, ver, err := h.auth.readRecord(h.ctx, h.group)
	if err != nil {
		h.t.Fatal(err)
	}
	return rec, ver
}

// writeBehind stores rec as another writer would (a deposed leader's
// proposal committing late), conditional on the stored version.
func (h *authorityHarness) writeBehind(rec PrimaryRecord) {
	h.t.Helper()
	_, ver := h.stored()
	data, err := json.Marshal(rec)
	if err != nil {
		h.t.Fatal(err)
	}
	res, err := h.eng.inner.Write(h.ctx, MetaGroup, kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: MetaNamespace,
		Key: primaryKey(h.group), Value: data, Cond: kv.CondVersion, IfVersion: ver}}})
	if err != nil || len(res) != 1 || !res[0].Applied {
		h.t.Fatalf("write behind the leader: %v %v", res, err)
	}
}

// tick moves the clock one step and has the nodes report, in order.
func (h *authorityHarness) tick(nodes ...failover.NodeID) []primary.Assignment {
	h.t.Helper()
	h.clk.Advance(step)
	var out []primary.Assignment
	for _, n := range nodes {
		out = append(out, h.mustReport(n))
	}
	return out
}

// untilWrite ticks, the nodes reporting in order, until one report makes
// the authority write the record, and returns that report's answer. It
// gives up after limit ticks.
func (h *authorityHarness) untilWrite(limit int, nodes ...failover.NodeID) primary.Assignment {
	h.t.Helper()
	before := len(h.writes())
	for range limit {
		h.clk.Advance(step)
		for _, n := range nodes {
			a := h.mustReport(n)
			if len(h.writes()) > before {
				return a
			}
		}
	}
	h.t.Fatalf("no record write within %d ticks (at %v)", limit, h.now())
	return primary.Assignment{}
}

// establish makes node 3 the primary of epoch 1 at time 0 with nodes 1
// and 2 in sync: two record writes. Its lease runs out at 900ms
// (LeaseDuration + Margin) unless renewed.
func (h *authorityHarness) establish() {
	h.t.Helper()
	wantAssignment(h.t, h.mustReport(3), 1, 3)
	isr, err := h.proposeISR(3, 1, 0, 1, 2)
	if err != nil || isr.Version != 1 || !slices.Equal(isr.Members, []failover.NodeID{1, 2}) {
		h.t.Fatalf("in-sync proposal: got %+v, %v; want version 1 with nodes 1 and 2", isr, err)
	}
	if n := len(h.writes()); n != 2 {
		h.t.Fatalf("got %d record writes establishing the primary, want 2", n)
	}
}

// toJustExpired ticks with nodes 1 and 2 reporting until 800ms, then
// moves to 900ms without a report: node 3's lease (granted at 0, never
// renewed) has just run out and the next report decides a failover.
func (h *authorityHarness) toJustExpired() {
	h.t.Helper()
	for h.now() < 800*time.Millisecond {
		for _, a := range h.tick(1, 2) {
			wantAssignment(h.t, a, 1, 3)
		}
	}
	h.clk.Advance(step)
	if n := len(h.writes()); n != 2 {
		h.t.Fatalf("got %d record writes before the lease ran out, want 2", n)
	}
}

// pauseNextRead holds the next read of the record after it was taken,
// until release. read is closed when it is being held.
func (h *authorityHarness) pauseNextRead() (read <-chan struct{}, release func()) {
	readc, releasec := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(releasec) }) }
	h.t.Cleanup(release) // never leave a reader blocked
	h.rd.mu.Lock()
	h.rd.mu.afterRead = func() { close(readc); <-releasec }
	h.rd.mu.Unlock()
	return readc, release
}

func await[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func wantAssignment(t *testing.T, a primary.Assignment, epoch failover.Epoch, node failover.NodeID) {
	t.Helper()
	if a.Epoch != epoch || a.Primary != node {
		t.Fatalf("got assignment epoch %d primary %d, want epoch %d primary %d", a.Epoch, a.Primary, epoch, node)
	}
}

func wantRecord(t *testing.T, rec PrimaryRecord, epoch failover.Epoch, node failover.NodeID) {
	t.Helper()
	if rec.Epoch != epoch || rec.Primary != node {
		t.Fatalf("got stored record epoch %d primary %d, want epoch %d primary %d", rec.Epoch, rec.Primary, epoch, node)
	}
}

func wantCode(t *testing.T, err error, code kv.Code, what string) {
	t.Helper()
	if kv.CodeOf(err) != code {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
}

// steady runs n ticks in which the nodes report and holder renews its
// lease of epoch every other tick, checking that every report answers
// epoch and holder and that no record is written.
func (h *authorityHarness) steady(n int, epoch failover.Epoch, holder failover.NodeID, nodes ...failover.NodeID) {
	h.t.Helper()
	before := len(h.writes())
	for i := range n {
		for _, a := range h.tick(nodes...) {
			wantAssignment(h.t, a, epoch, holder)
		}
		if i%2 == 0 {
			h.mustRenew(holder, epoch)
		}
	}
	if got := len(h.writes()) - before; got != 0 {
		h.t.Fatalf("got %d record writes over %d steady ticks, want 0: %+v", got, n, h.writes()[before:])
	}
}

// A promotion whose write timed out but committed: the authority does not
// announce it at once (it cannot tell), but the next report rereads the
// record and adopts it, and nothing is proposed again.
func TestPrimariesResyncTimedOutPromotion(t *testing.T) {
	t.Run("first primary", func(t *testing.T) {
		h := newAuthorityHarness(t)
		h.inject(writeTimedOut)
		wantAssignment(t, h.mustReport(3), 0, 0) // the outcome is unknown
		rec, _ := h.stored()
		wantRecord(t, rec, 1, 3)
		wantAssignment(t, h.mustReport(1), 1, 3)
		h.mustRenew(3, 1)
		h.steady(30, 1, 3, 1, 2, 3)
		if w := h.writes(); len(w) != 1 || !w[0].applied {
			t.Fatalf("got record writes %+v, want the one promotion", w)
		}
	})
	t.Run("failover", func(t *testing.T) {
		h := newAuthorityHarness(t)
		h.establish()
		h.inject(writeTimedOut)
		wantAssignment(t, h.untilWrite(20, 1, 2), 1, 3)
		rec, _ := h.stored()
		wantRecord(t, rec, 2, 2)
		if rec.Failovers != 1 || rec.ISR.Epoch != 2 || len(rec.ISR.Members) != 0 {
			t.Fatalf("got stored record %+v, want the first failover with an empty in-sync set of epoch 2", rec)
		}
		wantAssignment(t, h.mustReport(1), 2, 2)
		h.mustRenew(2, 2)
		_, err := h.renew(3, 1)
		wantCode(t, err, kv.CodeStaleEpoch, "renewal of the replaced primary")
		h.steady(30, 2, 2, 1, 2)
		if w := h.writes(); len(w) != 3 || !w[2].applied {
			t.Fatalf("got record writes %+v, want 3 (promotion, in-sync set, failover)", w)
		}
	})
}

// A conditional write refused because the record changed behind the
// leader: the authority rereads it, decides against the stored record
// from then on, and does not keep proposing against its stale copy.
func TestPrimariesResyncConflict(t *testing.T) {
	// conflicted sets up a failover that conflicts with a deposed
	// leader's promotion of node 1 to epoch 2, stored at 500ms.
	conflicted := func(t *testing.T) *authorityHarness {
		h := newAuthorityHarness(t)
		h.establish()
		for h.now() < 500*time.Millisecond {
			h.tick(1, 2)
		}
		behind, _ := h.stored()
		behind.Epoch, behind.Primary, behind.ISR = 2, 1, failover.ISRRecord{Epoch: 2}
		behind.Failovers, behind.Reason = 1, "a deposed leader's promotion"
		h.writeBehind(behind)
		wantAssignment(t, h.untilWrite(20, 1, 2), 1, 3)
		w := h.writes()
		if last := w[len(w)-1]; last.applied || last.rec.Epoch != 2 || last.rec.Primary != 2 {
			t.Fatalf("got write %+v, want a refused promotion of node 2 to epoch 2", last)
		}
		wantAssignment(t, h.mustReport(2), 2, 1)
		return h
	}
	t.Run("adopted primary renews", func(t *testing.T) {
		h := conflicted(t)
		h.mustRenew(1, 2)
		h.steady(30, 2, 1, 1, 2)
		if n := len(h.writes()); n != 3 {
			t.Fatalf("got %d record writes, want 3", n)
		}
	})
	t.Run("adopted primary fails", func(t *testing.T) {
		// The next failover is decided from the stored record: epoch 3,
		// conditional on the stored version, and it commits at once.
		h := conflicted(t)
		_, base := h.stored()
		wantAssignment(t, h.untilWrite(20, 2), 3, 2)
		w := h.writes()
		if len(w) != 4 || !w[3].applied {
			t.Fatalf("got record writes %+v, want 4, the last applied", w)
		}
		rec, ver := h.stored()
		wantRecord(t, rec, 3, 2)
		if ver <= base || rec.Failovers != 2 || !rec.MayLoseAcked {
			t.Fatalf("got stored record %+v at version %d, want the second failover (degraded: no live in-sync replica) after version %d", rec, ver, base)
		}
		h.steady(10, 3, 2, 2)
	})
	t.Run("in-sync proposal", func(t *testing.T) {
		h := newAuthorityHarness(t)
		h.establish()
		behind, _ := h.stored()
		behind.ISR = failover.ISRRecord{Epoch: 1, Version: 2, Members: []failover.NodeID{1}}
		h.writeBehind(behind)
		isr, err := h.proposeISR(3, 1, 1, 2)
		wantCode(t, err, kv.CodeConflict, "proposal against the changed record")
		if isr.Version != 0 || isr.Members != nil {
			t.Fatalf("got record %+v with a failed write, want none (the outcome is unknown)", isr)
		}
		// Resent, it is refused against the stored record, which the
		// reply carries, and not written again.
		isr, err = h.proposeISR(3, 1, 1, 2)
		wantCode(t, err, kv.CodeConflict, "resent proposal")
		if isr.Version != 2 || !slices.Equal(isr.Members, []failover.NodeID{1}) {
			t.Fatalf("got record %+v, want the stored version 2 with node 1", isr)
		}
		if n := len(h.writes()); n != 3 {
			t.Fatalf("got %d record writes, want 3", n)
		}
		if isr, err = h.proposeISR(3, 1, 2, 2); err != nil || isr.Version != 3 {
			t.Fatalf("proposal on the stored version: got %+v, %v; want version 3", isr, err)
		}
	})
}

// The rest of the failure handling around the record.
func TestPrimariesRecordFailures(t *testing.T) {
	t.Run("lost promotion is proposed again", func(t *testing.T) {
		h := newAuthorityHarness(t)
		h.inject(writeLost)
		wantAssignment(t, h.mustReport(3), 0, 0)
		if _, ver := h.stored(); ver != 0 {
			t.Fatalf("got a stored record at version %d, want none", ver)
		}
		wantAssignment(t, h.mustReport(3), 1, 3)
		if w := h.writes(); len(w) != 2 || w[0].applied || !w[1].applied {
			t.Fatalf("got record writes %+v, want a lost one then an applied one", w)
		}
	})
	t.Run("reread waits for the read barrier", func(t *testing.T) {
		h := newAuthorityHarness(t)
		h.establish()
		h.inject(writeTimedOut)
		h.untilWrite(20, 1, 2)
		h.setBarrier(kv.Errorf(kv.CodeUnavailable, "no quorum"))
		for range 5 {
			h.clk.Advance(step)
			_, err := h.report(1)
			wantCode(t, err, kv.CodeUnavailable, "report without the barrier")
			_, err = h.renew(2, 2)
			wantCode(t, err, kv.CodeUnavailable, "renewal without the barrier")
		}
		if n := len(h.writes()); n != 3 {
			t.Fatalf("got %d record writes, want 3: nothing decided on a stale copy", n)
		}
		h.setBarrier(nil)
		wantAssignment(t, h.mustReport(1), 2, 2)
		h.mustRenew(2, 2)
	})
	t.Run("timed-out in-sync proposal", func(t *testing.T) {
		h := newAuthorityHarness(t)
		wantAssignment(t, h.mustReport(3), 1, 3)
		h.inject(writeTimedOut)
		isr, err := h.proposeISR(3, 1, 0, 1, 2)
		if err == nil || isr.Version != 0 || isr.Members != nil {
			t.Fatalf("got %+v, %v; want an error and no record (the outcome is unknown)", isr, err)
		}
		isr, err = h.proposeISR(3, 1, 0, 1, 2)
		wantCode(t, err, kv.CodeConflict, "resent proposal")
		if isr.Version != 1 || !slices.Equal(isr.Members, []failover.NodeID{1, 2}) {
			t.Fatalf("got record %+v, want the committed version 1 with nodes 1 and 2", isr)
		}
		if n := len(h.writes()); n != 2 {
			t.Fatalf("got %d record writes, want 2", n)
		}
	})
	t.Run("a new term starts from the stored record", func(t *testing.T) {
		h := newAuthorityHarness(t)
		h.establish()
		h.inject(writeTimedOut)
		h.untilWrite(20, 1, 2)
		h.leader.Store(2)
		_, err := h.report(1)
		wantCode(t, err, kv.CodeNotLeader, "report to a follower")
		h.leader.Store(0)
		_, err = h.renew(2, 2)
		wantCode(t, err, kv.CodeUnavailable, "renewal without a leader")
		h.leader.Store(1)
		h.term.Add(1)
		wantAssignment(t, h.mustReport(1), 2, 2)
		h.mustRenew(2, 2)
		h.steady(10, 2, 2, 1, 2)
		if n := len(h.writes()); n != 3 {
			t.Fatalf("got %d record writes, want 3", n)
		}
	})
	t.Run("unknown group and replica", func(t *testing.T) {
		h := newAuthorityHarness(t)
		_, err := h.auth.Report(h.ctx, h.group+100, primary.ReplicaStatus{Node: 1})
		wantCode(t, err, kv.CodeNotFound, "report for an unknown group")
		_, err = h.report(4)
		wantCode(t, err, kv.CodeInvalid, "report from a node outside the replicas")
		if n := len(h.writes()); n != 0 {
			t.Fatalf("got %d record writes, want 0", n)
		}
	})
}

// A reread (Renew's, or resync's) that took the record before a
// concurrent promotion must not roll the authority's cache back.
func TestPrimariesRereadOlderThanCache(t *testing.T) {
	t.Run("renewal", func(t *testing.T) {
		h := newAuthorityHarness(t)
		h.establish()
		h.toJustExpired()
		read, release := h.pauseNextRead()
		done := make(chan error, 1)
		go func() { _, err := h.renew(3, 1); done <- err }() // the old primary, a moment too late
		await(t, read, "the renewal's read")
		wantAssignment(t, h.mustReport(1), 2, 2) // promotes node 2
		release()
		err := await(t, done, "the renewal")
		wantCode(t, err, kv.CodeStaleEpoch, "renewal of the replaced primary")
		wantAssignment(t, h.mustReport(2), 2, 2)
		h.mustRenew(2, 2)
	})
	t.Run("resync", func(t *testing.T) {
		h := newAuthorityHarness(t)
		h.establish()
		h.toJustExpired()
		h.inject(writeLost)
		if _, err := h.proposeISR(3, 1, 1, 1); err == nil {
			t.Fatal("in-sync proposal with a lost write succeeded")
		}
		read, release := h.pauseNextRead()
		type answer struct {
			a   primary.Assignment
			err error
		}
		done := make(chan answer, 1)
		go func() { a, err := h.report(1); done <- answer{a, err} }()
		await(t, read, "node 1's reread")
		wantAssignment(t, h.mustReport(2), 2, 2) // rereads, then promotes node 2
		release()
		ans := await(t, done, "node 1's report")
		if ans.err != nil {
			t.Fatal(ans.err)
		}
		wantAssignment(t, ans.a, 2, 2)
		h.mustRenew(2, 2)
		h.steady(10, 2, 2, 1, 2)
	})
}

// After an in-sync write of the current epoch timed out but committed,
// the primary (the same node, same epoch) keeps renewing its lease.
func TestPrimariesResyncOwnInSyncWriteKeepsLease(t *testing.T) {
	h := newAuthorityHarness(t)
	h.establish()
	h.tick(1, 2, 3)
	h.mustRenew(3, 1)
	h.tick(1, 2, 3)
	h.inject(writeTimedOut)
	if _, err := h.proposeISR(3, 1, 1, 1); err == nil {
		t.Fatal("in-sync proposal with a timed-out write succeeded")
	}
	h.tick(1, 2, 3)
	h.mustRenew(3, 1) // refused: "epoch 1 was recorded behind this leader"
	h.steady(20, 1, 3, 1, 2, 3)
}

// A write that fails while another report is rereading the record leaves
// the record to be reread again: nothing is proposed on the stale copy.
func TestPrimariesResyncKeepsConcurrentFailure(t *testing.T) {
	h := newAuthorityHarness(t)
	h.establish()
	h.toJustExpired()
	h.inject(writeLost)
	if _, err := h.proposeISR(3, 1, 1, 1); err == nil {
		t.Fatal("in-sync proposal with a lost write succeeded")
	}
	read, release := h.pauseNextRead()
	done := make(chan error, 1)
	go func() { _, err := h.report(1); done <- err }()
	await(t, read, "node 1's reread")
	h.inject(writeTimedOut)
	wantAssignment(t, h.mustReport(2), 1, 3) // promotes node 2; the outcome is unknown
	release()
	if err := await(t, done, "node 1's report"); err != nil {
		t.Fatal(err)
	}
	wantAssignment(t, h.mustReport(1), 2, 2)
	if w := h.writes(); len(w) != 4 {
		t.Fatalf("got record writes %+v, want 4 (promotion, in-sync set, a lost one, the failover)", w)
	}
}
