package simnet

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// DefaultQueueSize bounds the messages in flight from one node to another,
// as TCPConfig.QueueSize bounds a TCP peer's queue.
const DefaultQueueSize = 4096

// Network is an in-memory network of endpoints with injectable faults. All
// methods are safe for concurrent use.
type Network struct {
	seed   int64
	wake   chan struct{} // capacity 1: the heap changed
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the scheduler
	stats  netCounters

	mu struct {
		sync.Mutex
		closed    bool
		rng       *rand.Rand
		live      map[transport.NodeID]*Endpoint // the current incarnation of each running node
		known     map[transport.NodeID]bool      // every node ever attached
		side      map[transport.NodeID]int       // Partition: side index per node
		isolated  map[transport.NodeID]bool
		blocked   map[pair]bool
		latMin    time.Duration
		latMax    time.Duration
		dropRate  float64
		dupRate   float64
		reorder   bool
		queueSize int
		queue     msgHeap            // messages in flight, by due time
		seq       uint64             // tie-breaker: FIFO among equal due times
		lastDue   map[pair]time.Time // FIFO per pair when reorder is off
		inflight  map[pair]int       // messages holding a queue slot, per pair
		calls     map[uint64]*call   // Calls waiting for a reply, by id
		nextCall  uint64
	}
}

type pair struct{ from, to transport.NodeID }

// Stats counts the network's traffic and the faults it injected.
type Stats struct {
	Sent       uint64 // messages handed to the network: one-way, call requests, replies (copies excluded)
	Delivered  uint64 // one-way messages and requests handed to a node, replies handed to their caller
	Dropped    uint64 // lost to SetDropRate
	Duplicated uint64 // extra copies made by SetDuplicateRate
	Blocked    uint64 // lost to a partition, an isolation or a block, when sent or when due
	Lost       uint64 // addressed to a closed endpoint (a crashed node)
	Refused    uint64 // Calls failed at once: destination down or cut off
	QueueFull  uint64 // Send or Call refused with ErrQueueFull
}

type netCounters struct {
	sent, delivered, dropped, duplicated, blocked, lost, refused, queueFull atomic.Uint64
}

// New returns a network whose random fault decisions come from seed. It has
// no faults until told otherwise. Close stops it.
func New(seed int64) *Network {
	n := &Network{seed: seed, wake: make(chan struct{}, 1)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.mu.rng = rand.New(rand.NewPCG(uint64(seed), 0x5eed_f01c))
	n.mu.live = make(map[transport.NodeID]*Endpoint)
	n.mu.known = make(map[transport.NodeID]bool)
	n.mu.side = make(map[transport.NodeID]int)
	n.mu.isolated = make(map[transport.NodeID]bool)
	n.mu.blocked = make(map[pair]bool)
	n.mu.lastDue = make(map[pair]time.Time)
	n.mu.inflight = make(map[pair]int)
	n.mu.calls = make(map[uint64]*call)
	n.mu.queueSize = DefaultQueueSize
	n.wg.Add(1)
	go n.run()
	return n
}

// Seed returns the seed the network was created with, to print when a test
// fails so the run can be replayed.
func (n *Network) Seed() int64 { return n.seed }

// Endpoint returns node id's endpoint, attaching the node if it is not
// running. After the previous endpoint was closed (a crash), it returns a
// fresh one with no handlers: a restarted node. The dynamic type is
// *Endpoint. After Close of the network, the endpoint returned is closed.
func (n *Network) Endpoint(id transport.NodeID) transport.Endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e := n.mu.live[id]; e != nil && !e.closed.Load() {
		return e // a closing endpoint is replaced, not handed out again
	}
	e := &Endpoint{n: n, id: id, wake: make(chan struct{}, 1)}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.stats.peers = make(map[transport.NodeID]*transport.Counters)
	if n.mu.closed {
		e.closed.Store(true)
		e.cancel()
		return e
	}
	n.mu.live[id] = e
	n.mu.known[id] = true
	e.wg.Add(1)
	go e.deliverLoop()
	return e
}

// Close closes every endpoint and stops the network's goroutines.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.mu.closed {
		n.mu.Unlock()
		return nil
	}
	n.mu.closed = true
	eps := make([]*Endpoint, 0, len(n.mu.live))
	for _, e := range n.mu.live {
		eps = append(eps, e)
	}
	n.mu.Unlock()
	for _, e := range eps {
		e.Close()
	}
	n.cancel()
	n.wg.Wait()
	n.mu.Lock()
	n.mu.queue = nil
	n.mu.Unlock()
	return nil
}

