package simnet

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

const kindRaft, kindRPC = transport.KindRaft, transport.KindForward

// node is an endpoint with a recording handler: one-way messages are kept,
// calls are echoed.
type node struct {
	e    *Endpoint
	mu   sync.Mutex
	msgs []string // "from:payload"
}

func attach(t *testing.T, n *Network, id transport.NodeID) *node {
	t.Helper()
	nd := &node{e: n.Endpoint(id).(*Endpoint)}
	nd.e.Handle(kindRaft, nd)
	nd.e.Handle(kindRPC, nd)
	return nd
}

func (nd *node) Deliver(from transport.NodeID, _ transport.Kind, p []byte) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	nd.msgs = append(nd.msgs, fmt.Sprintf("%d:%s", from, p))
}

func (nd *node) Serve(_ context.Context, from transport.NodeID, _ transport.Kind, p []byte) ([]byte, error) {
	return []byte(fmt.Sprintf("%d:%s", from, p)), nil
}

func (nd *node) got() []string {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return append([]string(nil), nd.msgs...)
}

func (nd *node) count() int { return len(nd.got()) }

// bubble runs f in a synctest bubble (virtual time: latencies cost nothing
// and are exact) with a network of the given nodes, and closes the network at
// the end. synctest fails the test if a goroutine is left running.
func bubble(t *testing.T, seed int64, ids []transport.NodeID, f func(t *testing.T, n *Network, nodes map[transport.NodeID]*node)) {
	synctest.Test(t, func(t *testing.T) {
		n := New(seed)
		defer n.Close()
		nodes := map[transport.NodeID]*node{}
		for _, id := range ids {
			nodes[id] = attach(t, n, id)
		}
		f(t, n, nodes)
		if t.Failed() {
			t.Logf("simnet seed %d", n.Seed())
		}
	})
}

// sendAll sends one message on every ordered pair and waits until
// everything that can be delivered is.
func sendAll(t *testing.T, nodes map[transport.NodeID]*node, tag string) {
	t.Helper()
	for from, nd := range nodes {
		for to := range nodes {
			if from != to {
				if err := nd.e.Send(to, kindRaft, []byte(tag)); err != nil {
					t.Fatalf("Send %d->%d: %v", from, to, err)
				}
			}
		}
	}
	synctest.Wait()
}

// heard returns the senders whose message tagged tag reached nd, in order.
func heard(nd *node, tag string) string {
	var from []string
	for _, m := range nd.got() {
		if f, p, _ := strings.Cut(m, ":"); p == tag {
			from = append(from, f)
		}
	}
	return strings.Join(from, ",")
}

func ids(n int) []transport.NodeID {
	var out []transport.NodeID
	for i := 1; i <= n; i++ {
		out = append(out, transport.NodeID(i))
	}
	return out
}

