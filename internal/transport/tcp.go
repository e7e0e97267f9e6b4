package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// TCP is a node's Endpoint on a real network. It listens for peers' inbound
// connections and keeps one outbound connection per peer it sends to.
//
// Goroutines, all owned by the TCP and waited for by Close:
//   - the accept loop;
//   - per inbound connection, a reader (handshake, Deliver, starting Serve
//     calls), a reply writer, and up to MaxServe Serve goroutines;
//   - per peer, a writer that dials, owns the outbound connection and writes
//     batches, and, while connected, a reader of call replies.
type TCP struct {
	cfg    TCPConfig
	log    *slog.Logger
	ln     net.Listener
	ctx    context.Context // ends at Close; every goroutine watches it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	handlers [256]atomic.Pointer[handlerRef]

	mu struct {
		sync.RWMutex
		closed   bool
		peers    map[NodeID]*peer     // outbound side, created on first use
		counters map[NodeID]*counters // both directions, by peer
	}
}

var _ Endpoint = (*TCP)(nil)

type handlerRef struct{ h Handler }

// NewTCP listens on cfg.ListenAddr and starts accepting peers. Close stops
// it.
func NewTCP(cfg TCPConfig) (*TCP, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lc := net.ListenConfig{KeepAliveConfig: keepAlive}
	ln, err := lc.Listen(context.Background(), "tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("transport: node %d: %w", cfg.ID, err)
	}
	t := &TCP{cfg: cfg, ln: ln, log: cfg.Logger.With("node", cfg.ID)}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.mu.peers = make(map[NodeID]*peer)
	t.mu.counters = make(map[NodeID]*counters)
	t.wg.Add(1)
	go t.acceptLoop()
	return t, nil
}

// ID returns the node's id.
func (t *TCP) ID() NodeID { return t.cfg.ID }

// Addr returns the address the endpoint listens on.
func (t *TCP) Addr() net.Addr { return t.ln.Addr() }

// Handle registers h for kind, replacing any earlier handler; a nil h
// unregisters. It is safe to call at any time.
func (t *TCP) Handle(kind Kind, h Handler) {
	if h == nil {
		t.handlers[kind].Store(nil)
		return
	}
	t.handlers[kind].Store(&handlerRef{h})
}

func (t *TCP) handler(kind Kind) Handler {
	if r := t.handlers[kind].Load(); r != nil {
		return r.h
	}
	return nil
}

// Send queues a one-way message to node to and returns at once; see
// Endpoint.
func (t *TCP) Send(to NodeID, kind Kind, payload []byte) error {
	f := frame{kind: kind, typ: typeOneWay, payload: payload}
	if f.bodyLen() > t.cfg.MaxFrame {
		return fmt.Errorf("send %d bytes to node %d: %w", len(payload), to, ErrFrameTooLarge)
	}
	p, err := t.peerFor(to)
	if err != nil {
		return fmt.Errorf("send to node %d: %w", to, err)
	}
	p.mu.Lock()
	switch {
	case p.mu.stopped:
		err = ErrClosed
	case len(p.mu.queue) >= t.cfg.QueueSize:
		err = ErrQueueFull
	default:
		p.mu.queue = append(p.mu.queue, outMsg{kind: kind, payload: payload, at: time.Now()})
	}
	p.mu.Unlock()
	if err != nil {
		if err == ErrQueueFull {
			p.c.droppedQueueFull.Add(1)
		}
		return fmt.Errorf("send to node %d: %w", to, err)
	}
	p.signal()
	return nil
}