// Stats returns a snapshot of the network's counters.
func (n *Network) Stats() Stats {
	c := &n.stats
	return Stats{
		Sent: c.sent.Load(), Delivered: c.delivered.Load(), Dropped: c.dropped.Load(),
		Duplicated: c.duplicated.Load(), Blocked: c.blocked.Load(), Lost: c.lost.Load(),
		Refused: c.refused.Load(), QueueFull: c.queueFull.Load(),
	}
}

// Partition splits the nodes named into sides: nodes in different sides
// cannot exchange anything; nodes not named keep talking to everyone. It
// replaces the previous partition (blocks and isolations stay). A node named
// in several sides belongs to the last.
func (n *Network) Partition(sides ...[]transport.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.mu.side)
	for i, side := range sides {
		for _, id := range side {
			n.mu.side[id] = i
		}
	}
}

// Isolate cuts node id off from every other node, both ways, until Heal.
func (n *Network) Isolate(id transport.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.isolated[id] = true
}

// Block loses from's messages to to; the reverse direction still flows.
func (n *Network) Block(from, to transport.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.blocked[pair{from, to}] = true
}

// Unblock undoes Block(from, to).
func (n *Network) Unblock(from, to transport.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.mu.blocked, pair{from, to})
}

// Heal removes every partition, isolation and block. Latency, drop,
// duplicate and reorder settings stay.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.mu.side)
	clear(n.mu.isolated)
	clear(n.mu.blocked)
}

// Reachable reports whether a message from from to to would get through the
// current partitions, isolations and blocks.
func (n *Network) Reachable(from, to transport.NodeID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reachableLocked(from, to)
}

