package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// peer is the outbound side of one peer: a bounded queue, the Calls waiting
// for replies, and the writer goroutine (run) that dials, owns the connection
// and writes batches. Senders only append to the queue and wake the writer.
type peer struct {
	t        *TCP
	id       NodeID
	c        *counters
	wake     chan struct{} // capacity 1: "the queue may have grown"
	nextCall atomic.Uint64

	mu struct {
		sync.Mutex
		queue         []outMsg
		pending       map[uint64]*call // Calls waiting for a reply, by id
		gen           uint64           // the current or last connection; 0 = none yet
		connected     bool
		everConnected bool
		downUntil     time.Time // after a failed dial: Calls fail fast until then
		downErr       error     // why the last dial failed
		wantDial      bool      // a Call failed fast: dial when the backoff ends
		stopped       bool      // the writer has exited; nothing is accepted
	}
}

// outMsg is a queued one-way message or call request.
type outMsg struct {
	kind    Kind
	skip    bool // a request whose caller has gone
	payload []byte
	at      time.Time // when queued, for MessageTTL
	call    *call     // nil for one-way messages
}

type call struct {
	id       uint64
	deadline time.Time       // zero: none
	gen      uint64          // connection the request was written on, 0 = not yet; under peer.mu
	done     chan callResult // capacity 1; sent to once, by whoever removes the call from pending
}

type callResult struct {
	payload []byte
	err     error
}

func (p *peer) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run is the writer goroutine: it connects when there is something to send,
// writes until the connection fails, and reconnects with backoff.
func (p *peer) run() {
	defer p.t.wg.Done()
	defer p.stop()
	ctx := p.t.ctx
	log := p.t.log.With("peer", p.id)
	var backoff time.Duration
	failing := false
	for {
		if !p.awaitWork(ctx) {
			return
		}
		conn, br, err := p.t.dial(ctx, p.id)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.c.dialFailures.Add(1)
			backoff = nextBackoff(backoff, 10*time.Millisecond)
			wait := jitter(backoff)
			switch {
			case errors.Is(err, errRefused):
				log.Error("transport: peer refused the connection", "err", err)
			case !failing:
				log.Warn("transport: cannot reach peer", "err", err)
			default:
				log.Debug("transport: cannot reach peer", "err", err, "retry_in", wait)
			}
			failing = true
			p.dialFailed(err, wait)
			if !sleepCtx(ctx, wait) {
				return
			}
			continue
		}
		if failing {
			log.Info("transport: reconnected to peer")
		}
		failing, backoff = false, 0
		err = p.runConn(ctx, conn, br)
		if ctx.Err() == nil {
			log.Warn("transport: lost connection to peer", "err", err)
		}
	}
}

// awaitWork waits until something is queued or a Call asked for a dial.
func (p *peer) awaitWork(ctx context.Context) bool {
	for {
		p.mu.Lock()
		work := len(p.mu.queue) > 0 || p.mu.wantDial
		p.mu.wantDial = false
		p.mu.Unlock()
		if work {
			return true
		}
		select {
		case <-p.wake:
		case <-ctx.Done():
			return false
		}
	}
}

// dialFailed fails the waiting Calls, drops expired messages and marks the
// peer down until the next attempt. One-way messages stay queued.
func (p *peer) dialFailed(err error, wait time.Duration) {
	now := time.Now()
	expired := 0
	p.mu.Lock()
	p.mu.downUntil = now.Add(wait)
	p.mu.downErr = err
	for id, c := range p.mu.pending { // none is on a connection: all wait for this dial
		delete(p.mu.pending, id)
		c.done <- callResult{err: UnreachableError(p.id, err)}
	}
	q := p.mu.queue[:0]
	for _, m := range p.mu.queue {
		switch {
		case m.call != nil:
		case now.Sub(m.at) > p.t.cfg.MessageTTL:
			expired++
		default:
			q = append(q, m)
		}
	}
	clear(p.mu.queue[len(q):])
	p.mu.queue = q
	p.mu.Unlock()
	p.c.droppedExpired.Add(uint64(expired))
}

// runConn writes batches on conn until it fails or the endpoint closes; a
// second goroutine, waited for here, reads the replies.
func (p *peer) runConn(ctx context.Context, conn net.Conn, br *bufio.Reader) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	p.mu.Lock()
	p.mu.gen++
	gen := p.mu.gen
	again := p.mu.everConnected
	p.mu.connected, p.mu.everConnected = true, true
	p.mu.downUntil, p.mu.downErr = time.Time{}, nil
	p.mu.Unlock()
	if again {
		p.c.reconnects.Add(1)
	}

	readErr := make(chan error, 1)
	go func() {
		err := p.readReplies(br, gen)
		conn.Close() // unblocks a write stuck on a dead connection
		readErr <- err
	}()

	bw := bufio.NewWriterSize(conn, 64<<10)
	hdr := make([]byte, 0, 32)
	var spare []outMsg
	var err error
	readDone := false
	for err == nil {
		batch := p.take(spare, gen)
		if len(batch) == 0 {
			spare = batch
			select {
			case <-p.wake:
			case err = <-readErr:
				readDone = true
			case <-ctx.Done():
				err = ctx.Err()
			}
			continue
		}
		err = p.writeBatch(conn, bw, hdr, batch)
		clear(batch) // drop the payloads
		spare = batch[:0]
	}
	conn.Close()
	if !readDone {
		<-readErr
	}
	p.connLost(gen, err)
	return err
}