// Call sends a request to node to and waits for the reply; see Endpoint.
// While the peer is known to be down (the last connection attempt failed and
// the retry backoff has not run out), Call fails at once with ErrUnreachable
// instead of waiting for the next attempt.
func (t *TCP) Call(ctx context.Context, to NodeID, kind Kind, payload []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, TimeoutError(to, err)
	}
	// The largest header a request can have: the check must not depend on
	// the call id or the time left.
	f := frame{kind: kind, typ: typeRequest, callID: 1 << 63, deadlineMS: maxDeadlineMS, payload: payload}
	if f.bodyLen() > t.cfg.MaxFrame {
		return nil, fmt.Errorf("call node %d with %d bytes: %w", to, len(payload), ErrFrameTooLarge)
	}
	p, err := t.peerFor(to)
	if err != nil {
		return nil, fmt.Errorf("call node %d: %w", to, err)
	}
	c := &call{id: p.nextCall.Add(1), done: make(chan callResult, 1)}
	c.deadline, _ = ctx.Deadline()

	p.mu.Lock()
	switch {
	case p.mu.stopped:
		err = fmt.Errorf("call node %d: %w", to, ErrClosed)
	case time.Now().Before(p.mu.downUntil):
		p.mu.wantDial = true // so the writer tries again when the backoff ends
		err = UnreachableError(to, p.mu.downErr)
	case len(p.mu.queue) >= t.cfg.QueueSize:
		p.c.droppedQueueFull.Add(1)
		err = fmt.Errorf("call node %d: %w", to, ErrQueueFull)
	default:
		p.mu.pending[c.id] = c
		p.mu.queue = append(p.mu.queue, outMsg{kind: kind, payload: payload, at: time.Now(), call: c})
	}
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	p.signal()

	select {
	case r := <-c.done:
		return r.payload, r.err
	case <-ctx.Done():
		p.mu.Lock()
		delete(p.mu.pending, c.id)
		p.mu.Unlock()
		select {
		case r := <-c.done: // the reply won the race
			return r.payload, r.err
		default:
		}
		return nil, TimeoutError(to, ctx.Err())
	}
}

// Close stops the endpoint: it stops listening, closes every connection,
// fails pending Calls with ErrClosed and waits for all its goroutines. It
// must not be called from a Handler. Calling it again does nothing.
func (t *TCP) Close() error {
	t.mu.Lock()
	if t.mu.closed {
		t.mu.Unlock()
		return nil
	}
	t.mu.closed = true
	t.mu.Unlock()
	t.cancel()
	err := t.ln.Close()
	t.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("transport: close node %d: %w", t.cfg.ID, err)
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (t *TCP) Stats() Stats {
	t.mu.RLock()
	s := Stats{Peers: make(map[NodeID]Counters, len(t.mu.counters))}
	for id, c := range t.mu.counters {
		s.Peers[id] = c.snapshot()
	}
	t.mu.RUnlock()
	for _, c := range s.Peers {
		s.Add(c)
	}
	return s
}

// peerFor returns the outbound side of node to, starting its writer on first
// use.
func (t *TCP) peerFor(to NodeID) (*peer, error) {
	t.mu.RLock()
	p, closed := t.mu.peers[to], t.mu.closed
	t.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if p != nil {
		return p, nil
	}
	if _, ok := t.cfg.Resolve(to); !ok { // outside the lock: Resolve is the caller's code
		return nil, ErrUnknownPeer
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return nil, ErrClosed
	}
	if p := t.mu.peers[to]; p != nil {
		return p, nil
	}
	p = &peer{t: t, id: to, c: t.countersLocked(to), wake: make(chan struct{}, 1)}
	p.mu.pending = make(map[uint64]*call)
	t.mu.peers[to] = p
	t.wg.Add(1)
	go p.run()
	return p, nil
}

func (t *TCP) countersFor(id NodeID) *counters {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.countersLocked(id)
}

func (t *TCP) countersLocked(id NodeID) *counters {
	c := t.mu.counters[id]
	if c == nil {
		c = new(counters)
		t.mu.counters[id] = c
	}
	return c
}

// counters are one peer's Counters, updated without locks.
type counters struct {
	messagesSent, bytesSent         atomic.Uint64
	messagesReceived, bytesReceived atomic.Uint64
	droppedQueueFull                atomic.Uint64
	droppedExpired                  atomic.Uint64
	droppedNoHandler                atomic.Uint64
	reconnects, dialFailures        atomic.Uint64
}

func (c *counters) snapshot() Counters {
	return Counters{
		MessagesSent:     c.messagesSent.Load(),
		BytesSent:        c.bytesSent.Load(),
		MessagesReceived: c.messagesReceived.Load(),
		BytesReceived:    c.bytesReceived.Load(),
		DroppedQueueFull: c.droppedQueueFull.Load(),
		DroppedExpired:   c.droppedExpired.Load(),
		DroppedNoHandler: c.droppedNoHandler.Load(),
		Reconnects:       c.reconnects.Load(),
		DialFailures:     c.dialFailures.Load(),
	}
}

// keepAlive detects a dead peer on an idle connection within about 11 s
// (instead of Linux's default of more than two hours).
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 3}

// errRefused reports a handshake the other side (or this side) refused.
var errRefused = errors.New("transport: handshake refused")

