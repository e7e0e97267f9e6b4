package raftstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/raftlog"
	"github.com/fulcrumdb/fulcrum/internal/storage"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// Sender is what the engine needs from the network: one-way messages to
// other nodes. Both transport.TCP and simnet endpoints provide it.
type Sender interface {
	Send(to transport.NodeID, kind transport.Kind, payload []byte) error
}

// Config is a node's engine configuration. Transport, Log and Store are
// required; the rest have defaults.
type Config struct {
	// NodeID is this node's id; it is also its Raft replica id in every
	// group, so a group's peers are node ids.
	NodeID    uint64
	Transport Sender
	Log       *raftlog.Store
	Store     *storage.Store

	// TickInterval is the Raft tick; ElectionTicks and HeartbeatTicks are
	// counted in ticks. Defaults 100ms, 10, 1: a leader is suspected after
	// 1-2 s of silence.
	TickInterval   time.Duration
	ElectionTicks  int
	HeartbeatTicks int
	// CompactAfter is how many applied entries a group's log keeps before
	// it is compacted (default 10000). Followers further behind get a
	// snapshot.
	CompactAfter uint64
	// MaxInflight bounds unacknowledged append messages per follower.
	MaxInflight int
	// LeaseReads lets a leader answer linearizable reads without a quorum
	// round while it holds a lease: a ReadIndex round started at t proves
	// that a quorum heard from it after t, and those followers refuse to
	// elect anyone else for an election timeout, so no other leader can
	// exist before t + election timeout - MaxClockDrift. The lease is
	// dropped when a leadership transfer starts (a transfer's election
	// skips that refusal), and a restarted replica ignores vote requests
	// for an election timeout (it forgot whom it heard from). Safe only
	// while the nodes' clocks run at rates
	// within MaxClockDrift of each other over an election timeout, which
	// must then be set (above 0, at most a quarter of it). Off by default.
	LeaseReads    bool
	MaxClockDrift time.Duration
	// Now is the wall clock for batch times and the HLC (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

func (c *Config) applyDefaults() error {
	if c.NodeID == 0 {
		return errors.New("raftstore: NodeID must be > 0")
	}
	if c.Transport == nil || c.Log == nil || c.Store == nil {
		return errors.New("raftstore: Transport, Log and Store are required")
	}
	if c.TickInterval <= 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.ElectionTicks <= 0 {
		c.ElectionTicks = 10
	}
	if c.HeartbeatTicks <= 0 {
		c.HeartbeatTicks = 1
	}
	if c.HeartbeatTicks >= c.ElectionTicks {
		return fmt.Errorf("raftstore: HeartbeatTicks (%d) must be below ElectionTicks (%d)", c.HeartbeatTicks, c.ElectionTicks)
	}
	if c.LeaseReads {
		election := time.Duration(c.ElectionTicks) * c.TickInterval
		if c.MaxClockDrift <= 0 || c.MaxClockDrift > election/4 {
			return fmt.Errorf("raftstore: lease reads need a clock drift bound above 0 and at most a quarter of the election timeout (%v), got %v", election/4, c.MaxClockDrift)
		}
	}
	if c.CompactAfter == 0 {
		c.CompactAfter = 10000
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = 256
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// ErrClosed is returned by requests to a closed node.
var ErrClosed = kv.Errorf(kv.CodeUnavailable, "raftstore: node is shutting down")

// GroupSpec says what a group replicates: one shard of one namespace.
type GroupSpec struct {
	ID        uint64
	Namespace string
	Shard     int
	Shards    int
	// Peers are the group's initial voters (node ids). A replica whose
	// node is among them bootstraps the group if it has no state yet; a
	// replica created with no Peers waits to be added by a conf change
	// and to receive a snapshot.
	Peers []uint64
	// Campaign makes a replica that bootstraps the group here start an
	// election at once instead of after an election timeout: set it on the
	// preferred leader, so a new group serves within a round trip and
	// leaders spread as placement intended.
	Campaign bool
}

// Node runs every Raft group replica of one node. Its methods are safe
// for concurrent use.
type Node struct {
	cfg   Config
	clock *hlc.Clock

	// inbox carries raft messages from the transport; funcs carries work
	// to run on the loop goroutine (proposals, reads, group changes).
	inbox chan inbound
	funcs chan func(*loop)

	seq atomic.Uint64 // proposal ids
	// incarnation tells this run's proposals from an earlier run's.
	incarnation uint64
	ctx         context.Context
	cancel      context.CancelFunc
	done        chan struct{}

	statusMu sync.RWMutex
	status   map[uint64]GroupStatus

	heardMu sync.Mutex
	heard   map[uint64]time.Time // last raft traffic from each node

	metrics *metricSet
}

type inbound struct {
	from    uint64
	payload []byte
}

// New starts a node's engine loop. Close stops it.
func New(cfg Config) (*Node, error) {
	if err := cfg.applyDefaults(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:         cfg,
		clock:       hlc.New(func() int64 { return cfg.Now().UnixNano() }),
		inbox:       make(chan inbound, 4096),
		funcs:       make(chan func(*loop), 4096),
		done:        make(chan struct{}),
		status:      make(map[uint64]GroupStatus),
		heard:       make(map[uint64]time.Time),
		metrics:     newMetricSet(),
		incarnation: rand.Uint64(),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	l := newLoop(n)
	go l.run()
	return n, nil
}

// ID returns the node's id.
func (n *Node) ID() uint64 { return n.cfg.NodeID }

// Close stops the loop and answers every waiting request with ErrClosed.
// It does not hand leadership over; call Drain first for that.
func (n *Node) Close() error {
	n.cancel()
	<-n.done
	return nil
}

// Deliver implements transport.Handler for transport.KindRaft: payload is
// a batch of raft messages from one node.
func (n *Node) Deliver(from transport.NodeID, kind transport.Kind, payload []byte) {
	n.heardMu.Lock()
	n.heard[uint64(from)] = n.cfg.Now()
	n.heardMu.Unlock()
	select {
	case n.inbox <- inbound{from: uint64(from), payload: payload}:
	default:
		// Raft recovers from lost messages; a full inbox means the loop is
		// behind, and blocking the transport would only spread that.
		n.metrics.inboxDropped.Add(1)
	}
}

// Serve implements transport.Handler; the engine has no calls.
func (n *Node) Serve(ctx context.Context, from transport.NodeID, kind transport.Kind, payload []byte) ([]byte, error) {
	return nil, kv.Errorf(kv.CodeNotSupported, "raftstore: no calls")
}

// exec runs f on the loop goroutine and waits for it.
func (n *Node) exec(ctx context.Context, f func(*loop)) error {
	done := make(chan struct{})
	if err := n.post(ctx, func(l *loop) { f(l); close(done) }); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-n.done:
		return ErrClosed
	case <-ctx.Done():
		return kv.Errorf(kv.CodeTimeout, "raftstore: %w", ctx.Err())
	}
}

// post queues f for the loop without waiting.
func (n *Node) post(ctx context.Context, f func(*loop)) error {
	select {
	case n.funcs <- f:
		return nil
	case <-n.ctx.Done():
		return ErrClosed
	case <-ctx.Done():
		return kv.Errorf(kv.CodeUnavailable, "raftstore: engine busy: %w", ctx.Err())
	}
}

// CreateGroup starts this node's replica of a group, restarting it from
// its persisted state if it has one. Creating an existing group is a no-op.
func (n *Node) CreateGroup(ctx context.Context, spec GroupSpec) error {
	if spec.ID == 0 {
		return kv.Errorf(kv.CodeInvalid, "raftstore: group id 0")
	}
	var err error
	if e := n.exec(ctx, func(l *loop) { err = l.createGroup(spec) }); e != nil {
		return e
	}
	return err
}

// RemoveGroup stops this node's replica of a group and deletes its Raft
// state and its rows. Call it only once the replica is no longer needed:
// its namespace was dropped, or the group's membership no longer holds
// this node.
func (n *Node) RemoveGroup(ctx context.Context, id uint64) error {
	var err error
	if e := n.exec(ctx, func(l *loop) { err = l.removeGroup(id) }); e != nil {
		return e
	}
	return err
}

// LastHeard is when raft traffic last came from node (zero: never since
// this node started).
func (n *Node) LastHeard(node uint64) time.Time {
	n.heardMu.Lock()
	defer n.heardMu.Unlock()
	return n.heard[node]
}

// reachable says how many of a group's voters this node has heard from
// within an election timeout (itself included), for UNAVAILABLE messages.
func (n *Node) reachable(st GroupStatus) (int, int) {
	window := time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
	now := n.cfg.Now()
	n.heardMu.Lock()
	defer n.heardMu.Unlock()
	up := 0
	for _, v := range st.Voters {
		if v == n.cfg.NodeID || now.Sub(n.heard[v]) <= window {
			up++
		}
	}
	return up, len(st.Voters)
}

// unavailable builds the CP refusal for a group without a usable quorum.
func (n *Node) unavailable(group uint64, cause error) error {
	st, ok := n.Status(group)
	if !ok {
		return kv.Errorf(kv.CodeUnavailable, "raftstore: group %d is not on node %d", group, n.cfg.NodeID)
	}
	up, all := n.reachable(st)
	return &kv.Error{Code: kv.CodeUnavailable, Err: cause,
		Message: fmt.Sprintf("shard %d of ns %q has no quorum (%d/%d replicas reachable)", st.Shard, st.Namespace, up, all)}
}

// GroupStatus is a snapshot of one replica's state.
type GroupStatus struct {
	ID        uint64
	Namespace string
	Shard     int
	Leader    uint64
	Term      uint64
	State     string // StateLeader, StateFollower, ...
	Commit    uint64
	Applied   uint64
	LastIndex uint64
	Voters    []uint64
	Learners  []uint64
	// Joint is true while a membership change is half done (joint
	// consensus): no other change can start until it leaves.
	Joint bool
	// created tells this replica from one recreated in its place.
	created uint64
	// Match is, on the leader, each replica's highest replicated index;
	// Active says which replicas it heard from within an election timeout.
	Match  map[uint64]uint64
	Active map[uint64]bool
}

// Status returns the last published status of a local replica.
func (n *Node) Status(group uint64) (GroupStatus, bool) {
	n.statusMu.RLock()
	defer n.statusMu.RUnlock()
	st, ok := n.status[group]
	return st, ok
}

// Groups returns the status of every local replica.
func (n *Node) Groups() []GroupStatus {
	n.statusMu.RLock()
	defer n.statusMu.RUnlock()
	out := make([]GroupStatus, 0, len(n.status))
	for _, st := range n.status {
		out = append(out, st)
	}
	return out
}

// TransferLeadership asks the group's leader (this node) to hand over to
// node to, and waits until to leads or ctx ends.
func (n *Node) TransferLeadership(ctx context.Context, group, to uint64) error {
	if err := n.exec(ctx, func(l *loop) {
		if g := l.groups[group]; g != nil {
			g.rn.TransferLeader(to)
		}
	}); err != nil {
		return err
	}
	return n.waitFor(ctx, func() bool {
		st, ok := n.Status(group)
		return ok && st.Leader == to
	})
}

// Campaign makes this replica start an election (tests and operators).
func (n *Node) Campaign(ctx context.Context, group uint64) error {
	var err error
	if e := n.exec(ctx, func(l *loop) {
		if g := l.groups[group]; g != nil {
			err = g.rn.Campaign()
		}
	}); e != nil {
		return e
	}
	return err
}

// Drain hands the leadership of every group this node leads to the most
// up-to-date voter (one recently heard from, if any) and waits until it
// leads none, ctx ends, or three election timeouts (at least a second)
// pass: raft abandons a transfer to a node that just died after one. Used
// on graceful shutdown so clients see no election pause.
func (n *Node) Drain(ctx context.Context) error {
	limit := max(3*time.Duration(n.cfg.ElectionTicks)*n.cfg.TickInterval, time.Second)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for _, st := range n.Groups() {
		if st.Leader != n.cfg.NodeID {
			continue
		}
		best := drainTarget(st, n.cfg.NodeID)
		if best == 0 {
			continue
		}
		if err := n.exec(ctx, func(l *loop) {
			if g := l.groups[st.ID]; g != nil {
				g.rn.TransferLeader(best)
			}
		}); err != nil {
			return err
		}
	}
	return n.waitFor(ctx, func() bool {
		for _, st := range n.Groups() {
			if st.Leader == n.cfg.NodeID && len(st.Voters) > 1 {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond until it holds or ctx ends.
func (n *Node) waitFor(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(n.cfg.TickInterval / 4)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return kv.Errorf(kv.CodeTimeout, "raftstore: %w", ctx.Err())
		case <-n.done:
			return ErrClosed
		case <-t.C:
		}
	}
	return nil
}

// raftLogger sends the raft library's log lines to slog at debug level
// (warnings and errors at theirs), so a quiet node stays quiet.
type raftLogger struct{ l *slog.Logger }

func (r raftLogger) Debug(v ...any)                   { r.l.Debug(fmt.Sprint(v...)) }
func (r raftLogger) Debugf(format string, v ...any)   { r.l.Debug(fmt.Sprintf(format, v...)) }
func (r raftLogger) Info(v ...any)                    { r.l.Debug(fmt.Sprint(v...)) }
func (r raftLogger) Infof(format string, v ...any)    { r.l.Debug(fmt.Sprintf(format, v...)) }
func (r raftLogger) Warning(v ...any)                 { r.l.Warn(fmt.Sprint(v...)) }
func (r raftLogger) Warningf(format string, v ...any) { r.l.Warn(fmt.Sprintf(format, v...)) }
func (r raftLogger) Error(v ...any)                   { r.l.Error(fmt.Sprint(v...)) }
func (r raftLogger) Errorf(format string, v ...any)   { r.l.Error(fmt.Sprintf(format, v...)) }
func (r raftLogger) Fatal(v ...any)                   { r.Panic(v...) }
func (r raftLogger) Fatalf(format string, v ...any)   { r.Panicf(format, v...) }
func (r raftLogger) Panic(v ...any)                   { s := fmt.Sprint(v...); r.l.Error(s); panic(s) }
func (r raftLogger) Panicf(format string, v ...any) {
	s := fmt.Sprintf(format, v...)
	r.l.Error(s)
	panic(s)
}

var _ raft.Logger = raftLogger{}

// confStateVoters lists the voters of a conf state.
func confStateVoters(cs *pb.ConfState) []uint64 {
	ids := append(append([]uint64(nil), cs.GetVoters()...), cs.GetVotersOutgoing()...)
	slices.Sort(ids)
	return slices.Compact(ids)
}

// drainTarget picks the voter to hand a leadership to: the most caught up
// among those the leader heard from recently, else among all.
func drainTarget(st GroupStatus, self uint64) uint64 {
	for _, activeOnly := range []bool{true, false} {
		var best, bestMatch uint64
		for id, m := range st.Match {
			if id == self || !slices.Contains(st.Voters, id) || (activeOnly && !st.Active[id]) {
				continue
			}
			if best == 0 || m > bestMatch {
				best, bestMatch = id, m
			}
		}
		if best != 0 {
			return best
		}
	}
	return 0
}
