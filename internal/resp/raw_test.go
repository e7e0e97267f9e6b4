package resp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// rawConn speaks RESP by hand, to check exact bytes.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *rawConn) close() { c.nc.Close() }

// reply reads one whole reply and returns its bytes.
func (c *rawConn) reply() string {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var sb strings.Builder
	if err := readReply(c.br, &sb); err != nil {
		c.t.Fatalf("reading reply: %v (got %q so far)", err, sb.String())
	}
	return sb.String()
}

func readReply(br *bufio.Reader, sb *strings.Builder) error {
	line, err := br.ReadString('\n')
	sb.WriteString(line)
	if err != nil {
		return err
	}
	if len(line) < 3 {
		return errors.New("short line")
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+', '-', ':', '_', ',', '#':
		return nil
	case '$', '=':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return err
		}
		sb.Write(buf)
		return nil
	case '*', '~', '%':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return err
		}
		if line[0] == '%' {
			n *= 2
		}
		for i := 0; i < n; i++ {
			if err := readReply(br, sb); err != nil {
				return err
			}
		}
		return nil
	}
	return errors.New("unknown reply type " + line[:1])
}

// expectClosed asserts that the server closes the connection with nothing
// more to say.
func (c *rawConn) expectClosed() {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := c.br.ReadByte()
	if err == nil {
		rest, _ := c.br.Peek(c.br.Buffered())
		c.t.Fatalf("connection still open, sent %q", string(b)+string(rest))
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatal("connection not closed")
	}
}

func TestRawProtocolErrors(t *testing.T) {
	ts := startServer(t, nil)
	for _, tc := range []struct {
		name, input, want string
	}{
		{"bad count", "*x\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"bad bulk length", "*1\r\n$x\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"bad prefix", "*1\r\nx\r\n", "-ERR Protocol error: expected '$', got 'x'\r\n"},
		{"negative bulk", "*1\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"negative count", "*-5\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"too many elements", "*1048577\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"huge bulk", "*1\r\n$999999999999\r\n", "-TOO_LARGE frame of 999999999999 bytes exceeds limit 4194304\r\n"},
		{"missing CRLF", "*1\r\n$4\r\nPINGxx", "-ERR Protocol error: expected CRLF after bulk data\r\n"},
		{"unbalanced quotes", "SET \"a b\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"},
		{"inline too long", strings.Repeat("a", 70000) + "\r\n", "-ERR Protocol error: too big inline request\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, ts.addr)
			// Commands before the bad one are answered first.
			c.send("PING\r\n" + tc.input)
			if got := c.reply(); got != "+PONG\r\n" {
				t.Fatalf("PING: %q", got)
			}
			if got := c.reply(); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			c.expectClosed()
		})
	}
}

