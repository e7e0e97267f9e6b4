package resp

import (
	"bufio"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// Buffer sizes per connection, as Redis's PROTO_IOBUF_LEN.
const (
	readBufferSize  = 16 << 10
	writeBufferSize = 16 << 10
)

// maxPendingOps bounds the writes merged into one Apply, so a long pipeline
// of writes still gets replies (and memory back) regularly.
const maxPendingOps = 1024

// conn is one client connection. Its fields belong to the connection's
// goroutine, except those under info and the atomics, which CLIENT LIST on
// other connections reads.
type conn struct {
	s  *Server
	nc net.Conn
	id int64

	cc *countingConn
	br *bufio.Reader
	r  *Reader
	w  *bufio.Writer

	proto int    // 2 or 3
	ns    string // namespace of this connection's commands
	// quorum is the connection's W/R override for eventual namespaces
	// (FULCRUM.CONSISTENCY); zero: the namespaces' own.
	quorum kv.Quorum
	// replicaReads (READONLY) lets replicas of replication=primary
	// namespaces answer this connection's reads, within maxStaleness
	// (negative: any lag).
	replicaReads bool
	maxStaleness time.Duration
	lower        [32]byte

	// The command being executed.
	cmd   *command
	start time.Time // when it started (only with metrics)
	// tick is when the previous command ended; a pipelined command starts
	// then, which saves a clock read per command. tickOK is false after a
	// blocking read.
	tick       time.Time
	tickOK     bool
	errCode    string // code of its error reply, "" if none
	queued     bool   // its reply waits for the pending batch
	closeAfter bool   // close once the reply is flushed (QUIT)

	// Writes of consecutive pipelined commands, applied as one batch.
	ops  []kv.Op
	pend []pending

	// Counts published at each flush point.
	nCmds, hits, misses int64
	okCounts            []int64 // by command id
	dirty               []int   // ids with okCounts > 0
	lastIn, lastOut     int64

	created    time.Time
	lastActive atomic.Int64 // unix nanoseconds of the last command
	lastCmd    atomic.Int32 // command id + 1 of the last command

	info struct {
		sync.Mutex
		name, libName, libVer, ns string
		proto                     int
		lastSub                   string // "client|list": the last subcommand run
	}
}

// countingConn counts bytes for INFO and metrics. Only the connection's
// goroutine reads and writes, so plain integers suffice.
type countingConn struct {
	net.Conn
	in, out int64
	// writeTimeout bounds each write, so a client that stops reading its
	// replies cannot hold a connection goroutine (and its buffers) forever.
	writeTimeout time.Duration
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in += int64(n)
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	if c.writeTimeout > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	}
	n, err := c.Conn.Write(p)
	c.out += int64(n)
	return n, err
}

func newConn(s *Server, nc net.Conn, id int64) *conn {
	c := &conn{s: s, nc: nc, id: id, proto: 2, ns: kv.DefaultNamespace, created: time.Now()}
	c.cc = &countingConn{Conn: nc, writeTimeout: s.opts.WriteTimeout}
	c.br = bufio.NewReaderSize(c.cc, readBufferSize)
	c.w = bufio.NewWriterSize(c.cc, writeBufferSize)
	c.r = NewReader(c.br, s.limits)
	c.okCounts = make([]int64, len(s.cmdList))
	c.info.ns = c.ns
	c.info.proto = 2
	c.lastActive.Store(c.created.UnixNano())
	return c
}

// interrupt wakes the connection from a blocking read so that it notices
// the server draining. Safe from any goroutine.
func (c *conn) interrupt() { _ = c.nc.SetReadDeadline(time.Unix(1, 0)) }

// serve runs the connection until the client leaves, the server drains, or
// the stream breaks. It processes every complete request already buffered
// before flushing replies, so a pipeline of N commands costs one write.
func (c *conn) serve() {
	defer c.nc.Close()
	idle := c.s.opts.IdleTimeout
	for {
		if !c.r.Buffered() {
			// About to block: everything answered so far goes out first.
			if !c.flushPoint() || c.closeAfter {
				return
			}
			if idle > 0 {
				_ = c.nc.SetReadDeadline(time.Now().Add(idle))
			}
			if c.s.draining.Load() {
				return
			}
			c.tickOK = false
		} else if len(c.ops) >= maxPendingOps {
			c.applyPending()
		}
		if len(c.pend) == 0 {
			c.r.Release()
		}
		args, err := c.r.ReadCommand()
		if err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) {
				c.applyPending()
				c.put(AppendError(c.w.AvailableBuffer(), pe.Reply))
				c.flushPoint()
				if c.s.met != nil {
					c.s.met.rejectedProtocol.Inc()
				}
				c.s.opts.Logger.Debug("resp: protocol error; closing connection",
					"client", c.id, "addr", c.nc.RemoteAddr().String(), "err", pe.Reply)
				return
			}
			// EOF, a closed or timed-out socket. Whatever was queued is
			// applied and answered if the socket still takes it.
			c.flushPoint()
			return
		}
		if len(args) == 0 {
			continue
		}
		c.exec(args)
		if c.closeAfter {
			c.flushPoint()
			return
		}
	}
}