// take swaps the queue for spare and returns what was queued, marking the
// call requests in it as sent on connection gen.
func (p *peer) take(spare []outMsg, gen uint64) []outMsg {
	p.mu.Lock()
	defer p.mu.Unlock()
	batch := p.mu.queue
	p.mu.queue = spare[:0]
	for i := range batch {
		m := &batch[i]
		if m.call == nil {
			continue
		}
		if _, ok := p.mu.pending[m.call.id]; ok {
			m.call.gen = gen
		} else {
			m.skip = true
		}
	}
	return batch
}

// writeBatch encodes batch and writes it with one flush.
func (p *peer) writeBatch(conn net.Conn, bw *bufio.Writer, hdr []byte, batch []outMsg) error {
	now := time.Now()
	if err := conn.SetWriteDeadline(now.Add(p.t.cfg.WriteTimeout)); err != nil {
		return err
	}
	n, bytes, expired := 0, 0, 0
	for i := range batch {
		m := &batch[i]
		if m.skip {
			continue
		}
		f := frame{kind: m.kind, payload: m.payload}
		if m.call == nil {
			if now.Sub(m.at) > p.t.cfg.MessageTTL {
				expired++
				continue
			}
		} else {
			f.typ, f.callID = typeRequest, m.call.id
			if !m.call.deadline.IsZero() {
				left := m.call.deadline.Sub(now)
				if left <= 0 {
					expired++ // the caller is timing out already
					continue
				}
				f.deadlineMS = min(uint64((left+time.Millisecond-1)/time.Millisecond), maxDeadlineMS)
			}
		}
		hdr = f.appendHeader(hdr[:0])
		bw.Write(hdr) // errors are sticky: Flush reports them
		bw.Write(m.payload)
		n++
		bytes += len(m.payload)
	}
	if expired > 0 {
		p.c.droppedExpired.Add(uint64(expired))
	}
	if n == 0 {
		return nil
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	p.c.messagesSent.Add(uint64(n))
	p.c.bytesSent.Add(uint64(bytes))
	return nil
}

// readReplies reads call replies from connection gen and hands them to the
// waiting Calls.
func (p *peer) readReplies(br *bufio.Reader, gen uint64) error {
	for {
		body, err := readFrame(br, p.t.cfg.MaxFrame)
		if err != nil {
			return err
		}
		f, err := decodeFrame(body)
		if err != nil {
			return err
		}
		if f.typ != typeReply {
			return fmt.Errorf("%w: frame type %d from the listening side", errMalformed, f.typ)
		}
		p.c.messagesReceived.Add(1)
		p.c.bytesReceived.Add(uint64(len(f.payload)))
		p.mu.Lock()
		c := p.mu.pending[f.callID]
		if c != nil && c.gen == gen {
			delete(p.mu.pending, f.callID)
		} else {
			c = nil // the caller gave up
		}
		p.mu.Unlock()
		if c == nil {
			continue
		}
		r := callResult{payload: f.payload}
		if f.isErr {
			code := kv.Code(f.code)
			if code == "" {
				code = kv.CodeInternal
			}
			r.payload, r.err = nil, &kv.Error{Code: code, Message: f.msg}
		}
		c.done <- r
	}
}

// connLost fails the Calls whose requests went out on connection gen: their
// outcome is unknown, and no reply can come any more.
func (p *peer) connLost(gen uint64, cause error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.connected = false
	if p.t.ctx.Err() != nil {
		return // closing: stop fails them with ErrClosed
	}
	for id, c := range p.mu.pending {
		if c.gen == gen {
			delete(p.mu.pending, id)
			c.done <- callResult{err: LostError(p.id, cause)}
		}
	}
}

// stop runs when the writer exits (the endpoint is closing).
func (p *peer) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.stopped = true
	for id, c := range p.mu.pending {
		delete(p.mu.pending, id)
		c.done <- callResult{err: fmt.Errorf("call node %d: %w", p.id, ErrClosed)}
	}
	p.mu.queue = nil
}

// state reports the queue length and whether a connection is up.
func (p *peer) state() (queued int, connected bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.mu.queue), p.mu.connected
}
