package resp

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/metrics"
)

// stubStore answers without allocating, so allocation counts measure the
// front end alone.
type stubStore struct {
	value   kv.Value
	results []kv.Result
	applies int
}

func (s *stubStore) Apply(_ context.Context, b kv.Batch) ([]kv.Result, error) {
	s.applies++
	if cap(s.results) < len(b.Ops) {
		s.results = make([]kv.Result, len(b.Ops))
	}
	res := s.results[:len(b.Ops)]
	for i := range res {
		res[i] = kv.Result{Applied: true, Exists: true, Cur: s.value}
	}
	return res, nil
}

func (s *stubStore) Get(context.Context, string, []byte) (kv.Value, bool, error) {
	return s.value, true, nil
}

func (s *stubStore) Scan(context.Context, kv.ScanRequest) (kv.ScanResult, error) {
	return kv.ScanResult{}, nil
}
func (s *stubStore) Keyspace() []kv.NamespaceStats { return nil }
func (s *stubStore) Count(string) int64            { return 0 }

// loopConn is a net.Conn that delivers the same chunk of requests a number
// of times, then EOF; writes are discarded.
type loopConn struct {
	chunk []byte
	left  int
	pos   int
}

func (c *loopConn) Read(p []byte) (int, error) {
	if c.pos == len(c.chunk) {
		if c.left == 0 {
			return 0, io.EOF
		}
		c.left--
		c.pos = 0
	}
	n := copy(p, c.chunk[c.pos:])
	c.pos += n
	return n, nil
}

func (c *loopConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *loopConn) Close() error                     { return nil }
func (c *loopConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *loopConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *loopConn) SetDeadline(time.Time) error      { return nil }
func (c *loopConn) SetReadDeadline(time.Time) error  { return nil }
func (c *loopConn) SetWriteDeadline(time.Time) error { return nil }

// pipeline16 is what redis-benchmark -P 16 sends: 16 SETs or 16 GETs.
func pipeline16(cmd string) []byte {
	var sb strings.Builder
	for i := 0; i < 16; i++ {
		if cmd == "SET" {
			sb.WriteString("*3\r\n$3\r\nSET\r\n$16\r\nkey:000000001234\r\n$3\r\nxxx\r\n")
		} else {
			sb.WriteString("*2\r\n$3\r\nGET\r\n$16\r\nkey:000000001234\r\n")
		}
	}
	return []byte(sb.String())
}

func runLoop(t testing.TB, srv *Server, chunk []byte, rounds int) {
	c := newConn(srv, &loopConn{chunk: chunk, left: rounds}, 1)
	c.serve()
}

func TestHotPathAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counting")
	}
	for _, withMetrics := range []bool{false, true} {
		st := &stubStore{value: kv.Value{Data: []byte("xxx")}}
		opts := Options{Store: st}
		if withMetrics {
			opts.Metrics = metrics.New()
		}
		srv, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []string{"GET", "SET"} {
			chunk := pipeline16(cmd)
			const rounds = 2000
			runLoop(t, srv, chunk, 10) // warm up
			allocs := testing.AllocsPerRun(3, func() { runLoop(t, srv, chunk, rounds) })
			perCmd := allocs / (rounds * 16)
			t.Logf("%s metrics=%v: %.4f allocations per command (%.0f per run)", cmd, withMetrics, perCmd, allocs)
			if perCmd > 0.01 {
				t.Errorf("%s: %.4f allocations per command, want ~0", cmd, perCmd)
			}
		}
		if st.applies > 4*2000+10+5 { // one per chunk of 16 SETs: AllocsPerRun runs 3+1 times
			t.Errorf("%d Apply calls: pipelined SETs were not merged", st.applies)
		}
	}
}

func BenchmarkPipeline(b *testing.B) {
	for _, cmd := range []string{"GET", "SET"} {
		b.Run(cmd, func(b *testing.B) {
			st := &stubStore{value: kv.Value{Data: []byte("xxx")}}
			srv, err := New(Options{Store: st, Metrics: metrics.New()})
			if err != nil {
				b.Fatal(err)
			}
			chunk := pipeline16(cmd)
			b.ReportAllocs()
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			runLoop(b, srv, chunk, b.N)
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*16), "ns/cmd")
		})
	}
}