// flushPoint applies pending writes, flushes replies and publishes the
// counts gathered since the last one. It reports whether the connection is
// still writable.
func (c *conn) flushPoint() bool {
	c.applyPending()
	err := c.w.Flush()
	c.publish()
	return err == nil
}

func (c *conn) publish() {
	s := c.s
	if c.nCmds > 0 {
		s.stats.commands.Add(c.nCmds)
		c.lastActive.Store(time.Now().UnixNano())
		c.nCmds = 0
	}
	if c.hits > 0 {
		s.stats.hits.Add(c.hits)
		c.hits = 0
	}
	if c.misses > 0 {
		s.stats.misses.Add(c.misses)
		c.misses = 0
	}
	in, out := c.cc.in-c.lastIn, c.cc.out-c.lastOut
	c.lastIn, c.lastOut = c.cc.in, c.cc.out
	if in > 0 {
		s.stats.netIn.Add(in)
	}
	if out > 0 {
		s.stats.netOut.Add(out)
	}
	if m := s.met; m != nil {
		if in > 0 {
			m.bytesIn.Add(float64(in))
		}
		if out > 0 {
			m.bytesOut.Add(float64(out))
		}
		for _, id := range c.dirty {
			m.cmds[id].ok.Add(float64(c.okCounts[id]))
			c.okCounts[id] = 0
		}
		c.dirty = c.dirty[:0]
	}
}

// lookup finds the command named by name, case-insensitively, without
// allocating.
func (c *conn) lookup(name []byte) *command {
	if len(name) > len(c.lower) {
		return nil
	}
	for i, ch := range name {
		c.lower[i] = lower(ch)
	}
	return c.s.cmds[string(c.lower[:len(name)])]
}

// exec runs one command.
func (c *conn) exec(args [][]byte) {
	if c.s.met != nil {
		if !c.tickOK {
			c.tick, c.tickOK = time.Now(), true
		}
		c.start = c.tick
	}
	cmd := c.lookup(args[0])
	c.cmd, c.errCode, c.queued = cmd, "", false
	switch {
	case cmd == nil:
		c.writeError(unknownCommand(args))
	case !cmd.arityOK(len(args)):
		c.writeError("ERR wrong number of arguments for '" + cmd.name + "' command")
	default:
		c.lastCmd.Store(int32(cmd.id + 1))
		if !cmd.batch {
			// A command that reads must see the writes queued before it.
			c.applyPending()
		}
		cmd.fn(c, args)
	}
	if !c.queued {
		var now time.Time
		if c.s.met != nil {
			now = time.Now()
			c.tick = now
		}
		c.record(cmd, c.errCode, c.start, now)
	}
}

// record counts a command that started at start and finished at end (both
// zero without metrics).
func (c *conn) record(cmd *command, errCode string, start, end time.Time) {
	c.nCmds++
	m := c.s.met
	if m == nil {
		return
	}
	cm := m.unknown
	if cmd != nil {
		cm = m.cmds[cmd.id]
	}
	if errCode == "" && cmd != nil {
		if c.okCounts[cmd.id] == 0 {
			c.dirty = append(c.dirty, cmd.id)
		}
		c.okCounts[cmd.id]++
	} else if errCode == "" {
		cm.ok.Inc()
	} else {
		cm.errCounter(errCode).Inc()
	}
	cm.latency.Observe(end.Sub(start).Seconds())
}

// pendKind says how to answer a queued write from its results.
type pendKind uint8

const (
	pendOK      pendKind = iota // +OK (MSET, SETEX, PSETEX)
	pendSet                     // +OK if applied, else null (SET [NX|XX])
	pendPrev                    // the previous value or null (SET GET, GETSET, GETDEL, GETEX)
	pendApplied                 // 1 if applied, else 0 (SETNX, EXPIRE*, PERSIST)
	pendCount                   // number of ops applied (DEL, UNLINK)
	pendIncr                    // the new integer (INCR*, DECR*)
	pendIncrFlt                 // the new float as a bulk string (INCRBYFLOAT)
	pendLen                     // length of the new value, 0 if none (APPEND, SETRANGE)
)

