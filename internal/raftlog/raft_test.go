package raftlog

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// These tests run etcd's raft.RawNode on GroupStorage: one node, then three
// nodes each holding two groups (multi-raft, one Batch per node per round),
// with a partition that forces a snapshot, a conf change, compactions and
// restarts from the stores. They exercise the store the way the raftstore
// will and prove it satisfies raft, not just MemoryStorage's answers.

// stateMachine is a group's applied state on one node; it survives restarts
// as a durable state machine would.
type stateMachine struct {
	applied uint64
	data    []string
}

// raftNode is one node: one store, a RawNode and a state machine per group.
type raftNode struct {
	id    uint64
	fs    vfs.FS
	store *Store
	rafts map[uint64]*raft.RawNode
	sms   map[uint64]*stateMachine
}

// raftCluster passes messages between nodes by hand.
type raftCluster struct {
	t      *testing.T
	nodes  map[uint64]*raftNode
	groups []uint64
	// cut nodes receive and send nothing.
	cut   map[uint64]bool
	queue []envelope
	// snapshots counts the snapshots delivered.
	snapshots int
}

// envelope is a message and its group, as a transport would carry it.
type envelope struct {
	g uint64
	m *raftpb.Message
}

var quietRaft = &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}

func newRaftCluster(t *testing.T, nodeIDs, groups []uint64) *raftCluster {
	c := &raftCluster{t: t, nodes: make(map[uint64]*raftNode), groups: groups, cut: make(map[uint64]bool)}
	for _, id := range nodeIDs {
		n := &raftNode{id: id, fs: vfs.NewMem(), sms: make(map[uint64]*stateMachine)}
		n.store = openFS(t, n.fs)
		b := n.store.NewBatch()
		for _, g := range groups {
			b.SetConfState(g, confState(nodeIDs...)) // bootstrap
			n.sms[g] = &stateMachine{}
		}
		commit(t, b, true)
		c.nodes[id] = n
		c.startNode(n)
	}
	return c
}

// startNode (re)creates n's RawNodes from its store.
func (c *raftCluster) startNode(n *raftNode) {
	n.rafts = make(map[uint64]*raft.RawNode)
	for _, g := range c.groups {
		rn, err := raft.NewRawNode(&raft.Config{
			ID:              n.id,
			ElectionTick:    10,
			HeartbeatTick:   1,
			Storage:         n.store.Group(g),
			Applied:         n.sms[g].applied,
			MaxSizePerMsg:   4 << 10,
			MaxInflightMsgs: 16,
			Logger:          quietRaft,
		})
		if err != nil {
			c.t.Fatalf("node %d group %d: %v", n.id, g, err)
		}
		n.rafts[g] = rn
	}
}

// restart closes every store, reopens it and restarts the RawNodes from it.
func (c *raftCluster) restart() {
	for _, id := range c.sortedNodes() {
		n := c.nodes[id]
		if err := n.store.Close(); err != nil {
			c.t.Fatal(err)
		}
		n.store = openFS(c.t, n.fs)
		ids, err := n.store.Groups()
		if err != nil || !slices.Equal(ids, c.groups) {
			c.t.Fatalf("node %d: Groups() after restart = %v, %v; want %v", id, ids, err, c.groups)
		}
		for _, g := range c.groups {
			hs, _, _ := n.store.Group(g).InitialState()
			if hs.GetCommit() < n.sms[g].applied {
				c.t.Fatalf("node %d group %d: recovered commit %d < applied %d", id, g, hs.GetCommit(), n.sms[g].applied)
			}
		}
		c.startNode(n)
	}
}

