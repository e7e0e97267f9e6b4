package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fulcrumdb/fulcrum/internal/config"
	"github.com/fulcrumdb/fulcrum/internal/resp"
	"github.com/fulcrumdb/fulcrum/internal/server"
	"github.com/fulcrumdb/fulcrum/internal/server/servertest"
)

// startEventualNode runs a one-node cluster (a cluster member, so that
// namespaces can be eventual) with the namespace ns: eventual, one
// replica, W 1 R 1. A W or R of 2 is then refused by the server with
// INVALID at every request, which shows that the override reached it.
func startEventualNode(t *testing.T, ns string) *server.Server {
	t.Helper()
	// Port 0: no other node needs to know where this one listens.
	const peer = "127.0.0.1:0"
	srv := servertest.Start(t, func(c *config.Config) {
		c.Cluster.ID = 1
		c.Cluster.PeerAddr = peer
		c.Cluster.Peers = []string{"1=" + peer}
		c.Cluster.Shards = 1
		c.Cluster.Tick = config.Duration(20 * time.Millisecond)
		c.Cluster.RequestTimeout = config.Duration(time.Second)
	})
	c := redis.NewClient(&redis.Options{Addr: srv.RESPAddr(), MaxRetries: -1})
	defer c.Close()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The control plane elects itself a few ticks after start.
		err := c.Do(ctx, "FULCRUM.NAMESPACE", "CREATE", ns, "CONSISTENCY", "eventual", "REPLICAS", "1", "SHARDS", "1", "W", "1", "R", "1").Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("create namespace %s: still failing after 10s: %v", ns, err)
		}
		time.Sleep(20 * time.Millisecond) // polling for the election, with a deadline
	}
	return srv
}

// doOne sends one request on c and returns its error.
func doOne(ctx context.Context, c Conn, op Op, key string) error {
	errs := make([]error, 1)
	c.Do(ctx, []Request{{Op: op, Key: []byte(key), Value: []byte("v")}}, errs)
	return errs[0]
}

func TestQuorumReachesFulcrum(t *testing.T) {
	const ns = "ev"
	srv := startEventualNode(t, ns)
	ctx := context.Background()
	for _, spec := range []string{"f-resp=resp://" + srv.RESPAddr(), "f-http=http://" + srv.HTTPAddr()} {
		tg, err := ParseTarget(spec)
		if err != nil {
			t.Fatal(err)
		}
		if !TakesQuorum(tg) {
			t.Fatalf("%s: TakesQuorum false, want true", spec)
		}
		connect := func(q Quorum) Conn {
			t.Helper()
			c, err := tg.Connect(ctx, ConnOptions{Namespace: ns, Quorum: q}, 0)
			if err != nil {
				t.Fatalf("%s %v: %v", spec, q, err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
		// The namespace's own quorum, and an explicit one it can meet.
		for _, q := range []Quorum{{}, {W: 1, R: 1}} {
			c := connect(q)
			for _, op := range []Op{OpWrite, OpRead, OpDelete} {
				if err := doOne(ctx, c, op, "k"); err != nil {
					t.Errorf("%s %v %s: got %v, want success", spec, q, op, err)
				}
			}
		}
		// One replica cannot meet 2: the server refuses each request
		// whose override it received, and only those.
		for _, tc := range []struct {
			q       Quorum
			op      Op
			refused string // "" = succeeds
		}{
			{Quorum{W: 2}, OpWrite, "w 2"},
			{Quorum{W: 2}, OpDelete, "w 2"},
			{Quorum{W: 2}, OpRead, ""},
			{Quorum{R: 2}, OpRead, "r 2"},
			{Quorum{R: 2}, OpWrite, ""},
			{Quorum{W: 1, R: 2}, OpRead, "r 2"},
			{Quorum{W: 2, R: 1}, OpWrite, "w 2"},
		} {
			err := doOne(ctx, connect(tc.q), tc.op, "k")
			switch {
			case tc.refused == "" && err != nil:
				t.Errorf("%s %v %s: got %v, want success", spec, tc.q, tc.op, err)
			case tc.refused != "" && (ErrorCode(err) != "INVALID" || !strings.Contains(err.Error(), tc.refused)):
				t.Errorf("%s %v %s: got %v (code %q), want INVALID %s", spec, tc.q, tc.op, err, ErrorCode(err), tc.refused)
			}
		}
	}
}

func TestQuorumRecordedInRun(t *testing.T) {
	const ns = "ev"
	srv := startEventualNode(t, ns)
	var targets []Target
	for _, spec := range []string{"f-resp=resp://" + srv.RESPAddr(), "f-http=http://" + srv.HTTPAddr()} {
		tg, err := ParseTarget(spec)
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, tg)
	}
	w := Workload{ReadRatio: 0.5, Keys: 20, ValueSize: 8, Namespace: ns, KeyPrefix: "q:"}
	cfg := Config{Targets: targets, Workload: w, Clients: 2, Ops: 100, Seed: 1, Quorum: Quorum{W: 1, R: 1}}
	runs, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if r.Quorum == nil || *r.Quorum != (Quorum{W: 1, R: 1}) {
			t.Errorf("%s: recorded quorum %v, want w=1 r=1", r.Target, r.Quorum)
		}
		if len(r.Errors) > 0 {
			t.Errorf("%s: got errors %v, want none", r.Target, r.Errors)
		}
	}

	// A quorum the namespace cannot meet fails the run at preload, with
	// the server's reason.
	cfg.Quorum, cfg.Preload = Quorum{W: 2}, true
	cfg.Targets = targets[:1]
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "w 2") {
		t.Errorf("W 2 on one replica: got %v, want the preload to fail with INVALID w 2", err)
	}

	cfg.Quorum = Quorum{W: -1}
	if _, err := Run(context.Background(), cfg); err == nil {
		t.Error("W -1: got no error")
	}
}