// pending is a command whose ops are in c.ops[first:first+n] and whose
// reply waits for them to be applied.
type pending struct {
	cmd   *command
	kind  pendKind
	first int
	n     int
	start time.Time
}

// queue records that the running command's ops are c.ops[first:] and its
// reply comes when they are applied.
// queueOp queues a command that is a single write.
func (c *conn) queueOp(op kv.Op, kind pendKind) {
	first := len(c.ops)
	c.ops = append(c.ops, op)
	c.queue(kind, first)
}

func (c *conn) queue(kind pendKind, first int) {
	c.pend = append(c.pend, pending{cmd: c.cmd, kind: kind, first: first, n: len(c.ops) - first, start: c.start})
	c.queued = true
}

// applyPending applies the queued writes as one batch and writes their
// replies in order.
func (c *conn) applyPending() {
	if len(c.pend) == 0 {
		return
	}
	pend := c.pend
	c.pend = c.pend[:0] // replies below must not re-enter applyPending
	res, err := c.s.opts.Store.Apply(c.reqCtx(), kv.Batch{Ops: c.ops})
	if err == nil && len(res) != len(c.ops) {
		err = kv.Errorf(kv.CodeInternal, "store returned %d results for %d ops", len(res), len(c.ops))
	}
	var now time.Time
	if c.s.met != nil {
		now = time.Now()
		c.tick = now
	}
	for i := range pend {
		p := &pend[i]
		c.errCode = ""
		if err != nil {
			c.writeErr(err)
		} else {
			c.replyPending(p, res[p.first:p.first+p.n])
		}
		c.record(p.cmd, c.errCode, p.start, now)
	}
	clear(pend)
	clear(c.ops)
	c.ops = c.ops[:0]
	c.errCode = ""
}