func TestDeliveryAndCall(t *testing.T) {
	bubble(t, 1, ids(2), func(t *testing.T, n *Network, nodes map[transport.NodeID]*node) {
		if err := nodes[1].e.Send(2, kindRaft, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := nodes[2].got(); len(got) != 1 || got[0] != "1:hi" {
			t.Errorf("node 2 got %q, want [1:hi]", got)
		}
		got, err := nodes[2].e.Call(context.Background(), 1, kindRPC, []byte("ping"))
		if err != nil || string(got) != "2:ping" {
			t.Errorf("Call = %q, %v; want 2:ping", got, err)
		}
		if err := nodes[1].e.Send(9, kindRaft, nil); !errors.Is(err, transport.ErrUnknownPeer) {
			t.Errorf("Send to a node never attached: %v, want ErrUnknownPeer", err)
		}
		s := nodes[1].e.Stats()
		if s.MessagesSent != 2 || s.MessagesReceived != 1 || s.Peers[2].BytesSent != 2+6 {
			t.Errorf("node 1 stats %+v, want 2 sent (8 bytes), 1 received", s)
		}
	})
}

func TestPartitionHeal(t *testing.T) {
	bubble(t, 1, ids(4), func(t *testing.T, n *Network, nodes map[transport.NodeID]*node) {
		n.Partition([]transport.NodeID{1}, []transport.NodeID{2, 3}) // 4 is in neither side
		sendAll(t, nodes, "cut")
		for id, want := range map[transport.NodeID]string{1: "4", 2: "3,4", 3: "2,4", 4: "1,2,3"} {
			if got := sortedCSV(heard(nodes[id], "cut")); got != want {
				t.Errorf("partitioned: node %d heard from %q, want %q", id, got, want)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		if _, err := nodes[1].e.Call(ctx, 2, kindRPC, nil); !errors.Is(err, transport.ErrUnreachable) || !errors.Is(err, kv.ErrUnavailable) {
			t.Errorf("Call across the partition: %v, want ErrUnreachable", err)
		}
		if ctx.Err() != nil {
			t.Error("Call across the partition waited for its deadline; want an immediate refusal")
		}
		if _, err := nodes[4].e.Call(ctx, 1, kindRPC, nil); err != nil {
			t.Errorf("Call from a node outside the partition: %v", err)
		}
		if n.Reachable(1, 2) || !n.Reachable(2, 3) {
			t.Error("Reachable disagrees with the partition")
		}

		n.Heal()
		sendAll(t, nodes, "healed")
		for id, nd := range nodes {
			if got := len(strings.Split(heard(nd, "healed"), ",")); got != 3 {
				t.Errorf("healed: node %d heard from %d nodes, want 3", id, got)
			}
		}
	})
}

func sortedCSV(s string) string {
	parts := strings.Split(s, ",")
	for i := range parts {
		for j := i + 1; j < len(parts); j++ {
			if parts[j] < parts[i] {
				parts[i], parts[j] = parts[j], parts[i]
			}
		}
	}
	return strings.Join(parts, ",")
}

func TestBlockOneWay(t *testing.T) {
	bubble(t, 1, ids(2), func(t *testing.T, n *Network, nodes map[transport.NodeID]*node) {
		n.Block(1, 2)
		sendAll(t, nodes, "x")
		if got := heard(nodes[2], "x"); got != "" {
			t.Errorf("node 2 heard %q through a block", got)
		}
		if got := heard(nodes[1], "x"); got != "2" {
			t.Errorf("node 1 heard %q, want 2: the reverse direction must flow", got)
		}
		if _, err := nodes[1].e.Call(context.Background(), 2, kindRPC, nil); !errors.Is(err, transport.ErrUnreachable) {
			t.Errorf("Call into a block: %v, want ErrUnreachable", err)
		}
		// The request from 2 gets through; the reply is lost in the block.
		served := make(chan struct{}, 1)
		nodes[1].e.Handle(kindRPC, transport.HandlerFuncs{OnServe: func(context.Context, transport.NodeID, transport.Kind, []byte) ([]byte, error) {
			served <- struct{}{}
			return nil, nil
		}})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		_, err := nodes[2].e.Call(ctx, 1, kindRPC, nil)
		if !errors.Is(err, kv.ErrTimeout) || time.Since(start) != time.Second {
			t.Errorf("Call whose reply is blocked: %v after %v, want kv.ErrTimeout after 1s", err, time.Since(start))
		}
		select {
		case <-served:
		default:
			t.Error("the request did not reach node 1")
		}
		n.Unblock(1, 2)
		nodes[1].e.Handle(kindRPC, nodes[1])
		if _, err := nodes[1].e.Call(context.Background(), 2, kindRPC, nil); err != nil {
			t.Errorf("Call after Unblock: %v", err)
		}
		if s := n.Stats(); s.Blocked != 2 || s.Refused != 1 {
			t.Errorf("stats %+v: want 2 blocked (a message, a reply), 1 refused", s)
		}
	})
}

func TestIsolate(t *testing.T) {
	bubble(t, 1, ids(3), func(t *testing.T, n *Network, nodes map[transport.NodeID]*node) {
		n.Isolate(3)
		sendAll(t, nodes, "x")
		for id, want := range map[transport.NodeID]string{1: "2", 2: "1", 3: ""} {
			if got := heard(nodes[id], "x"); got != want {
				t.Errorf("isolated 3: node %d heard %q, want %q", id, got, want)
			}
		}
		n.Heal()
		sendAll(t, nodes, "y")
		if got := sortedCSV(heard(nodes[3], "y")); got != "1,2" {
			t.Errorf("after Heal node 3 heard %q, want 1,2", got)
		}
	})
}

func TestFaultInFlight(t *testing.T) {
	bubble(t, 1, ids(2), func(t *testing.T, n *Network, nodes map[transport.NodeID]*node) {
		n.SetLatency(10*time.Millisecond, 10*time.Millisecond)
		nodes[1].e.Send(2, kindRaft, []byte("a"))
		n.Partition([]transport.NodeID{1}, []transport.NodeID{2}) // cuts the wire under the message
		time.Sleep(20 * time.Millisecond)
		synctest.Wait()
		if nodes[2].count() != 0 || n.Stats().Blocked != 1 {
			t.Errorf("message in flight crossed a new partition: got %q, stats %+v", nodes[2].got(), n.Stats())
		}
	})
}

func TestLatencyExact(t *testing.T) {
	bubble(t, 1, ids(2), func(t *testing.T, n *Network, nodes map[transport.NodeID]*node) {
		n.SetLatency(10*time.Millisecond, 10*time.Millisecond)
		nodes[1].e.Send(2, kindRaft, []byte("x"))
		time.Sleep(9 * time.Millisecond)
		synctest.Wait()
		if c := nodes[2].count(); c != 0 {
			t.Fatalf("delivered after 9ms with a 10ms latency")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if c := nodes[2].count(); c != 1 {
			t.Fatalf("not delivered after 10ms with a 10ms latency")
		}
	})
}

func TestDropRate(t *testing.T) {
	const total = 2000
	bubble(t, 7, ids(2), func(t *testing.T, n *Network, nodes map[transport.NodeID]*node) {
		n.SetDropRate(0.3)
		for i := range total {
			nodes[1].e.Send(2, kindRaft, []byte(strconv.Itoa(i)))
		}
		synctest.Wait()
		got := nodes[2].count()
		if got < total*6/10 || got > total*8/10 {
			t.Errorf("delivered %d of %d at drop rate 0.3, want 60%%-80%%", got, total)
		}
		if s := n.Stats(); int(s.Dropped)+got != total {
			t.Errorf("dropped %d + delivered %d != %d sent", s.Dropped, got, total)
		}
	})
}

func TestDuplicateRate(t *testing.T) {
	const total = 2000
	bubble(t, 7, ids(2), func(t *testing.T, n *Network, nodes map[transport.NodeID]*node) {
		n.SetDuplicateRate(0.2)
		n.SetLatency(0, time.Millisecond) // FIFO still: copies stay behind their original
		for i := range total {
			nodes[1].e.Send(2, kindRaft, []byte(strconv.Itoa(i)))
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		got := nodes[2].got()
		if len(got) < total*11/10 || len(got) > total*13/10 {
			t.Errorf("delivered %d for %d sent at duplicate rate 0.2, want 110%%-130%%", len(got), total)
		}
		if s := n.Stats(); int(s.Duplicated)+total != len(got) {
			t.Errorf("duplicated %d + %d sent != %d delivered", s.Duplicated, total, len(got))
		}
		assertOrdered(t, got, false)
	})
}

// assertOrdered checks that the numbered messages of each sender arrive in
// non-decreasing order (strictly increasing if strict).
func assertOrdered(t *testing.T, got []string, strict bool) {
	t.Helper()
	last := map[string]int{}
	for _, m := range got {
		from, p, _ := strings.Cut(m, ":")
		i, _ := strconv.Atoi(p)
		prev, seen := last[from]
		if seen && (i < prev || strict && i == prev) {
			t.Fatalf("from %s: %d after %d", from, i, prev)
		}
		last[from] = i
	}
}

func TestFIFOWithJitter(t *testing.T) {
	const perSender = 1000
	bubble(t, 3, ids(3), func(t *testing.T, n *Network, nodes map[transport.NodeID]*node) {
		n.SetLatency(time.Millisecond, 50*time.Millisecond)
		for i := range perSender {
			nodes[1].e.Send(3, kindRaft, []byte(strconv.Itoa(i)))
			nodes[2].e.Send(3, kindRaft, []byte(strconv.Itoa(i)))
			if i%100 == 0 {
				time.Sleep(time.Millisecond) // spread the sends over time
			}
		}
		time.Sleep(50 * time.Millisecond)
		synctest.Wait()
		got := nodes[3].got()
		if len(got) != 2*perSender {
			t.Fatalf("delivered %d, want %d", len(got), 2*perSender)
		}
		assertOrdered(t, got, true)
	})
}

func TestReorder(t *testing.T) {
	bubble(t, 3, ids(2), func(t *testing.T, n *Network, nodes map[transport.NodeID]*node) {
		n.SetReorder(true)
		n.SetLatency(0, 20*time.Millisecond)
		for i := range 200 {
			nodes[1].e.Send(2, kindRaft, []byte(strconv.Itoa(i)))
		}
		time.Sleep(20 * time.Millisecond)
		synctest.Wait()
		got := nodes[2].got()
		if len(got) != 200 {
			t.Fatalf("delivered %d, want 200", len(got))
		}
		inversions := 0
		for i := 1; i < len(got); i++ {
			a, _ := strconv.Atoi(strings.TrimPrefix(got[i-1], "1:"))
			b, _ := strconv.Atoi(strings.TrimPrefix(got[i], "1:"))
			if b < a {
				inversions++
			}
		}
		if inversions == 0 {
			t.Error("no message overtook another with reordering on")
		}
	})
}

func TestQueueBound(t *testing.T) {
	bubble(t, 1, ids(2), func(t *testing.T, n *Network, nodes map[transport.NodeID]*node) {
		n.SetQueueSize(3)
		n.SetLatency(10*time.Millisecond, 10*time.Millisecond)
		for i := range 3 {
			if err := nodes[1].e.Send(2, kindRaft, []byte{byte(i)}); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
		}
		if err := nodes[1].e.Send(2, kindRaft, nil); !errors.Is(err, transport.ErrQueueFull) {
			t.Fatalf("Send beyond the bound: %v, want ErrQueueFull", err)
		}
		if err := nodes[2].e.Send(1, kindRaft, nil); err != nil {
			t.Errorf("the bound is per pair, but the reverse direction failed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		if err := nodes[1].e.Send(2, kindRaft, nil); err != nil {
			t.Errorf("Send after the queue drained: %v", err)
		}
		if s := nodes[1].e.Stats(); s.DroppedQueueFull != 1 {
			t.Errorf("DroppedQueueFull = %d, want 1", s.DroppedQueueFull)
		}
	})
}

func TestCallsAcrossFaults(t *testing.T) {
	bubble(t, 1, ids(2), func(t *testing.T, n *Network, nodes map[transport.NodeID]*node) {
		var deadline time.Time
		release := make(chan struct{})
		nodes[2].e.Handle(kindRPC, transport.HandlerFuncs{OnServe: func(ctx context.Context, _ transport.NodeID, _ transport.Kind, p []byte) ([]byte, error) {
			switch string(p) {
			case "deadline":
				deadline, _ = ctx.Deadline()
			case "not-leader":
				return nil, fmt.Errorf("shard 3: %w", kv.Errorf(kv.CodeNotLeader, "leader is 1"))
			case "block":
				select {
				case <-release:
				case <-ctx.Done():
				}
				return nil, ctx.Err()
			}
			return p, nil
		}})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()

		// The deadline reaches Serve exactly (one clock in a bubble).
		want, _ := ctx.Deadline()
		if _, err := nodes[1].e.Call(ctx, 2, kindRPC, []byte("deadline")); err != nil || !deadline.Equal(want) {
			t.Errorf("Serve deadline %v (err %v), want %v", deadline, err, want)
		}
		// Codes come back as in TCP.
		_, err := nodes[1].e.Call(ctx, 2, kindRPC, []byte("not-leader"))
		var ke *kv.Error
		if !errors.As(err, &ke) || ke.Code != kv.CodeNotLeader || ke.Message != "leader is 1" {
			t.Errorf("remote error %#v, want NOT_LEADER leader is 1", err)
		}
		if _, err := nodes[1].e.Call(ctx, 2, transport.KindControl, nil); kv.CodeOf(err) != kv.CodeUnavailable {
			t.Errorf("Call of a kind without handler: %v, want UNAVAILABLE", err)
		}

		// A dropped request or reply: the caller times out.
		n.SetDropRate(1)
		short, cancel2 := context.WithTimeout(context.Background(), time.Second)
		defer cancel2()
		if _, err := nodes[1].e.Call(short, 2, kindRPC, []byte("x")); !errors.Is(err, kv.ErrTimeout) {
			t.Errorf("Call with every message dropped: %v, want kv.ErrTimeout", err)
		}
		n.SetDropRate(0)

		// The callee crashes mid-call: the caller learns at once.
		errc := make(chan error, 1)
		go func() {
			_, err := nodes[1].e.Call(ctx, 2, kindRPC, []byte("block"))
			errc <- err
		}()
		synctest.Wait() // the request is being served
		nodes[2].e.Close()
		if err := <-errc; !errors.Is(err, transport.ErrConnectionLost) || !errors.Is(err, kv.ErrTimeout) {
			t.Errorf("Call to a node that crashed mid-call: %v, want ErrConnectionLost (outcome unknown)", err)
		}
		if _, err := nodes[1].e.Call(ctx, 2, kindRPC, nil); !errors.Is(err, transport.ErrUnreachable) {
			t.Errorf("Call to a closed node: %v, want ErrUnreachable", err)
		}
		if ctx.Err() != nil {
			t.Error("Calls to a closed node waited for their deadline")
		}

		// The caller crashes mid-call: ErrClosed.
		n2 := attach(t, n, 2)
		n2.e.Handle(kindRPC, transport.HandlerFuncs{OnServe: func(ctx context.Context, _ transport.NodeID, _ transport.Kind, _ []byte) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}})
		go func() {
			_, err := nodes[1].e.Call(ctx, 2, kindRPC, nil)
			errc <- err
		}()
		synctest.Wait()
		nodes[1].e.Close()
		if err := <-errc; !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Call from a node that closed mid-call: %v, want ErrClosed", err)
		}
		close(release)
	})
}

func TestRestart(t *testing.T) {
	bubble(t, 1, ids(2), func(t *testing.T, n *Network, nodes map[transport.NodeID]*node) {
		n.SetLatency(5*time.Millisecond, 5*time.Millisecond)
		old := nodes[2]
		nodes[1].e.Send(2, kindRaft, []byte("in flight"))
		old.e.Close()
		if err := old.e.Send(1, kindRaft, nil); !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Send from a closed endpoint: %v, want ErrClosed", err)
		}
		if err := nodes[1].e.Send(2, kindRaft, []byte("while down")); err != nil {
			t.Errorf("Send to a crashed node: %v, want nil (the message is lost)", err)
		}
		fresh := attach(t, n, 2)
		if fresh.e == old.e {
			t.Fatal("Endpoint after Close returned the closed endpoint")
		}
		if again := n.Endpoint(2); again != fresh.e {
			t.Error("Endpoint of a running node returned a new endpoint")
		}
		nodes[1].e.Send(2, kindRaft, []byte("after"))
		time.Sleep(5 * time.Millisecond)
		synctest.Wait()
		if got := fresh.got(); len(got) != 1 || got[0] != "1:after" {
			t.Errorf("restarted node got %q, want only [1:after]", got)
		}
		if old.count() != 0 {
			t.Errorf("closed endpoint got %q", old.got())
		}
		if s := n.Stats(); s.Lost != 2 {
			t.Errorf("Lost = %d, want 2 (in flight at the crash, sent while down)", s.Lost)
		}
	})
}

func TestSeedReplay(t *testing.T) {
	run := func(seed int64) (delivered []string) {
		synctest.Test(t, func(t *testing.T) {
			n := New(seed)
			defer n.Close()
			a, b := attach(t, n, 1), attach(t, n, 2)
			n.SetDropRate(0.5)
			n.SetDuplicateRate(0.3)
			n.SetReorder(true)
			n.SetLatency(0, 10*time.Millisecond)
			for i := range 100 {
				a.e.Send(2, kindRaft, []byte(strconv.Itoa(i)))
			}
			time.Sleep(10 * time.Millisecond)
			synctest.Wait()
			delivered = b.got()
		})
		return delivered
	}
	first, again, other := run(42), run(42), run(43)
	if strings.Join(first, " ") != strings.Join(again, " ") {
		t.Errorf("seed 42 replayed differently:\n%q\n%q", first, again)
	}
	if strings.Join(first, " ") == strings.Join(other, " ") {
		t.Error("seeds 42 and 43 made the same decisions")
	}
}

// TestConcurrentUse runs senders, callers, fault changes and restarts at once
// in real time, for the race detector, then checks Close stops everything.
func TestConcurrentUse(t *testing.T) {
	checkNoGoroutines(t)
	n := New(5)
	for id := range transport.NodeID(4) {
		attach(t, n, id+1)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for id := transport.NodeID(1); id <= 4; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				e := n.Endpoint(id)
				to := transport.NodeID(i%4 + 1)
				e.Send(to, kindRaft, []byte("m"))
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
				e.Call(ctx, to, kindRPC, []byte("c"))
				cancel()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			switch i % 6 {
			case 0:
				n.Partition([]transport.NodeID{1, 2}, []transport.NodeID{3})
			case 1:
				n.SetLatency(0, time.Millisecond)
				n.SetReorder(i%4 == 1)
			case 2:
				n.SetDropRate(0.2)
				n.SetDuplicateRate(0.2)
			case 3:
				n.Block(2, 4)
				n.Isolate(1)
			case 4:
				n.Endpoint(3).Close()
				attach(t, n, 3)
			case 5:
				n.Heal()
				n.SetDropRate(0)
			}
			time.Sleep(time.Millisecond) // pacing the nemesis, not waiting for state
		}
	}()
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) && n.Stats().Delivered < 500 {
		time.Sleep(time.Millisecond) // polling
	}
	close(stop)
	wg.Wait()
	if s := n.Stats(); s.Delivered == 0 || s.Sent == 0 {
		t.Errorf("no traffic: %+v", s)
	}
	n.Close()
	if _, err := n.Endpoint(1).Call(context.Background(), 2, kindRPC, nil); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Call after the network closed: %v, want ErrClosed", err)
	}
	checkNoGoroutines(t)
}

// checkNoGoroutines polls until no goroutine runs this package's code
// outside test goroutines.
func checkNoGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "internal/transport/simnet.") && !strings.Contains(g, "testing.tRunner") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines still running:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}