func TestRawInlineAndPipeline(t *testing.T) {
	ts := startServer(t, nil)
	c := dialRaw(t, ts.addr)
	c.send("SET greeting \"hello world\"\r\nGET greeting\r\n\r\n*2\r\n$3\r\nGET\r\n$8\r\ngreeting\r\n*0\r\nEXISTS greeting nope\nPING\r\n")
	for _, want := range []string{"+OK\r\n", "$11\r\nhello world\r\n", "$11\r\nhello world\r\n", ":1\r\n", "+PONG\r\n"} {
		if got := c.reply(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	// A command split across writes is answered once complete.
	c.send("*2\r\n$3\r\nGET\r\n$8\r\ngree")
	c.send("ting\r\n")
	if got := c.reply(); got != "$11\r\nhello world\r\n" {
		t.Fatalf("split command: %q", got)
	}
}

func TestRawEncodings(t *testing.T) {
	ts := startServer(t, nil)
	c := dialRaw(t, ts.addr)
	steps := []struct{ send, want string }{
		{"GET nope\r\n", "$-1\r\n"},
		{"SET n 5\r\n", "+OK\r\n"},
		{"INCR n\r\n", ":6\r\n"},
		{"MGET n nope\r\n", "*2\r\n$1\r\n6\r\n$-1\r\n"},
		{"COMMAND INFO nosuch\r\n", "*1\r\n*-1\r\n"},
		{"HELLO 3\r\n", "%7\r\n$6\r\nserver\r\n$7\r\nfulcrum\r\n$7\r\nversion\r\n$4\r\ntest\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:1\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"},
		{"GET nope\r\n", "_\r\n"},
		{"MGET n nope\r\n", "*2\r\n$1\r\n6\r\n_\r\n"},
		{"COMMAND INFO nosuch\r\n", "*1\r\n_\r\n"},
		{"CONFIG GET databases\r\n", "%1\r\n$9\r\ndatabases\r\n$1\r\n1\r\n"},
		{"CLIENT GETNAME\r\n", "_\r\n"},
		{"HELLO 2\r\n", "*14\r\n$6\r\nserver\r\n$7\r\nfulcrum\r\n$7\r\nversion\r\n$4\r\ntest\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:1\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"},
		{"CONFIG GET databases\r\n", "*2\r\n$9\r\ndatabases\r\n$1\r\n1\r\n"},
	}
	for _, s := range steps {
		c.send(s.send)
		if got := c.reply(); got != s.want {
			t.Fatalf("%q: got %q, want %q", s.send, got, s.want)
		}
	}
	c.send("HELLO 3\r\nINFO clients\r\n")
	c.reply()
	if got := c.reply(); !strings.HasPrefix(got, "=") || !strings.Contains(got, "txt:# Clients\r\n") {
		t.Fatalf("INFO in RESP3 = %q, want a verbatim string", got)
	}
}

func TestShutdownGraceful(t *testing.T) {
	block := make(chan struct{})
	entered := make(chan struct{}, 1)
	ts := startServer(t, func(o *Options) {
		o.Store = &blockingStore{Store: o.Store, entered: entered, block: block}
	})
	idle := dialRaw(t, ts.addr)
	idle.send("PING\r\n")
	idle.reply()
	busy := dialRaw(t, ts.addr)
	busy.send("GET a\r\nSET slow v\r\nGET slow\r\n")
	<-entered // SET slow is in flight
	shutdownDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdownDone <- ts.srv.Shutdown(ctx)
	}()
	// The idle connection is closed at once, while the busy one waits.
	idle.expectClosed()
	waitFor(t, "listener to close", func() bool {
		c, err := net.DialTimeout("tcp", ts.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(block)
	// The commands received before Shutdown are all answered.
	for _, want := range []string{"$-1\r\n", "+OK\r\n", "$1\r\nv\r\n"} {
		if got := busy.reply(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	busy.expectClosed()
	if err := <-shutdownDone; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-ts.done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	ts.done <- nil // for the cleanup
}

// blockingStore holds Apply calls whose first key is "slow" until block is
// closed (or the server cancels them), to keep a command in flight.
type blockingStore struct {
	Store
	entered chan struct{}
	block   chan struct{}
}

func (s *blockingStore) Apply(ctx context.Context, b kv.Batch) ([]kv.Result, error) {
	if len(b.Ops) > 0 && string(b.Ops[0].Key) == "slow" {
		select {
		case s.entered <- struct{}{}:
		default:
		}
		select {
		case <-s.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Store.Apply(ctx, b)
}

func TestShutdownForce(t *testing.T) {
	block := make(chan struct{})
	entered := make(chan struct{}, 1)
	ts := startServer(t, func(o *Options) {
		o.Store = &blockingStore{Store: o.Store, entered: entered, block: block}
	})
	c := dialRaw(t, ts.addr)
	c.send("SET slow v\r\n")
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := ts.srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	close(block)
	// The forced close cancelled the command: its reply, if any, is an
	// error, and the connection is gone.
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, _ := io.ReadAll(c.br)
	if len(rest) > 0 && !strings.HasPrefix(string(rest), "-") {
		t.Fatalf("got %q after a forced close", rest)
	}
	if err := <-ts.done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	ts.done <- nil
}

func TestServeContextCancel(t *testing.T) {
	ts := startServer(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.srv.Serve(sctx, ln) }()
	c := dialRaw(t, ln.Addr().String())
	c.send("PING\r\n")
	if c.reply() != "+PONG\r\n" {
		t.Fatal("no PONG")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v, want nil", err)
	}
	c.expectClosed()
}

func TestCloseIdempotent(t *testing.T) {
	ts := startServer(t, nil)
	c := dialRaw(t, ts.addr)
	c.send("PING\r\n")
	c.reply()
	if err := ts.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.Close(); err != nil {
		t.Fatal(err)
	}
	c.expectClosed()
	if err := <-ts.done; err != nil {
		t.Fatal(err)
	}
	ts.done <- nil
	// Serve after Close returns at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.Serve(context.Background(), ln); err != nil {
		t.Fatal(err)
	}
}

// A client that pipelines requests but never reads the replies is
// disconnected once a reply write has waited WriteTimeout, instead of
// holding its goroutine and buffers forever.
func TestWriteTimeoutDropsClientThatStopsReading(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.WriteTimeout = 200 * time.Millisecond })
	big := strings.Repeat("v", 512<<10)
	if _, err := ts.store.Apply(context.Background(), kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "default", Key: []byte("big"), Value: []byte(big)}}}); err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Shrink our receive buffer so the server's writes block quickly.
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	req := strings.Repeat("*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n", 200)
	_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stuck connection to be dropped", func() bool { return ts.srv.numConns() == 0 })
}