// dial connects to node to at its current address and completes the
// handshake. The returned reader holds whatever followed the ack.
func (t *TCP) dial(ctx context.Context, to NodeID) (net.Conn, *bufio.Reader, error) {
	addr, ok := t.cfg.Resolve(to)
	if !ok {
		return nil, nil, ErrUnknownPeer
	}
	d := net.Dialer{Timeout: t.cfg.DialTimeout, KeepAliveConfig: keepAlive}
	if t.cfg.SourceIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(t.cfg.SourceIP)}
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	setUserTimeout(conn, t.cfg.WriteTimeout)
	// Close interrupts the handshake; the deadline bounds a silent peer.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	br, err := t.handshake(conn, to)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("handshake with %s: %w", addr, err)
	}
	return conn, br, nil
}

func (t *TCP) handshake(conn net.Conn, to NodeID) (*bufio.Reader, error) {
	if err := conn.SetDeadline(time.Now().Add(t.cfg.DialTimeout)); err != nil {
		return nil, err
	}
	h := hello{from: t.cfg.ID, to: to, cluster: t.cfg.ClusterID}
	if _, err := conn.Write(h.append(nil)); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	body, err := readFrame(br, maxHandshake)
	if err != nil {
		return nil, err
	}
	a, err := decodeAck(body)
	switch {
	case err != nil:
		return nil, err
	case !a.ok:
		return nil, fmt.Errorf("%w by node %d: %s", errRefused, a.node, a.reason)
	case a.node != to:
		return nil, fmt.Errorf("%w: address of node %d reached node %d", errRefused, to, a.node)
	}
	return br, conn.SetDeadline(time.Time{})
}

// acceptLoop accepts inbound connections until the listener closes.
func (t *TCP) acceptLoop() {
	defer t.wg.Done()
	var backoff time.Duration
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || t.ctx.Err() != nil {
				return
			}
			// Out of file descriptors and the like: wait, do not spin.
			backoff = nextBackoff(backoff, 5*time.Millisecond)
			t.log.Warn("transport: accept failed", "err", err, "retry_in", backoff)
			if !sleepCtx(t.ctx, backoff) {
				return
			}
			continue
		}
		backoff = 0
		setUserTimeout(conn, t.cfg.WriteTimeout)
		t.mu.Lock()
		if t.mu.closed {
			t.mu.Unlock()
			conn.Close()
			return
		}
		t.wg.Add(1)
		t.mu.Unlock()
		go t.serveInbound(conn)
	}
}

// reply is a Serve result on its way to the reply writer.
type reply struct {
	kind    Kind
	callID  uint64
	payload []byte
	err     error
}

// serveInbound runs one inbound connection: handshake, then frames until the
// connection fails or the endpoint closes.
func (t *TCP) serveInbound(conn net.Conn) {
	defer t.wg.Done()
	ctx, cancel := context.WithCancel(t.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()

	remote := conn.RemoteAddr().String()
	br := bufio.NewReaderSize(conn, 64<<10)
	from, err := t.accept(conn, br)
	if err != nil {
		if ctx.Err() == nil {
			level := slog.LevelWarn
			if errors.Is(err, errRefused) {
				level = slog.LevelError // a misconfigured peer: someone must act
			}
			t.log.Log(ctx, level, "transport: refused inbound connection", "remote", remote, "err", err)
		}
		return
	}
	c := t.countersFor(from)

	var wg sync.WaitGroup
	replies := make(chan reply, t.cfg.MaxServe)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := t.writeReplies(ctx, conn, replies, c); err != nil {
			conn.Close() // the reader sees it and ends the connection
		}
	}()
	err = t.readRequests(ctx, br, from, c, replies, &wg)
	cancel()
	conn.Close()
	wg.Wait()
	if t.ctx.Err() == nil { // not closing
		if errors.Is(err, errMalformed) || errors.Is(err, ErrFrameTooLarge) {
			t.log.Warn("transport: dropped connection after a bad frame", "peer", from, "remote", remote, "err", err)
		} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			t.log.Debug("transport: inbound connection ended", "peer", from, "remote", remote, "err", err)
		}
	}
}