func (c *conn) replyPending(p *pending, rs []kv.Result) {
	for i := range rs {
		if rs[i].Err != nil {
			c.writeErr(rs[i].Err)
			return
		}
	}
	r := &rs[0]
	switch p.kind {
	case pendOK:
		c.writeOK()
	case pendSet:
		if r.Applied {
			c.writeOK()
		} else {
			c.writeNull()
		}
	case pendPrev:
		if r.PrevExists {
			c.writeBulk(r.Prev.Data)
		} else {
			c.writeNull()
		}
	case pendApplied:
		c.writeInt(b2i(r.Applied))
	case pendCount:
		n := int64(0)
		for i := range rs {
			n += b2i(rs[i].Applied)
		}
		c.writeInt(n)
	case pendIncr:
		// Cur.Data is the decimal text of the new value.
		b := append(c.w.AvailableBuffer(), ':')
		b = append(b, r.Cur.Data...)
		c.put(append(b, '\r', '\n'))
	case pendIncrFlt:
		c.writeBulk(r.Cur.Data)
	case pendLen:
		if r.Exists {
			c.writeInt(int64(len(r.Cur.Data)))
		} else {
			c.writeInt(0)
		}
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Replies. Every writer first applies pending writes, so replies leave in
// command order whichever path produced them.

// buf returns the writer's free space to append one reply to.
func (c *conn) buf() []byte {
	if len(c.pend) > 0 {
		c.applyPending()
	}
	return c.w.AvailableBuffer()
}

// put hands an encoded reply to the writer. A write error surfaces at the
// next Flush, which ends the connection.
func (c *conn) put(b []byte) { _, _ = c.w.Write(b) }

func (c *conn) writeOK() { c.put(append(c.buf(), "+OK\r\n"...)) }

func (c *conn) writeSimple(s string) { c.put(AppendSimple(c.buf(), s)) }

func (c *conn) writeInt(n int64) { c.put(AppendInt(c.buf(), n)) }

// writeError answers with an error; msg begins with its code.
func (c *conn) writeError(msg string) {
	b := c.buf() // may apply queued writes, which resets errCode
	c.errCode = errorCode(msg)
	c.put(AppendError(b, msg))
}

func (c *conn) writeErr(err error) { c.writeError(errorReply(err)) }

func (c *conn) writeBulk(v []byte) {
	b := c.buf()
	if len(v)+32 <= cap(b) {
		c.put(AppendBulk(b, v))
		return
	}
	// Too big to fit: header, then the value straight from its slice.
	c.put(appendHeader(b, '$', len(v)))
	c.put(v)
	_, _ = c.w.WriteString("\r\n")
}

func (c *conn) writeBulkString(s string) {
	b := c.buf()
	if len(s)+32 <= cap(b) {
		c.put(AppendBulkString(b, s))
		return
	}
	c.put(appendHeader(b, '$', len(s)))
	_, _ = c.w.WriteString(s)
	_, _ = c.w.WriteString("\r\n")
}

func (c *conn) writeNull() {
	if c.proto == 3 {
		c.put(AppendNull(c.buf()))
	} else {
		c.put(AppendNullBulk(c.buf()))
	}
}

func (c *conn) writeNullArray() {
	if c.proto == 3 {
		c.put(AppendNull(c.buf()))
	} else {
		c.put(AppendNullArray(c.buf()))
	}
}

func (c *conn) writeArray(n int) { c.put(AppendArray(c.buf(), n)) }

// writeMap starts a map of n pairs; RESP2 gets a flat array of 2n.
func (c *conn) writeMap(n int) {
	if c.proto == 3 {
		c.put(AppendMap(c.buf(), n))
	} else {
		c.put(AppendArray(c.buf(), 2*n))
	}
}

// writeSet starts a set; RESP2 gets an array.
func (c *conn) writeSet(n int) {
	if c.proto == 3 {
		c.put(AppendSet(c.buf(), n))
	} else {
		c.put(AppendArray(c.buf(), n))
	}
}

// writeVerbatim answers with text; RESP3 marks it as verbatim "txt".
func (c *conn) writeVerbatim(text []byte) {
	if c.proto == 3 {
		c.put(AppendVerbatim(c.buf(), "txt", text))
	} else {
		c.writeBulk(text)
	}
}

// now is the expiry clock in Unix milliseconds.
func (c *conn) now() int64 { return c.s.opts.Now().UnixMilli() }

// setNamespace changes the connection's namespace.
func (c *conn) setNamespace(ns string) {
	c.ns = ns
	c.info.Lock()
	c.info.ns = ns
	c.info.Unlock()
}

// checkKey answers TOO_LARGE and returns false when key is over the limit.
func (c *conn) checkKey(key []byte) bool {
	if err := c.s.opts.Limits.CheckKey(key); err != nil {
		c.writeErr(err)
		return false
	}
	return true
}

// checkKeyValue is checkKey plus the value limit.
func (c *conn) checkKeyValue(key []byte, n int) bool {
	if !c.checkKey(key) {
		return false
	}
	if err := c.s.opts.Limits.CheckValue(n); err != nil {
		c.writeErr(err)
		return false
	}
	return true
}

// clientLine renders the connection for CLIENT LIST and CLIENT INFO.
func (c *conn) clientLine(b []byte, now time.Time) []byte {
	c.info.Lock()
	name, libName, libVer, ns, proto, lastSub := c.info.name, c.info.libName, c.info.libVer, c.info.ns, c.info.proto, c.info.lastSub
	c.info.Unlock()
	cmd := "NULL"
	if id := c.lastCmd.Load(); id > 0 {
		cmd = c.s.cmdList[id-1].name
		if strings.HasPrefix(lastSub, cmd+"|") {
			cmd = lastSub
		}
	}
	b = append(b, "id="...)
	b = strconv.AppendInt(b, c.id, 10)
	b = append(b, " addr="...)
	b = append(b, c.nc.RemoteAddr().String()...)
	b = append(b, " laddr="...)
	b = append(b, c.nc.LocalAddr().String()...)
	b = append(b, " name="...)
	b = append(b, name...)
	b = append(b, " age="...)
	b = strconv.AppendInt(b, int64(now.Sub(c.created)/time.Second), 10)
	b = append(b, " idle="...)
	b = strconv.AppendInt(b, int64(now.Sub(time.Unix(0, c.lastActive.Load()))/time.Second), 10)
	b = append(b, " flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 cmd="...)
	b = append(b, cmd...)
	b = append(b, " user=default redir=-1 resp="...)
	b = strconv.AppendInt(b, int64(proto), 10)
	b = append(b, " lib-name="...)
	b = append(b, libName...)
	b = append(b, " lib-ver="...)
	b = append(b, libVer...)
	b = append(b, " ns="...)
	b = append(b, ns...)
	return append(b, '\n')
}
