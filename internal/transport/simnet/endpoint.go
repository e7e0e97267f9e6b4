package simnet

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// Endpoint is one node's attachment to a Network.
//
// Goroutines: a deliverer that hands the node's due messages to its handlers
// in order, and one per Call being served. Close waits for all of them.
type Endpoint struct {
	n      *Network
	id     transport.NodeID
	ctx    context.Context // ends at Close: Serve contexts derive from it
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{} // capacity 1: the inbox grew
	closed atomic.Bool   // set under mu

	handlers [256]atomic.Pointer[handlerRef]

	mu struct {
		sync.Mutex
		inbox []*message // due, waiting for the deliverer
	}
	stats struct { // a leaf lock: nothing is locked while it is held
		sync.Mutex
		peers map[transport.NodeID]*transport.Counters
	}
}

var _ transport.Endpoint = (*Endpoint)(nil)

type handlerRef struct{ h transport.Handler }

type msgType uint8

const (
	typeOneWay msgType = iota
	typeRequest
	typeReply
)

// message is a one-way message, call request or call reply in flight.
type message struct {
	due     time.Time
	seq     uint64
	typ     msgType
	from    transport.NodeID
	to      transport.NodeID
	dest    *Endpoint // the incarnation addressed; nil for replies
	kind    transport.Kind
	payload []byte
	call    *call // requests and replies
	err     error // replies
	slot    bool  // holds a queue slot of (from, to)
}

type call struct {
	id       uint64
	caller   *Endpoint
	dest     *Endpoint
	to       transport.NodeID
	deadline time.Time // zero: none
	done     chan result
}

type result struct {
	payload []byte
	err     error
}

// ID returns the node's id.
func (e *Endpoint) ID() transport.NodeID { return e.id }

// Handle registers h for kind, replacing any earlier handler; nil
// unregisters.
func (e *Endpoint) Handle(kind transport.Kind, h transport.Handler) {
	if h == nil {
		e.handlers[kind].Store(nil)
		return
	}
	e.handlers[kind].Store(&handlerRef{h})
}

func (e *Endpoint) handler(kind transport.Kind) transport.Handler {
	if r := e.handlers[kind].Load(); r != nil {
		return r.h
	}
	return nil
}

// Send puts a one-way message in flight and returns at once. A message to a
// closed node, across a partition or block, or dropped by the drop rate is
// lost silently, as on a real network. Errors: ErrClosed, ErrQueueFull, and
// ErrUnknownPeer for a node never attached to the network.
func (e *Endpoint) Send(to transport.NodeID, kind transport.Kind, payload []byte) error {
	n := e.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := e.checkLocked(to); err != nil {
		return fmt.Errorf("send to node %d: %w", to, err)
	}
	e.countSent(to, len(payload))
	dest := n.mu.live[to]
	switch {
	case dest == nil:
		n.stats.sent.Add(1)
		n.stats.lost.Add(1)
	case !n.reachableLocked(e.id, to):
		n.stats.sent.Add(1)
		n.stats.blocked.Add(1)
	default:
		n.sendLocked(&message{typ: typeOneWay, from: e.id, to: to, dest: dest, kind: kind, payload: payload})
	}
	return nil
}

// checkLocked returns the error, if any, that refuses a message to node to
// before it enters the network.
func (e *Endpoint) checkLocked(to transport.NodeID) error {
	n := e.n
	switch {
	case e.closed.Load() || n.mu.closed:
		return transport.ErrClosed
	case !n.mu.known[to]:
		return transport.ErrUnknownPeer
	case n.mu.inflight[pair{e.id, to}] >= n.mu.queueSize:
		n.stats.queueFull.Add(1)
		e.count(to, func(c *transport.Counters) { c.DroppedQueueFull++ })
		return transport.ErrQueueFull
	}
	return nil
}

// Call sends a request and waits for the reply or ctx's end; see
// transport.Endpoint. Faults, as a TCP connection would show them:
//   - destination closed, partitioned away or blocked when the Call starts:
//     fails at once with ErrUnreachable (a refused connection);
//   - destination closed while the Call waits: fails at once with
//     ErrConnectionLost (a lost connection: the request may have been
//     served);
//   - request or reply dropped, or cut off by a fault that started while it
//     was in flight: the Call waits until ctx ends (kv.ErrTimeout).
func (e *Endpoint) Call(ctx context.Context, to transport.NodeID, kind transport.Kind, payload []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, transport.TimeoutError(to, err)
	}
	n := e.n
	c := &call{caller: e, to: to, done: make(chan result, 1)}
	c.deadline, _ = ctx.Deadline()
	err := func() error {
		n.mu.Lock()
		defer n.mu.Unlock()
		if err := e.checkLocked(to); err != nil {
			return fmt.Errorf("call node %d: %w", to, err)
		}
		dest := n.mu.live[to]
		switch {
		case dest == nil:
			n.stats.refused.Add(1)
			return transport.UnreachableError(to, errDown)
		case !n.reachableLocked(e.id, to):
			n.stats.refused.Add(1)
			return transport.UnreachableError(to, errCutOff)
		}
		n.mu.nextCall++
		c.id, c.dest = n.mu.nextCall, dest
		n.mu.calls[c.id] = c
		e.countSent(to, len(payload))
		n.sendLocked(&message{typ: typeRequest, from: e.id, to: to, dest: dest, kind: kind, payload: payload, call: c})
		return nil
	}()
	if err != nil {
		return nil, err
	}
	select {
	case r := <-c.done:
		return r.payload, r.err
	case <-ctx.Done():
		n.mu.Lock()
		delete(n.mu.calls, c.id)
		n.mu.Unlock()
		select {
		case r := <-c.done: // the reply won the race
			return r.payload, r.err
		default:
		}
		return nil, transport.TimeoutError(to, ctx.Err())
	}
}

