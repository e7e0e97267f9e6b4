package raftstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// Write proposes b to the group's log and returns its results once it is
// committed and applied here. Any replica of the group may be asked: raft
// forwards the proposal to the leader.
//
// Errors: UNAVAILABLE when the write never entered the log (no leader
// could be reached before ctx ended); TIMEOUT ("outcome unknown") when it
// was handed to raft but no outcome was seen before ctx ended.
func (n *Node) Write(ctx context.Context, group uint64, b kv.Batch) ([]kv.Result, error) {
	if b.Now == 0 {
		b.Now = n.cfg.Now().UnixMilli()
	}
	if b.Timestamp.IsZero() {
		b.Timestamp = n.clock.Now()
	}
	p := &proposal{
		id:   n.seq.Add(1),
		ctx:  ctx,
		done: make(chan proposalResult, 1),
	}
	p.data = encodeEntry(nil, proposer{n.cfg.NodeID, n.incarnation, p.id}, &b)
	start := time.Now()
	if err := n.post(ctx, func(l *loop) { l.propose(group, p) }); err != nil {
		return nil, err
	}
	select {
	case r := <-p.done:
		if r.err == nil {
			n.metrics.commit.Observe(since(start))
		}
		return r.results, r.err
	case <-ctx.Done():
		if p.state.CompareAndSwap(propPending, propAbandoned) {
			return nil, n.unavailable(group, ctx.Err())
		}
		return nil, &kv.Error{Code: kv.CodeTimeout, Err: ctx.Err(),
			Message: fmt.Sprintf("outcome unknown: shard %s did not confirm the write in time", n.shardName(group))}
	case <-n.done:
		if p.state.CompareAndSwap(propPending, propAbandoned) {
			return nil, ErrClosed
		}
		return nil, kv.Errorf(kv.CodeTimeout, "outcome unknown: node %d stopped", n.cfg.NodeID)
	}
}

// ReadBarrier returns once this replica has applied everything committed
// before the call (ReadIndex): reads of the local state machine after it
// are linearizable. Without a quorum it fails with UNAVAILABLE when ctx
// ends; a read has no side effect, so there is nothing indeterminate.
func (n *Node) ReadBarrier(ctx context.Context, group uint64) error {
	w := &readWaiter{ctx: ctx, done: make(chan error, 1)}
	start := time.Now()
	if err := n.post(ctx, func(l *loop) { l.read(group, w) }); err != nil {
		return err
	}
	select {
	case err := <-w.done:
		if err == nil {
			n.metrics.read.Observe(since(start))
		}
		return err
	case <-ctx.Done():
		return n.unavailable(group, ctx.Err())
	case <-n.done:
		return ErrClosed
	}
}

// Read runs read, which reads the group's rows from the local state
// machine, after the group's read barrier, so what it sees is
// linearizable. If this replica is removed meanwhile (its shard moved
// away: its rows are deleted), Read fails with UNAVAILABLE and what read
// saw must be discarded.
func (n *Node) Read(ctx context.Context, group uint64, read func() error) error {
	before, ok := n.Status(group)
	if !ok {
		return n.unavailable(group, errors.New("no replica of the group on this node"))
	}
	if err := n.ReadBarrier(ctx, group); err != nil {
		return err
	}
	if err := read(); err != nil {
		return err
	}
	if after, ok := n.Status(group); !ok || after.created != before.created {
		return kv.Errorf(kv.CodeUnavailable, "group %d: the replica on node %d was removed during the read", group, n.cfg.NodeID)
	}
	return nil
}

// Replica identifies this node's current replica of the group: the
// value changes when the replica is removed and another created in its
// place. ok is false when there is none.
func (n *Node) Replica(group uint64) (id uint64, ok bool) {
	st, ok := n.Status(group)
	return st.created, ok
}

// Get is a linearizable read of one key of the group's shard.
func (n *Node) Get(ctx context.Context, group uint64, ns string, key []byte) (v kv.Value, ok bool, err error) {
	err = n.Read(ctx, group, func() error {
		v, ok, err = n.cfg.Store.Get(ctx, ns, key)
		return err
	})
	if err != nil {
		return kv.Value{}, false, err
	}
	return v, ok, nil
}

func (n *Node) shardName(group uint64) string {
	if st, ok := n.Status(group); ok {
		return fmt.Sprintf("%d of ns %q", st.Shard, st.Namespace)
	}
	return fmt.Sprintf("group %d", group)
}

// Leader is the group's leader as this replica last saw it (0: none known,
// or no replica of the group here).
func (n *Node) Leader(group uint64) uint64 {
	st, ok := n.Status(group)
	if !ok {
		return 0
	}
	return st.Leader
}

// AddLearner makes node a learner (a non-voting replica that receives the
// log) of the group and returns once the change is applied here. The
// node must create its replica of the group (with no Peers) to catch up.
// Adding a node that is already a member is a no-op change.
func (n *Node) AddLearner(ctx context.Context, group, node uint64) error {
	t := pb.ConfChangeAddLearnerNode
	return n.changeMembership(ctx, group, &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{{Type: &t, NodeId: &node}}})
}

func (n *Node) changeMembership(ctx context.Context, group uint64, cc *pb.ConfChangeV2) error {
	p := &proposal{
		id:   n.seq.Add(1),
		ctx:  ctx,
		cc:   cc,
		done: make(chan proposalResult, 1),
	}
	cc.Context = appendProposer(nil, proposer{n.cfg.NodeID, n.incarnation, p.id})
	if err := n.post(ctx, func(l *loop) { l.propose(group, p) }); err != nil {
		return err
	}
	select {
	case r := <-p.done:
		return r.err
	case <-ctx.Done():
		if p.state.CompareAndSwap(propPending, propAbandoned) {
			return n.unavailable(group, ctx.Err())
		}
		return kv.Errorf(kv.CodeTimeout, "outcome unknown: membership change of group %d: %w", group, ctx.Err())
	case <-n.done:
		return ErrClosed
	}
}
