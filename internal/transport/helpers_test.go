package transport

import (
	"bytes"
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// book is a test address book: Resolve reads it, tests move nodes.
type book struct {
	mu    sync.Mutex
	addrs map[NodeID]string
}

func newBook() *book { return &book{addrs: make(map[NodeID]string)} }

func (b *book) set(id NodeID, addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.addrs[id] = addr
}

func (b *book) resolve(id NodeID) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, ok := b.addrs[id]
	return a, ok
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// startNode starts node id listening on addr (":0" for any port), records
// its address in b and closes it at the end of the test.
func startNode(t testing.TB, id NodeID, b *book, addr string, tweak func(*TCPConfig)) *TCP {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	cfg := TCPConfig{ID: id, ListenAddr: addr, ClusterID: "test", Resolve: b.resolve}
	if tweak != nil {
		tweak(&cfg)
	}
	n, err := NewTCP(cfg)
	if err != nil {
		t.Fatalf("NewTCP(%d): %v", id, err)
	}
	b.set(id, n.Addr().String())
	t.Cleanup(func() { n.Close() })
	return n
}

// msg is one delivered message.
type msg struct {
	from    NodeID
	kind    Kind
	payload string
}

// inbox is a Handler that records deliveries and echoes calls.
type inbox struct {
	mu   sync.Mutex
	msgs []msg
}

func (in *inbox) Deliver(from NodeID, kind Kind, payload []byte) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.msgs = append(in.msgs, msg{from, kind, string(payload)})
}

func (in *inbox) Serve(_ context.Context, from NodeID, kind Kind, payload []byte) ([]byte, error) {
	return append([]byte("echo:"), payload...), nil
}

func (in *inbox) snapshot() []msg {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]msg(nil), in.msgs...)
}

func (in *inbox) len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.msgs)
}

func (in *inbox) has(payload string) bool {
	for _, m := range in.snapshot() {
		if m.payload == payload {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval, not a wait for state
	}
}

// checkNoGoroutines polls until no goroutine runs this package's code
// outside the test goroutines themselves: the goleak idea without the
// dependency.
func checkNoGoroutines(t testing.TB) {
	t.Helper()
	var leaked []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		leaked = leaked[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "fulcrum/internal/transport.") && !strings.Contains(g, "testing.tRunner") &&
				!strings.Contains(g, "testing.(*B)") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines still running after Close:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}

func testLogger(sink *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// downAddr returns a loopback address where nothing listens.
func downAddr(t testing.TB) string {
	t.Helper()
	n, err := NewTCP(TCPConfig{ID: 99, ListenAddr: "127.0.0.1:0", Resolve: newBook().resolve})
	if err != nil {
		t.Fatal(err)
	}
	addr := n.Addr().String()
	n.Close()
	return addr
}