// Close crashes the node: messages queued for it are lost, its pending Calls
// fail with ErrClosed, Calls waiting on it fail as unreachable, and its
// goroutines are waited for (Serve must return when its ctx ends). It must
// not be called from the endpoint's own handlers. Network.Endpoint then gives
// a fresh endpoint for the same id.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	if e.closed.Load() {
		e.mu.Unlock()
		return nil
	}
	e.closed.Store(true)
	inbox := e.mu.inbox
	e.mu.inbox = nil
	e.mu.Unlock()
	e.cancel()
	e.n.detach(e, inbox)
	e.wg.Wait()
	return nil
}

// Stats returns the endpoint's counters. Messages the network lost still
// count as sent, as bytes written to a socket do.
func (e *Endpoint) Stats() transport.Stats {
	e.stats.Lock()
	defer e.stats.Unlock()
	s := transport.Stats{Peers: make(map[transport.NodeID]transport.Counters, len(e.stats.peers))}
	for id, c := range e.stats.peers {
		s.Peers[id] = *c
		s.Add(*c)
	}
	return s
}

func (e *Endpoint) count(peer transport.NodeID, f func(*transport.Counters)) {
	e.stats.Lock()
	defer e.stats.Unlock()
	c := e.stats.peers[peer]
	if c == nil {
		c = new(transport.Counters)
		e.stats.peers[peer] = c
	}
	f(c)
}

func (e *Endpoint) countSent(peer transport.NodeID, bytes int) {
	e.count(peer, func(c *transport.Counters) { c.MessagesSent++; c.BytesSent += uint64(bytes) })
}

func (e *Endpoint) countReceived(peer transport.NodeID, bytes int) {
	e.count(peer, func(c *transport.Counters) { c.MessagesReceived++; c.BytesReceived += uint64(bytes) })
}

// enqueue hands a due message to the deliverer; false if the endpoint has
// closed.
func (e *Endpoint) enqueue(m *message) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed.Load() {
		return false
	}
	e.mu.inbox = append(e.mu.inbox, m)
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return true
}

// deliverLoop hands due messages to the handlers, in order.
func (e *Endpoint) deliverLoop() {
	defer e.wg.Done()
	for {
		e.mu.Lock()
		batch := e.mu.inbox
		e.mu.inbox = nil
		e.mu.Unlock()
		for i, m := range batch {
			if e.ctx.Err() != nil {
				for _, m := range batch[i:] {
					e.n.lost(m)
				}
				return
			}
			e.handle(m)
			e.n.release(m)
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-e.wake:
		case <-e.ctx.Done():
			return
		}
	}
}

func (e *Endpoint) handle(m *message) {
	e.n.stats.delivered.Add(1)
	e.countReceived(m.from, len(m.payload))
	h := e.handler(m.kind)
	if m.typ == typeOneWay {
		if h == nil {
			e.count(m.from, func(c *transport.Counters) { c.DroppedNoHandler++ })
			return
		}
		h.Deliver(m.from, m.kind, m.payload)
		return
	}
	e.wg.Add(1) // the deliverer is running, so the group is not at zero
	go e.serve(h, m)
}

// serve answers one request and sends the reply back through the faults.
func (e *Endpoint) serve(h transport.Handler, m *message) {
	defer e.wg.Done()
	var payload []byte
	var err error
	if h == nil {
		e.count(m.from, func(c *transport.Counters) { c.DroppedNoHandler++ })
		err = kv.Errorf(kv.CodeUnavailable, "node %d has no handler for %v calls", e.id, m.kind)
	} else {
		ctx := e.ctx
		if !m.call.deadline.IsZero() {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, m.call.deadline)
			defer cancel()
		}
		payload, err = h.Serve(ctx, m.from, m.kind, m.payload)
	}
	if err != nil {
		payload, err = nil, transport.ReplyError(err)
	}
	e.reply(m, payload, err)
}

// reply puts a Serve result in flight back to the caller.
func (e *Endpoint) reply(req *message, payload []byte, err error) {
	n := e.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if e.closed.Load() {
		return // Close failed the Call already
	}
	n.stats.sent.Add(1)
	e.countSent(req.from, len(payload))
	switch {
	case !n.reachableLocked(e.id, req.from):
		n.stats.blocked.Add(1)
	case n.chanceLocked(n.mu.dropRate):
		n.stats.dropped.Add(1)
	default:
		n.scheduleLocked(&message{typ: typeReply, from: e.id, to: req.from, kind: req.kind, payload: payload, err: err, call: req.call})
	}
}

func closedError(to transport.NodeID) error {
	return fmt.Errorf("call node %d: %w", to, transport.ErrClosed)
}