// fakeRedis is a Redis-protocol server that records every command and
// answers like a server that has no FULCRUM commands: +OK to anything
// else, a nil bulk to GET. It stops when the test ends.
type fakeRedis struct {
	addr string
	mu   struct {
		sync.Mutex
		cmds []string
	}
}

func startFakeRedis(t *testing.T) *fakeRedis {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRedis{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var connsMu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, nc)
			connsMu.Unlock()
			wg.Go(func() { f.serve(nc) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		connsMu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	return f
}

func (f *fakeRedis) serve(nc net.Conn) {
	defer nc.Close()
	r := resp.NewReader(bufio.NewReader(nc), resp.ReaderLimits{})
	w := bufio.NewWriter(nc)
	for {
		args, err := r.ReadCommand()
		if err != nil {
			return
		}
		parts := make([]string, len(args))
		for i, a := range args {
			parts[i] = string(a)
		}
		r.Release()
		cmd := strings.Join(parts, " ")
		f.mu.Lock()
		f.mu.cmds = append(f.mu.cmds, cmd)
		f.mu.Unlock()
		switch name := strings.ToUpper(parts[0]); {
		case strings.HasPrefix(name, "FULCRUM."), name == "HELLO":
			fmt.Fprintf(w, "-ERR unknown command '%s'\r\n", parts[0])
		case name == "GET":
			w.WriteString("$-1\r\n")
		case name == "PING":
			w.WriteString("+PONG\r\n")
		default:
			w.WriteString("+OK\r\n")
		}
		if w.Flush() != nil {
			return
		}
	}
}

// commands returns the commands received so far, but HELLO and PING (the
// client's handshake).
func (f *fakeRedis) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.mu.cmds {
		if n := strings.ToUpper(strings.Fields(c)[0]); n != "HELLO" && n != "PING" {
			out = append(out, c)
		}
	}
	return out
}

func TestQuorumRESPSetup(t *testing.T) {
	ctx := context.Background()

	// No quorum: nothing but NAMESPACE is sent, so a server without
	// FULCRUM commands is driven as before.
	f := startFakeRedis(t)
	tg, err := ParseTarget("redis=resp://" + f.addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tg.Connect(ctx, ConnOptions{Namespace: "ns1"}, 0)
	if err != nil {
		t.Fatalf("connect without a quorum: %v", err)
	}
	if err := doOne(ctx, c, OpWrite, "k"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got, want := strings.Join(f.commands(), "; "), "NAMESPACE ns1; set k v"; got != want {
		t.Errorf("commands: got %q, want %q", got, want)
	}

	// A quorum: FULCRUM.CONSISTENCY after NAMESPACE, with only what is set;
	// refused here, so the connection fails, naming the target.
	for _, tc := range []struct {
		q    Quorum
		want string
	}{
		{Quorum{W: 2}, "FULCRUM.CONSISTENCY W 2"},
		{Quorum{R: 3}, "FULCRUM.CONSISTENCY R 3"},
		{Quorum{W: 1, R: 2}, "FULCRUM.CONSISTENCY W 1 R 2"},
	} {
		f := startFakeRedis(t)
		tg, err := ParseTarget("redis=resp://" + f.addr)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tg.Connect(ctx, ConnOptions{Namespace: "ns1", Quorum: tc.q}, 0)
		if err == nil {
			t.Fatalf("%v: connect to a server without FULCRUM.CONSISTENCY: got no error", tc.q)
		}
		for _, want := range []string{"connect redis", tc.want, "needs a Fulcrum server", "unknown command"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%v: error %q lacks %q", tc.q, err, want)
			}
		}
		if got := f.commands(); len(got) < 2 || got[0] != "NAMESPACE ns1" || got[1] != tc.want {
			t.Errorf("%v: commands %q, want NAMESPACE ns1 then %s", tc.q, got, tc.want)
		}
	}
}

func TestQuorumRunRefusedByRedis(t *testing.T) {
	f := startFakeRedis(t)
	tg, err := ParseTarget("redis=resp://" + f.addr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), Config{
		Targets: []Target{tg}, Workload: Workload{ReadRatio: 1, Keys: 10}, Ops: 10, Seed: 1, Quorum: Quorum{W: 1},
	})
	if err == nil || !strings.Contains(err.Error(), "connect redis") {
		t.Fatalf("got %v, want the run to fail at connect, naming the target", err)
	}
	var re redis.Error
	if !errors.As(err, &re) {
		t.Errorf("got %v, want the server's error wrapped", err)
	}
}

func TestQuorumString(t *testing.T) {
	for _, tc := range []struct {
		q    Quorum
		want string
	}{
		{Quorum{}, "w=default r=default"},
		{Quorum{W: 2}, "w=2 r=default"},
		{Quorum{W: 1, R: 3}, "w=1 r=3"},
	} {
		if got := tc.q.String(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.q, got, tc.want)
		}
	}
}
