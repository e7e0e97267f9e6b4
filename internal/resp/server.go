package resp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Server serves the Redis protocol over the listeners given to Serve. Each
// connection is served by one goroutine that the Server starts, owns and
// waits for.
type Server struct {
	opts    Options
	limits  ReaderLimits
	cmds    map[string]*command
	cmdList []*command // sorted by name
	cursors *cursorTable
	met     *serverMetrics // nil without Options.Metrics
	started time.Time
	runID   string

	// ctx is cancelled when connections are force-closed; commands in
	// flight observe it. Graceful shutdown leaves it alone so they finish.
	ctx    context.Context
	cancel context.CancelFunc

	// draining is set when Shutdown or Close begins: connections finish
	// what they have buffered and exit instead of reading more.
	draining atomic.Bool

	// conns counts connection goroutines; Add happens only under mu while
	// !mu.closing, so Wait never races a new Add.
	conns sync.WaitGroup

	mu struct {
		sync.Mutex
		closing   bool
		listeners map[net.Listener]struct{}
		conns     map[*conn]struct{}
	}

	nextID atomic.Int64
	stats  serverStats
}

// serverStats are the counters INFO reports.
type serverStats struct {
	connectionsReceived atomic.Int64
	rejected            atomic.Int64
	commands            atomic.Int64
	netIn               atomic.Int64
	netOut              atomic.Int64
	hits                atomic.Int64
	misses              atomic.Int64
}

func (s *serverStats) reset() {
	s.connectionsReceived.Store(0)
	s.rejected.Store(0)
	s.commands.Store(0)
	s.netIn.Store(0)
	s.netOut.Store(0)
	s.hits.Store(0)
	s.misses.Store(0)
}

// New returns a Server. It validates opts and applies defaults to zero
// fields; the Server keeps its own copy.
func New(opts Options) (*Server, error) {
	if err := opts.applyDefaults(); err != nil {
		return nil, err
	}
	var id [20]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("resp: run id: %w", err)
	}
	s := &Server{
		opts: opts,
		limits: ReaderLimits{
			MaxBulk:    opts.MaxFrameSize,
			MaxArgs:    opts.MaxMultiBulk,
			MaxInline:  opts.MaxInline,
			MaxRequest: opts.MaxRequestSize,
		},
		cursors: newCursorTable(opts.MaxScanCursors, opts.ScanCursorTTL, time.Now),
		started: time.Now(),
		runID:   hex.EncodeToString(id[:]),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.listeners = make(map[net.Listener]struct{})
	s.mu.conns = make(map[*conn]struct{})
	s.cmdList = commandTable()
	s.cmds = make(map[string]*command, len(s.cmdList))
	for i, c := range s.cmdList {
		c.id = i
		s.cmds[c.name] = c
	}
	if opts.Metrics != nil {
		s.met = newServerMetrics(opts.Metrics, s.cmdList)
	}
	return s, nil
}

// Serve accepts connections on ln and serves each on its own goroutine. It
// returns nil once Shutdown or Close has been called and every connection
// it accepted has finished; when ctx is done it closes the server as Close
// does. Serve may be called for several listeners.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.mu.closing {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.mu.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.mu.listeners, ln)
		s.mu.Unlock()
	}()

	// ctx ending closes the server; Serve waits for that Close to finish
	// so no goroutine outlives it.
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(closed)
		_ = s.Close()
	})
	defer func() {
		if !stop() {
			<-closed
		}
	}()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.draining.Load() || ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				break
			}
			if !temporaryAcceptError(err) {
				_ = s.Close()
				return fmt.Errorf("resp: accept: %w", err)
			}
			// Out of file descriptors and the like: wait and retry, as
			// net/http does, rather than spin or give up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.opts.Logger.Warn("resp: accept failed; retrying", "err", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
			}
			continue
		}
		backoff = 0
		s.startConn(nc)
	}
	s.conns.Wait()
	return nil
}

func temporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.EINTR)
}

func (s *Server) startConn(nc net.Conn) {
	s.mu.Lock()
	if s.mu.closing {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if len(s.mu.conns) >= s.opts.MaxClients {
		s.mu.Unlock()
		s.stats.rejected.Add(1)
		if s.met != nil {
			s.met.rejectedMaxClients.Inc()
		}
		// The socket's send buffer is empty, so this write does not wait
		// for the client; the deadline only guards against the impossible.
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write([]byte("-ERR max number of clients reached\r\n"))
		nc.Close()
		return
	}
	c := newConn(s, nc, s.nextID.Add(1))
	s.mu.conns[c] = struct{}{}
	s.conns.Add(1)
	s.mu.Unlock()

	s.stats.connectionsReceived.Add(1)
	if s.met != nil {
		s.met.connections.Inc()
		s.met.connectionsTotal.Inc()
	}
	go func() {
		defer s.conns.Done()
		c.serve()
		s.mu.Lock()
		delete(s.mu.conns, c)
		s.mu.Unlock()
		if s.met != nil {
			s.met.connections.Dec()
		}
	}()
}

// beginDrain stops accepting and tells every connection to finish what it
// has buffered and exit.
func (s *Server) beginDrain() {
	s.mu.Lock()
	s.mu.closing = true
	// Set before interrupting reads: a connection checks it after arming
	// its own read deadline, so it either sees the flag or has its read
	// interrupted.
	s.draining.Store(true)
	for ln := range s.mu.listeners {
		ln.Close()
	}
	for c := range s.mu.conns {
		c.interrupt()
	}
	s.mu.Unlock()
}

// forceClose cancels commands in flight and closes every connection.
func (s *Server) forceClose() {
	s.cancel()
	s.mu.Lock()
	for c := range s.mu.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
}

// Shutdown stops accepting connections, lets commands in flight finish and
// their replies be flushed, and closes connections as they become idle.
// When ctx ends first it force-closes the remaining connections and returns
// ctx's error; either way every connection goroutine has exited when it
// returns.
func (s *Server) Shutdown(ctx context.Context) error {
	s.beginDrain()
	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.forceClose()
		<-done
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once, and waits for
// the connection goroutines to exit.
func (s *Server) Close() error {
	s.beginDrain()
	s.forceClose()
	s.conns.Wait()
	return nil
}

// Addr-independent view of the clients, for CLIENT LIST.
func (s *Server) snapshotConns() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, len(s.mu.conns))
	for c := range s.mu.conns {
		out = append(out, c)
	}
	return out
}

func (s *Server) numConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.conns)
}