func (c *raftCluster) sortedNodes() []uint64 {
	var ids []uint64
	for id := range c.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// settle handles Readys and delivers messages until the cluster is quiet.
func (c *raftCluster) settle() {
	for round := 0; ; round++ {
		if round > 10000 {
			c.t.Fatal("cluster does not settle")
		}
		busy := false
		for _, id := range c.sortedNodes() {
			if c.handleReady(c.nodes[id]) {
				busy = true
			}
		}
		if len(c.queue) > 0 {
			busy = true
			c.deliver()
		}
		if !busy {
			return
		}
	}
}

// handleReady persists the Readys of all of n's groups in one batch, then
// sends, applies and advances, in the order raft requires.
func (c *raftCluster) handleReady(n *raftNode) bool {
	t := c.t
	type ready struct {
		g  uint64
		rd raft.Ready
	}
	var rds []ready
	b := n.store.NewBatch()
	sync := false
	for _, g := range c.groups {
		rn := n.rafts[g]
		if !rn.HasReady() {
			continue
		}
		rd := rn.Ready()
		if !raft.IsEmptySnap(rd.Snapshot) {
			b.ApplySnapshot(g, rd.Snapshot.GetMetadata())
		}
		b.Append(g, rd.Entries)
		if !raft.IsEmptyHardState(rd.HardState) {
			b.SetHardState(g, rd.HardState)
		}
		sync = sync || rd.MustSync
		rds = append(rds, ready{g, rd})
	}
	if len(rds) == 0 {
		return false
	}
	commit(t, b, sync)

	for _, r := range rds {
		g, rd, rn, sm := r.g, r.rd, n.rafts[r.g], n.sms[r.g]
		for _, m := range rd.Messages {
			c.queue = append(c.queue, envelope{g, m})
		}
		if !raft.IsEmptySnap(rd.Snapshot) {
			if err := json.Unmarshal(rd.Snapshot.GetData(), &sm.data); err != nil {
				t.Fatalf("node %d group %d: snapshot data: %v", n.id, g, err)
			}
			sm.applied = rd.Snapshot.GetMetadata().GetIndex()
		}
		for _, e := range rd.CommittedEntries {
			if e.GetIndex() != sm.applied+1 {
				t.Fatalf("node %d group %d: applying %d after %d", n.id, g, e.GetIndex(), sm.applied)
			}
			switch e.GetType() {
			case raftpb.EntryNormal:
				if len(e.GetData()) > 0 {
					sm.data = append(sm.data, string(e.GetData()))
				}
			case raftpb.EntryConfChange:
				var cc raftpb.ConfChange
				if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
					t.Fatal(err)
				}
				cs := rn.ApplyConfChange(&cc)
				b.SetConfState(g, cs)
			}
			sm.applied = e.GetIndex()
		}
		rn.Advance(rd)
	}
	commit(t, b, false) // conf states of applied conf changes
	return true
}

// deliver steps every queued message into its recipient. A snapshot gets
// the sender's state machine attached, at its applied index, as the
// raftstore will do; GroupStorage.Snapshot gives metadata only.
func (c *raftCluster) deliver() {
	q := c.queue
	c.queue = nil
	for _, env := range q {
		g, m := env.g, env.m
		from := c.nodes[m.GetFrom()]
		to, ok := c.nodes[m.GetTo()]
		if !ok || c.cut[m.GetTo()] || c.cut[m.GetFrom()] {
			if m.GetType() == raftpb.MsgSnap {
				from.rafts[g].ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
			}
			continue
		}
		if m.GetType() == raftpb.MsgSnap {
			m = proto.Clone(m).(*raftpb.Message)
			sm := from.sms[g]
			data, err := json.Marshal(sm.data)
			if err != nil {
				c.t.Fatal(err)
			}
			term, err := from.store.Group(g).Term(sm.applied)
			if err != nil {
				c.t.Fatalf("snapshot at applied %d: %v", sm.applied, err)
			}
			m.Snapshot.Data = data
			m.Snapshot.Metadata.Index = new(sm.applied)
			m.Snapshot.Metadata.Term = new(term)
			c.snapshots++
		}
		if err := to.rafts[g].Step(m); err != nil {
			c.t.Fatalf("node %d group %d: step %v: %v", m.GetTo(), g, m.GetType(), err)
		}
		if m.GetType() == raftpb.MsgSnap {
			from.rafts[g].ReportSnapshot(m.GetTo(), raft.SnapshotFinish)
		}
	}
}

func (c *raftCluster) leader(g uint64) *raftNode {
	for _, id := range c.sortedNodes() {
		n := c.nodes[id]
		if n.rafts[g].BasicStatus().RaftState == raft.StateLeader && !c.cut[id] {
			return n
		}
	}
	c.t.Fatalf("group %d has no leader", g)
	return nil
}

func (c *raftCluster) propose(g uint64, data string) {
	if err := c.leader(g).rafts[g].Propose([]byte(data)); err != nil {
		c.t.Fatalf("group %d: propose: %v", g, err)
	}
}

func (c *raftCluster) tick() {
	for _, id := range c.sortedNodes() {
		for _, g := range c.groups {
			c.nodes[id].rafts[g].Tick()
		}
	}
	c.settle()
}