// SetLatency delays each message by a uniform random duration in [min, max].
func (n *Network) SetLatency(min, max time.Duration) {
	min, max = clampDur(min), clampDur(max)
	if max < min {
		min, max = max, min
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.latMin, n.mu.latMax = min, max
}

// SetDropRate loses each message (one-way, request or reply) with
// probability p, clamped to [0, 1].
func (n *Network) SetDropRate(p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.dropRate = clampRate(p)
}

// SetDuplicateRate delivers a one-way message or call request twice with
// probability p, clamped to [0, 1]; the copy has its own latency and its own
// payload slice. A duplicated request is served twice; the second reply is
// ignored.
func (n *Network) SetDuplicateRate(p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.dupRate = clampRate(p)
}

// SetReorder decides whether messages between two nodes may overtake each
// other. When off (the default), each ordered pair is FIFO whatever the
// latency jitter; when on, each message's own latency decides, so reordering
// needs SetLatency with min < max.
func (n *Network) SetReorder(on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.reorder = on
}

// SetQueueSize bounds the messages in flight from one node to another
// (default DefaultQueueSize); beyond it Send and Call fail with
// transport.ErrQueueFull.
func (n *Network) SetQueueSize(size int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.queueSize = max(size, 1)
}

func clampRate(p float64) float64 {
	if !(p > 0) { // NaN too
		return 0
	}
	return min(p, 1)
}

func clampDur(d time.Duration) time.Duration { return max(d, 0) }

func (n *Network) reachableLocked(from, to transport.NodeID) bool {
	if from == to {
		return true
	}
	if n.mu.isolated[from] || n.mu.isolated[to] || n.mu.blocked[pair{from, to}] {
		return false
	}
	sf, okf := n.mu.side[from]
	st, okt := n.mu.side[to]
	return !okf || !okt || sf == st
}

func (n *Network) chanceLocked(p float64) bool {
	return p > 0 && n.mu.rng.Float64() < p
}

// scheduleLocked gives m its due time and puts it in flight.
func (n *Network) scheduleLocked(m *message) {
	lat := n.mu.latMin
	if d := n.mu.latMax - n.mu.latMin; d > 0 {
		lat += time.Duration(n.mu.rng.Int64N(int64(d) + 1))
	}
	m.due = time.Now().Add(lat)
	p := pair{m.from, m.to}
	if !n.mu.reorder {
		if last := n.mu.lastDue[p]; m.due.Before(last) {
			m.due = last
		}
		n.mu.lastDue[p] = m.due
	}
	n.mu.seq++
	m.seq = n.mu.seq
	heap.Push(&n.mu.queue, m)
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// sendLocked puts a one-way message or request that passed the checks in
// flight, through the drop and duplicate faults. It takes a queue slot.
func (n *Network) sendLocked(m *message) {
	n.stats.sent.Add(1)
	if n.chanceLocked(n.mu.dropRate) {
		n.stats.dropped.Add(1)
		return
	}
	m.slot = true
	n.mu.inflight[pair{m.from, m.to}]++
	n.scheduleLocked(m)
	if n.chanceLocked(n.mu.dupRate) {
		n.stats.duplicated.Add(1)
		dup := *m
		dup.slot = false // copies do not count against the bound: at most one per message
		dup.payload = bytes.Clone(m.payload)
		n.scheduleLocked(&dup)
	}
}

// release frees m's queue slot once m has left the network.
func (n *Network) release(m *message) {
	if !m.slot {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.releaseLocked(m)
}

func (n *Network) releaseLocked(m *message) {
	if !m.slot {
		return
	}
	m.slot = false
	p := pair{m.from, m.to}
	if n.mu.inflight[p]--; n.mu.inflight[p] <= 0 {
		delete(n.mu.inflight, p)
	}
}

// run is the scheduler: it hands each message over when it is due.
func (n *Network) run() {
	defer n.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var ready []*message
	for {
		var next time.Time
		ready, next = n.popDue(ready[:0], time.Now())
		for i, m := range ready {
			n.dispatch(m)
			ready[i] = nil
		}
		if len(ready) > 0 {
			continue // time has passed: more may be due
		}
		var fire <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			fire = timer.C
		}
		select {
		case <-fire:
		case <-n.wake:
			timer.Stop()
		case <-n.ctx.Done():
			return
		}
	}
}

// popDue removes the messages due at now, in due order, and returns the due
// time of the next one (zero if none).
func (n *Network) popDue(ready []*message, now time.Time) ([]*message, time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for len(n.mu.queue) > 0 && !n.mu.queue[0].due.After(now) {
		ready = append(ready, heap.Pop(&n.mu.queue).(*message))
	}
	if len(n.mu.queue) > 0 {
		return ready, n.mu.queue[0].due
	}
	return ready, time.Time{}
}

// dispatch hands a due message to its destination, unless a fault that
// started while it was in flight stops it.
func (n *Network) dispatch(m *message) {
	n.mu.Lock()
	ok := n.reachableLocked(m.from, m.to)
	var c *call
	if ok && m.typ == typeReply {
		if c = n.mu.calls[m.call.id]; c != nil {
			delete(n.mu.calls, c.id)
		}
	}
	if !ok {
		n.stats.blocked.Add(1)
		n.releaseLocked(m)
	}
	n.mu.Unlock()
	switch {
	case !ok:
	case m.typ == typeReply:
		if c != nil { // else the caller gave up, or is gone
			n.stats.delivered.Add(1)
			c.caller.countReceived(m.from, len(m.payload))
			c.done <- result{payload: m.payload, err: m.err}
		}
	case !m.dest.enqueue(m):
		n.lost(m)
	}
}

// lost accounts for a message whose destination has closed.
func (n *Network) lost(m *message) {
	n.stats.lost.Add(1)
	n.release(m)
}

// detach removes a closing endpoint: its queued messages are lost, its own
// Calls fail with ErrClosed, Calls waiting on it fail as unreachable.
func (n *Network) detach(e *Endpoint, inbox []*message) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.live[e.id] == e {
		delete(n.mu.live, e.id)
	}
	for _, m := range inbox {
		n.stats.lost.Add(1)
		n.releaseLocked(m)
	}
	for id, c := range n.mu.calls {
		switch {
		case c.caller == e:
			delete(n.mu.calls, id)
			c.done <- result{err: closedError(c.to)}
		case c.dest == e:
			delete(n.mu.calls, id)
			c.done <- result{err: transport.LostError(c.to, errConnLost)}
		}
	}
}

var (
	errDown     = errors.New("simnet: node is down (connection refused)")
	errCutOff   = errors.New("simnet: partitioned or blocked (connection refused)")
	errConnLost = errors.New("simnet: node closed (connection lost)")
)
