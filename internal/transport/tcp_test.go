package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/prometheus/client_golang/prometheus"
)

func TestRoundTripThreeNodes(t *testing.T) {
	b := newBook()
	nodes := map[NodeID]*TCP{}
	inboxes := map[NodeID]*inbox{}
	for id := NodeID(1); id <= 3; id++ {
		nodes[id] = startNode(t, id, b, "", nil)
		inboxes[id] = &inbox{}
		nodes[id].Handle(KindRaft, inboxes[id])
		nodes[id].Handle(KindForward, inboxes[id])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for from, n := range nodes {
		for to := range nodes {
			if to == from {
				continue
			}
			p := fmt.Sprintf("%d->%d", from, to)
			if err := n.Send(to, KindRaft, []byte(p)); err != nil {
				t.Fatalf("Send %s: %v", p, err)
			}
			got, err := n.Call(ctx, to, KindForward, []byte(p))
			if err != nil || string(got) != "echo:"+p {
				t.Fatalf("Call %s = %q, %v; want %q, nil", p, got, err, "echo:"+p)
			}
		}
	}
	for to, in := range inboxes {
		waitFor(t, fmt.Sprintf("node %d to receive 2 messages", to), func() bool { return in.len() == 2 })
		for _, m := range in.snapshot() {
			if want := fmt.Sprintf("%d->%d", m.from, to); m.payload != want || m.kind != KindRaft {
				t.Errorf("node %d got %+v, want payload %q kind raft", to, m, want)
			}
		}
	}
	// Node 1 sent 2 one-way and 2 requests and answered 2 requests: 6 frames,
	// 3 of them to node 2. Counters move after the flush, so poll.
	waitFor(t, "node 1's counters", func() bool {
		s := nodes[1].Stats()
		return s.MessagesSent == 6 && s.MessagesReceived == 6 && s.Peers[2].MessagesSent == 3
	})
}

func TestOrderPerPair(t *testing.T) {
	const perSender = 5000
	b := newBook()
	recv := startNode(t, 1, b, "", nil)
	var mu sync.Mutex
	next := map[NodeID]int{}
	var bad atomic.Value
	recv.Handle(KindRaft, HandlerFuncs{OnDeliver: func(from NodeID, _ Kind, p []byte) {
		mu.Lock()
		defer mu.Unlock()
		n, _ := strconv.Atoi(string(p))
		if n != next[from] {
			bad.CompareAndSwap(nil, fmt.Sprintf("from %d got %d, want %d", from, n, next[from]))
		}
		next[from] = n + 1
	}})
	var wg sync.WaitGroup
	for id := NodeID(2); id <= 3; id++ {
		s := startNode(t, id, b, "", func(c *TCPConfig) { c.QueueSize = 2 * perSender })
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				if err := s.Send(1, KindRaft, []byte(strconv.Itoa(i))); err != nil {
					bad.CompareAndSwap(nil, fmt.Sprintf("Send: %v", err))
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "all messages", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return bad.Load() != nil || (next[2] == perSender && next[3] == perSender)
	})
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
}

func TestPeerRestart(t *testing.T) {
	b := newBook()
	a := startNode(t, 1, b, "", nil)
	bn := startNode(t, 2, b, "", nil)
	in := &inbox{}
	bn.Handle(KindRaft, in)
	started := make(chan struct{})
	bn.Handle(KindForward, HandlerFuncs{OnServe: func(ctx context.Context, _ NodeID, _ Kind, _ []byte) ([]byte, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	if err := a.Send(2, KindRaft, []byte("before")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first message", func() bool { return in.has("before") })

	// A Call in flight when the peer goes away fails at once, as an
	// unknown outcome: the request was sent.
	callErr := make(chan error, 1)
	go func() {
		_, err := a.Call(context.Background(), 2, KindForward, nil)
		callErr <- err
	}()
	<-started
	addr := bn.Addr().String()
	if err := bn.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-callErr:
		if !errors.Is(err, ErrConnectionLost) || !errors.Is(err, kv.ErrTimeout) || errors.Is(err, ErrUnreachable) {
			t.Fatalf("Call across the restart: %v, want ErrConnectionLost and kv.ErrTimeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Call did not fail after the peer closed")
	}

	// While it is down, Calls fail fast and one-way messages queue.
	waitFor(t, "calls to fail while the peer is down", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := a.Call(ctx, 2, KindRaft, nil)
		return errors.Is(err, ErrUnreachable)
	})

	b2 := startNode(t, 2, b, addr, nil)
	in2 := &inbox{}
	b2.Handle(KindRaft, in2)
	i := 0
	waitFor(t, "messages to flow after the restart", func() bool {
		i++
		a.Send(2, KindRaft, []byte("after"+strconv.Itoa(i)))
		return in2.len() > 0
	})
	if s := a.Stats().Peers[2]; s.Reconnects == 0 || s.DialFailures == 0 {
		t.Errorf("stats %+v: want reconnects and dial failures counted", s)
	}
}

func TestReresolveAddress(t *testing.T) {
	b := newBook()
	a := startNode(t, 1, b, "", nil)
	old := startNode(t, 2, b, "", nil)
	old.Handle(KindRaft, &inbox{})
	if err := a.Send(2, KindRaft, []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a connection to node 2", func() bool { return a.Stats().Peers[2].MessagesSent == 1 })
	old.Close()
	moved := startNode(t, 2, b, "", nil) // a new port; startNode updates the book
	in := &inbox{}
	moved.Handle(KindRaft, in)
	waitFor(t, "delivery at the new address", func() bool {
		a.Send(2, KindRaft, []byte("y"))
		return in.len() > 0
	})
}

func TestWrongNodeAtAddressRefused(t *testing.T) {
	b := newBook()
	a := startNode(t, 1, b, "", nil)
	n3 := startNode(t, 3, b, "", nil)
	b.set(2, n3.Addr().String()) // a stale address: node 3 now lives there
	in := &inbox{}
	n3.Handle(KindForward, in)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := a.Call(ctx, 2, KindForward, []byte("hi"))
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "not 2") {
		t.Fatalf("Call to a node at a stale address: %v, want ErrUnreachable naming the mismatch", err)
	}
}

func TestBackpressureWhilePeerDown(t *testing.T) {
	b := newBook()
	b.set(2, downAddr(t))
	a := startNode(t, 1, b, "", func(c *TCPConfig) { c.QueueSize = 4 })
	for i := range 4 {
		if err := a.Send(2, KindRaft, []byte{byte(i)}); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	err := a.Send(2, KindRaft, []byte("one too many"))
	if !errors.Is(err, ErrQueueFull) || !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("Send to a full queue: %v, want ErrQueueFull matching kv.ErrUnavailable", err)
	}
	if got := a.Stats().Peers[2].DroppedQueueFull; got != 1 {
		t.Errorf("DroppedQueueFull = %d, want 1", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = a.Call(ctx, 2, KindForward, nil)
	if !errors.Is(err, kv.ErrUnavailable) || ctx.Err() != nil {
		t.Fatalf("Call to a down peer: %v, want a quick unavailable error", err)
	}
	if err := a.Send(42, KindRaft, nil); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("Send to an unknown node: %v, want ErrUnknownPeer", err)
	}
}

func TestMessageTTL(t *testing.T) {
	b := newBook()
	addr := downAddr(t)
	b.set(2, addr)
	a := startNode(t, 1, b, "", func(c *TCPConfig) { c.MessageTTL = 20 * time.Millisecond })
	for i := range 3 {
		if err := a.Send(2, KindRaft, []byte("stale"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "stale messages to expire", func() bool { return a.Stats().Peers[2].DroppedExpired == 3 })
	bn := startNode(t, 2, b, addr, nil)
	in := &inbox{}
	bn.Handle(KindRaft, in)
	waitFor(t, "a fresh message", func() bool {
		a.Send(2, KindRaft, []byte("fresh"))
		return in.len() > 0
	})
	for _, m := range in.snapshot() {
		if m.payload != "fresh" {
			t.Fatalf("delivered %q after it expired", m.payload)
		}
	}
}

func TestCallErrorCodes(t *testing.T) {
	b := newBook()
	a := startNode(t, 1, b, "", nil)
	srv := startNode(t, 2, b, "", nil)
	srv.Handle(KindForward, HandlerFuncs{OnServe: func(ctx context.Context, _ NodeID, _ Kind, p []byte) ([]byte, error) {
		switch string(p) {
		case "not-leader":
			return nil, kv.Errorf(kv.CodeNotLeader, "leader is node %d", 3)
		case "wrapped":
			return nil, fmt.Errorf("shard 7: %w", kv.Errorf(kv.CodeStaleEpoch, "epoch 4 < 5"))
		case "plain":
			return nil, errors.New("disk on fire")
		case "deadline":
			return nil, context.DeadlineExceeded
		case "big":
			return make([]byte, 64<<10), nil
		case "empty":
			return nil, nil
		}
		return p, nil
	}})
	srv.Handle(KindControl, HandlerFuncs{}) // no OnServe
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tests := []struct {
		kind    Kind
		req     string
		code    kv.Code
		message string
	}{
		{KindForward, "not-leader", kv.CodeNotLeader, "leader is node 3"},
		{KindForward, "wrapped", kv.CodeStaleEpoch, "epoch 4 < 5"},
		{KindForward, "plain", kv.CodeInternal, "disk on fire"},
		{KindForward, "deadline", kv.CodeTimeout, "context deadline exceeded"},
		{KindControl, "x", kv.CodeNotSupported, "no calls of kind control"},
		{KindRaft, "x", kv.CodeUnavailable, "node 2 has no handler for raft calls"},
	}
	for _, tt := range tests {
		_, err := a.Call(ctx, 2, tt.kind, []byte(tt.req))
		var ke *kv.Error
		if !errors.As(err, &ke) || ke.Code != tt.code || ke.Message != tt.message {
			t.Errorf("Call(%v, %q) = %#v, want code %s message %q", tt.kind, tt.req, err, tt.code, tt.message)
		}
	}
	if got, err := a.Call(ctx, 2, KindForward, []byte("empty")); err != nil || len(got) != 0 {
		t.Errorf("empty reply = %q, %v", got, err)
	}
	if got, err := a.Call(ctx, 2, KindForward, []byte("big")); err != nil || len(got) != 64<<10 {
		t.Errorf("big reply = %d bytes, %v; want 65536 bytes", len(got), err)
	}
}

func TestFrameLimits(t *testing.T) {
	b := newBook()
	small := func(c *TCPConfig) { c.MaxFrame = minFrame }
	a := startNode(t, 1, b, "", small)
	srv := startNode(t, 2, b, "", small)
	srv.Handle(KindForward, HandlerFuncs{OnServe: func(context.Context, NodeID, Kind, []byte) ([]byte, error) {
		return make([]byte, minFrame), nil
	}})
	big := make([]byte, minFrame)
	if err := a.Send(2, KindRaft, big); !errors.Is(err, ErrFrameTooLarge) || !errors.Is(err, kv.ErrTooLarge) {
		t.Errorf("Send of an oversized message: %v, want ErrFrameTooLarge matching kv.ErrTooLarge", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.Call(ctx, 2, KindForward, big); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("Call with an oversized request: %v, want ErrFrameTooLarge", err)
	}
	if _, err := a.Call(ctx, 2, KindForward, nil); kv.CodeOf(err) != kv.CodeTooLarge {
		t.Errorf("Call with an oversized reply: %v, want code TOO_LARGE", err)
	}
}

func TestCallDeadlinePropagated(t *testing.T) {
	b := newBook()
	a := startNode(t, 1, b, "", nil)
	srv := startNode(t, 2, b, "", nil)
	type seen struct {
		deadline time.Time
		ok       bool
	}
	deadlines := make(chan seen, 1)
	ended := make(chan error, 1)
	srv.Handle(KindForward, HandlerFuncs{OnServe: func(ctx context.Context, _ NodeID, _ Kind, p []byte) ([]byte, error) {
		d, ok := ctx.Deadline()
		if string(p) == "block" {
			<-ctx.Done()
			ended <- ctx.Err()
			return nil, ctx.Err()
		}
		deadlines <- seen{d, ok}
		return nil, nil
	}})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := a.Call(ctx, 2, KindForward, nil); err != nil {
		t.Fatal(err)
	}
	s := <-deadlines
	if !s.ok || s.deadline.Before(start.Add(time.Second)) || s.deadline.After(start.Add(3*time.Second+100*time.Millisecond)) {
		t.Errorf("Serve deadline %v (set %v), want about 3 s after %v", s.deadline, s.ok, start)
	}
	if _, err := a.Call(context.Background(), 2, KindForward, nil); err != nil {
		t.Fatal(err)
	}
	if s := <-deadlines; s.ok {
		t.Errorf("Serve has deadline %v for a Call without one", s.deadline)
	}

	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	_, err := a.Call(short, 2, KindForward, []byte("block"))
	// Either the caller's deadline or the same deadline on the server (its
	// TIMEOUT reply racing the caller's timer) ends the Call.
	if !errors.Is(err, kv.ErrTimeout) {
		t.Errorf("Call past its deadline: %v, want kv.ErrTimeout", err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Serve's context ended with %v, want DeadlineExceeded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve's context did not end with the caller's deadline")
	}
}

func TestClusterIDMismatch(t *testing.T) {
	b := newBook()
	var logs syncBuffer
	a := startNode(t, 1, b, "", func(c *TCPConfig) { c.ClusterID = "alpha" })
	srv := startNode(t, 2, b, "", func(c *TCPConfig) { c.ClusterID = "beta"; c.Logger = testLogger(&logs) })
	in := &inbox{}
	srv.Handle(KindRaft, in)
	srv.Handle(KindForward, in)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := a.Call(ctx, 2, KindForward, nil)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), `cluster id "alpha", want "beta"`) {
		t.Fatalf("Call across clusters: %v, want ErrUnreachable naming both cluster ids", err)
	}
	if err := a.Send(2, KindRaft, []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refusal to be logged", func() bool {
		l := logs.String()
		return strings.Contains(l, "level=ERROR") && strings.Contains(l, "refused inbound connection")
	})
	if in.len() != 0 || srv.Stats().MessagesReceived != 0 {
		t.Errorf("node of another cluster received %d messages", in.len())
	}
}

// rawConn dials addr and, if h is set, completes a handshake with it.
func rawConn(t *testing.T, addr string, h *hello) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if h != nil {
		if _, err := c.Write(h.append(nil)); err != nil {
			t.Fatal(err)
		}
		body, err := readFrame(br, maxHandshake)
		if err != nil {
			t.Fatal(err)
		}
		if a, err := decodeAck(body); err != nil || !a.ok {
			t.Fatalf("ack %+v, %v", a, err)
		}
	}
	return c, br
}

// expectClosed checks that the server closes c.
func expectClosed(t *testing.T, what string, br *bufio.Reader) {
	t.Helper()
	if _, err := io.ReadAll(br); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Errorf("%s: read %v, want the server to close the connection", what, err)
	}
}

func TestBadInputRefused(t *testing.T) {
	b := newBook()
	var logs syncBuffer
	srv := startNode(t, 2, b, "", func(c *TCPConfig) { c.Logger = testLogger(&logs); c.MaxFrame = 1 << 20 })
	in := &inbox{}
	srv.Handle(KindRaft, in)
	srv.Handle(KindForward, in)
	addr := srv.Addr().String()
	good := &hello{from: 7, to: 2, cluster: "test"}

	c, br := rawConn(t, addr, nil)
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	expectClosed(t, "HTTP request", br)

	c, br = rawConn(t, addr, nil)
	c.Write([]byte{0, 0, 0, 9, 'X', 'X', 'X', 'X', 1, 2, 3, 4, 5})
	expectClosed(t, "bad magic", br)

	c, br = rawConn(t, addr, good)
	c.Write(binary.BigEndian.AppendUint32(nil, 1<<20+1))
	expectClosed(t, "oversized frame", br)

	c, br = rawConn(t, addr, good)
	c.Write([]byte{0, 0, 0, 3, byte(KindRaft), 0xF0, 0})
	expectClosed(t, "bad flags", br)

	c, br = rawConn(t, addr, good)
	c.Write([]byte{0, 0, 0, 3, byte(KindForward), byte(typeRequest), 0xFF}) // truncated varint
	expectClosed(t, "bad varint", br)

	c, br = rawConn(t, addr, good)
	c.Write([]byte{0, 0, 0, 10, byte(KindRaft), 0}) // body cut short
	c.(*net.TCPConn).CloseWrite()
	expectClosed(t, "short body", br)

	waitFor(t, "the bad frames to be logged", func() bool {
		return strings.Count(logs.String(), "dropped connection after a bad frame") >= 3
	})
	if in.len() != 0 {
		t.Errorf("garbage delivered %d messages", in.len())
	}

	// The node still serves well-formed peers.
	a := startNode(t, 1, b, "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := a.Call(ctx, 2, KindForward, []byte("ok")); err != nil || string(got) != "echo:ok" {
		t.Fatalf("Call after garbage = %q, %v", got, err)
	}
}

func TestCloseStopsGoroutines(t *testing.T) {
	checkNoGoroutines(t) // nothing left over from earlier tests
	b := newBook()
	b.set(9, downAddr(t)) // a peer that never answers dials
	var nodes []*TCP
	release := make(chan struct{})
	for id := NodeID(1); id <= 3; id++ {
		n := startNode(t, id, b, "", nil)
		n.Handle(KindRaft, &inbox{})
		n.Handle(KindForward, HandlerFuncs{OnServe: func(ctx context.Context, _ NodeID, _ Kind, _ []byte) ([]byte, error) {
			select {
			case <-ctx.Done():
			case <-release:
			}
			return nil, nil
		}})
		nodes = append(nodes, n)
	}
	var calls sync.WaitGroup
	errs := make(chan error, 6)
	for _, n := range nodes {
		for to := NodeID(1); to <= 3; to++ {
			n.Send(to, KindRaft, []byte("x"))
		}
		n.Send(9, KindRaft, []byte("x"))
		calls.Add(1)
		go func() { // blocked in Serve on the peer when Close comes
			defer calls.Done()
			_, err := n.Call(context.Background(), n.ID()%3+1, KindForward, nil)
			errs <- err
		}()
	}
	waitFor(t, "traffic", func() bool {
		for _, n := range nodes {
			if n.Stats().MessagesReceived < 3 {
				return false
			}
		}
		return true
	})
	for _, n := range nodes {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	calls.Wait()
	close(errs)
	for err := range errs {
		// Its own node closing (ErrClosed) or the callee's closing first
		// (the connection is lost with the request sent).
		if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrConnectionLost) {
			t.Errorf("Call pending at Close: %v, want ErrClosed or ErrConnectionLost", err)
		}
	}
	close(release)
	if err := nodes[0].Send(2, KindRaft, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
	if _, err := nodes[0].Call(context.Background(), 2, KindRaft, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Call after Close: %v, want ErrClosed", err)
	}
	checkNoGoroutines(t)
}

func TestCollector(t *testing.T) {
	b := newBook()
	a := startNode(t, 1, b, "", nil)
	srv := startNode(t, 2, b, "", nil)
	srv.Handle(KindRaft, &inbox{})
	a.Send(2, KindRaft, []byte("12345"))
	waitFor(t, "delivery", func() bool { return srv.Stats().BytesReceived == 5 })
	reg := prometheus.NewRegistry()
	if err := reg.Register(a.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := ""
			for _, l := range m.GetLabel() {
				labels += l.GetName() + "=" + l.GetValue() + ","
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			found[mf.GetName()+"{"+labels+"}"] = v
		}
	}
	for name, want := range map[string]float64{
		"fulcrum_transport_messages_sent_total{peer=2,}":             1,
		"fulcrum_transport_bytes_sent_total{peer=2,}":                5,
		"fulcrum_transport_dropped_total{peer=2,reason=queue_full,}": 0,
		"fulcrum_transport_connected{peer=2,}":                       1,
		"fulcrum_transport_queue_length{peer=2,}":                    0,
		"fulcrum_transport_dial_failures_total{peer=2,}":             0,
		"fulcrum_transport_messages_received_total{peer=2,}":         0,
		"fulcrum_transport_dropped_total{peer=2,reason=no_handler,}": 0,
		"fulcrum_transport_reconnects_total{peer=2,}":                0,
		"fulcrum_transport_bytes_received_total{peer=2,}":            0,
		"fulcrum_transport_dropped_total{peer=2,reason=expired,}":    0,
	} {
		if got, ok := found[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := TCPConfig{ID: 1, Resolve: newBook().resolve}.withDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, bad := range map[string]func(*TCPConfig){
		"zero id":       func(c *TCPConfig) { c.ID = 0 },
		"no resolve":    func(c *TCPConfig) { c.Resolve = nil },
		"long cluster":  func(c *TCPConfig) { c.ClusterID = strings.Repeat("x", 256) },
		"tiny frame":    func(c *TCPConfig) { c.MaxFrame = 10 },
		"negative ttl":  func(c *TCPConfig) { c.MessageTTL = -1 },
		"negative size": func(c *TCPConfig) { c.QueueSize = -1 },
	} {
		c := ok
		bad(&c)
		if _, err := NewTCP(c); err == nil {
			t.Errorf("%s: NewTCP accepted the config", name)
		}
	}
}

// BenchmarkTCPSend measures one-way throughput of 256-byte messages between
// two endpoints on loopback.
func BenchmarkTCPSend(b *testing.B) {
	bk := newBook()
	a := startNode(b, 1, bk, "", nil)
	srv := startNode(b, 2, bk, "", nil)
	var got atomic.Int64
	srv.Handle(KindRaft, HandlerFuncs{OnDeliver: func(NodeID, Kind, []byte) { got.Add(1) }})
	payload := make([]byte, 256)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; {
		if err := a.Send(2, KindRaft, payload); err != nil {
			if !errors.Is(err, ErrQueueFull) {
				b.Fatal(err)
			}
			time.Sleep(10 * time.Microsecond) // backpressure: let the writer drain
			continue
		}
		i++
	}
	for got.Load() < int64(b.N) {
		time.Sleep(100 * time.Microsecond) // polling for the last deliveries
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