// compactAll compacts every node's logs to a little behind applied.
func (c *raftCluster) compactAll(keep uint64) {
	for _, id := range c.sortedNodes() {
		n := c.nodes[id]
		for _, g := range c.groups {
			gs := n.store.Group(g)
			first, _ := gs.FirstIndex()
			if applied := n.sms[g].applied; applied > keep && applied-keep >= first {
				if err := gs.Compact(applied - keep); err != nil {
					c.t.Fatalf("node %d group %d: compact: %v", id, g, err)
				}
			}
		}
	}
}

// checkApplied checks every node applied exactly want in group g.
func (c *raftCluster) checkApplied(g uint64, want []string) {
	for _, id := range c.sortedNodes() {
		if got := c.nodes[id].sms[g].data; !slices.Equal(got, want) {
			c.t.Fatalf("node %d group %d applied %d entries, want %d (first difference at %d)", id, g, len(got), len(want), firstDiff(got, want))
		}
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestRawNodeSingle(t *testing.T) {
	c := newRaftCluster(t, []uint64{1}, []uint64{1})
	if err := c.nodes[1].rafts[1].Campaign(); err != nil {
		t.Fatal(err)
	}
	c.settle()
	var want []string
	for i := range 300 {
		want = append(want, fmt.Sprintf("p%d", i))
		c.propose(1, want[i])
		if i%10 == 9 {
			c.settle()
			c.compactAll(20)
		}
		if i == 149 {
			c.restart()
			if err := c.nodes[1].rafts[1].Campaign(); err != nil {
				t.Fatal(err)
			}
			c.settle()
		}
	}
	c.settle()
	c.checkApplied(1, want)
	c.restart()
	c.settle()
	c.checkApplied(1, want) // nothing applied twice after a restart
	if first, _ := c.nodes[1].store.Group(1).FirstIndex(); first < 200 {
		t.Fatalf("first index %d: the log was not compacted", first)
	}
}

func TestRawNodeThreeNodesTwoGroups(t *testing.T) {
	groups := []uint64{10, 20}
	c := newRaftCluster(t, []uint64{1, 2, 3}, groups)
	if err := c.nodes[1].rafts[10].Campaign(); err != nil {
		t.Fatal(err)
	}
	if err := c.nodes[2].rafts[20].Campaign(); err != nil {
		t.Fatal(err)
	}
	c.settle()
	want := map[uint64][]string{}
	proposeN := func(n int) {
		for i := range n {
			for _, g := range groups {
				d := fmt.Sprintf("g%d-p%d", g, len(want[g]))
				want[g] = append(want[g], d)
				c.propose(g, d)
			}
			if i%8 == 7 {
				c.settle()
			}
		}
		c.settle()
	}
	proposeN(100)
	for _, g := range groups {
		c.checkApplied(g, want[g])
	}

	// A conf change: add a learner (node 4 does not exist; its messages
	// are dropped). Applying it saves the conf state.
	cc := &raftpb.ConfChange{Type: raftpb.ConfChangeAddLearnerNode.Enum(), NodeId: new(uint64(4))}
	if err := c.leader(10).rafts[10].ProposeConfChange(cc); err != nil {
		t.Fatal(err)
	}
	c.settle()

	// Node 3 misses 100 entries that the others then compact away: it can
	// only catch up through a snapshot.
	c.cut[3] = true
	proposeN(100)
	c.compactAll(5)
	c.cut[3] = false
	for range 5 {
		c.tick()
	}
	if c.snapshots == 0 {
		t.Fatal("no snapshot was sent to the node that fell behind")
	}
	t.Logf("%d snapshots delivered", c.snapshots)
	for _, g := range groups {
		c.checkApplied(g, want[g])
		if first, _ := c.nodes[3].store.Group(g).FirstIndex(); first < 100 {
			t.Fatalf("node 3 group %d: first index %d, want a log that starts after the snapshot", g, first)
		}
	}

	c.restart()
	for _, id := range c.sortedNodes() {
		_, cs, _ := c.nodes[id].store.Group(10).InitialState()
		if !slices.Equal(cs.GetLearners(), []uint64{4}) || !slices.Equal(cs.GetVoters(), []uint64{1, 2, 3}) {
			t.Fatalf("node %d group 10: recovered conf state %v, want voters 1 2 3 learner 4", id, cs)
		}
	}
	// New leaders after the restart.
	if err := c.nodes[2].rafts[10].Campaign(); err != nil {
		t.Fatal(err)
	}
	if err := c.nodes[3].rafts[20].Campaign(); err != nil {
		t.Fatal(err)
	}
	c.settle()
	proposeN(50)
	for _, g := range groups {
		c.checkApplied(g, want[g])
	}
}