// accept reads and checks the hello, and answers it.
func (t *TCP) accept(conn net.Conn, br *bufio.Reader) (NodeID, error) {
	if err := conn.SetDeadline(time.Now().Add(t.cfg.DialTimeout)); err != nil {
		return 0, err
	}
	body, err := readFrame(br, maxHandshake)
	if err != nil {
		return 0, err
	}
	h, err := decodeHello(body)
	if errors.Is(err, errMalformed) {
		return 0, err // not our protocol: no answer
	}
	reason := ""
	switch {
	case err != nil:
		reason = err.Error()
	case h.cluster != t.cfg.ClusterID:
		reason = fmt.Sprintf("cluster id %q, want %q", h.cluster, t.cfg.ClusterID)
	case h.from == 0:
		reason = "sender id is zero"
	case h.to != 0 && h.to != t.cfg.ID:
		reason = fmt.Sprintf("this is node %d, not %d", t.cfg.ID, h.to)
	}
	a := ack{ok: reason == "", node: t.cfg.ID, reason: reason}
	_, werr := conn.Write(a.append(nil))
	if reason != "" {
		return 0, fmt.Errorf("%w: node %d: %s", errRefused, h.from, reason)
	}
	if werr != nil {
		return 0, werr
	}
	return h.from, conn.SetDeadline(time.Time{})
}

// maxDeadlineMS caps a request's deadline so the conversion to a Duration
// cannot overflow.
const maxDeadlineMS = 1 << 40

// readRequests reads the dialer's frames: one-way messages are delivered in
// order on this goroutine, requests are served by goroutines added to wg.
func (t *TCP) readRequests(ctx context.Context, br *bufio.Reader, from NodeID, c *counters, replies chan<- reply, wg *sync.WaitGroup) error {
	sem := make(chan struct{}, t.cfg.MaxServe)
	for {
		body, err := readFrame(br, t.cfg.MaxFrame)
		if err != nil {
			return err
		}
		f, err := decodeFrame(body)
		if err != nil {
			return err
		}
		c.messagesReceived.Add(1)
		c.bytesReceived.Add(uint64(len(f.payload)))
		switch f.typ {
		case typeOneWay:
			if h := t.handler(f.kind); h != nil {
				h.Deliver(from, f.kind, f.payload)
			} else {
				c.droppedNoHandler.Add(1)
			}
		case typeRequest:
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				r := t.serve(ctx, from, f, c)
				select {
				case replies <- r:
				case <-ctx.Done():
				}
			}()
		default:
			return fmt.Errorf("%w: a reply sent by the dialing side", errMalformed)
		}
	}
}

func (t *TCP) serve(ctx context.Context, from NodeID, f frame, c *counters) reply {
	r := reply{kind: f.kind, callID: f.callID}
	h := t.handler(f.kind)
	if h == nil {
		c.droppedNoHandler.Add(1)
		r.err = kv.Errorf(kv.CodeUnavailable, "node %d has no handler for %v calls", t.cfg.ID, f.kind)
		return r
	}
	if f.deadlineMS > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(min(f.deadlineMS, maxDeadlineMS))*time.Millisecond)
		defer cancel()
	}
	r.payload, r.err = h.Serve(ctx, from, f.kind, f.payload)
	return r
}

// writeReplies writes Serve results, as many per flush as are ready.
func (t *TCP) writeReplies(ctx context.Context, conn net.Conn, replies <-chan reply, c *counters) error {
	bw := bufio.NewWriterSize(conn, 32<<10)
	var hdr []byte
	for {
		var r reply
		select {
		case r = <-replies:
		case <-ctx.Done():
			return nil
		}
		n, bytes := 0, 0
		for more := true; more; {
			f := t.replyFrame(r)
			hdr = f.appendHeader(hdr[:0])
			bw.Write(hdr) // errors are sticky: Flush reports them
			bw.Write(f.payload)
			n++
			bytes += len(f.payload)
			select {
			case r = <-replies:
			default:
				more = false
			}
		}
		if err := conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout)); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		c.messagesSent.Add(uint64(n))
		c.bytesSent.Add(uint64(bytes))
	}
}

func (t *TCP) replyFrame(r reply) frame {
	f := frame{kind: r.kind, typ: typeReply, callID: r.callID, payload: r.payload}
	err := r.err
	if err == nil && f.bodyLen() > t.cfg.MaxFrame {
		err = fmt.Errorf("reply of %d bytes: %w", len(r.payload), ErrFrameTooLarge)
	}
	if err != nil {
		ke := ReplyError(err)
		f.isErr, f.code, f.msg, f.payload = true, string(ke.Code), ke.Message, nil
	}
	return f
}

// nextBackoff doubles b, from first up to one second.
func nextBackoff(b, first time.Duration) time.Duration {
	const limit = time.Second
	if b == 0 {
		return first
	}
	return min(2*b, limit)
}

// jitter returns a duration in [b/2, b], so peers that lost a node at the
// same moment do not redial in lockstep.
func jitter(b time.Duration) time.Duration {
	return b/2 + rand.N(b/2+1)
}

// sleepCtx waits for d or the end of ctx; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
