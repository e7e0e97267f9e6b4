//go:build unix

package main_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	fulcrum "github.com/fulcrumdb/fulcrum/client"
)

// devReadyLimit bounds how long "fulcrum dev" may take to report a ready
// cluster, and devStopLimit how long it may take to stop.
const (
	devReadyLimit = 30 * time.Second
	devStopLimit  = 30 * time.Second
)

// freePortRange returns a base port whose next n ports were all free a
// moment ago, below the usual ephemeral range so that outgoing connections
// do not take them meanwhile.
func freePortRange(t *testing.T, n int, after int) int {
	t.Helper()
	for base := after; base+n < 32768; base += n {
		var lns []net.Listener
		free := true
		for p := base; p < base+n; p++ {
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				free = false
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if free {
			return base
		}
	}
	t.Fatalf("no %d free ports in a row below 32768", n)
	return 0
}

// devProcess is a running "fulcrum dev".
type devProcess struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuf
	exited         chan struct{}
	state          *os.ProcessState // set before exited is closed
}

func (d *devProcess) hasExited() bool {
	select {
	case <-d.exited:
		return true
	default:
		return false
	}
}

// waitStdout polls dev's stdout until it contains s; it fails if dev exits
// first or limit passes.
func (d *devProcess) waitStdout(t *testing.T, s string, limit time.Duration) {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(d.stdout.String(), s) {
		select {
		case <-d.exited:
			t.Fatalf("fulcrum dev exited (%v) before printing %q\nstdout:\n%s\nstderr:\n%s", d.state, s, d.stdout, d.stderr)
		case <-deadline.C:
			t.Fatalf("fulcrum dev did not print %q within %v\nstdout:\n%s\nstderr:\n%s", s, limit, d.stdout, d.stderr)
		case <-tick.C:
		}
	}
}

var devTableRow = regexp.MustCompile(`(?m)^([1-9])\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+([0-9]+)$`)

// devNodeRow is a line of dev's node table.
type devNodeRow struct {
	resp, http string
	pid        int
}

// startDev runs "fulcrum dev" on a free range of ports until its node table
// is printed, retrying if the range was taken meanwhile. Whatever is left
// of it is killed when the test ends.
func startDev(t *testing.T, dir string, extra ...string) (*devProcess, map[int]devNodeRow) {
	t.Helper()
	bin := binary(t)
	after := 15000 + os.Getpid()%500*20
	for attempt := 1; ; attempt++ {
		base := freePortRange(t, 30, after)
		after = base + 30
		d := &devProcess{stdout: &syncBuf{}, stderr: &syncBuf{}, exited: make(chan struct{})}
		d.cmd = exec.Command(bin, append([]string{"dev", "--base-port", strconv.Itoa(base), "--data-dir", dir}, extra...)...)
		d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
		d.cmd.WaitDelay = 5 * time.Second
		if err := d.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			// Owned by the test: ends when dev exits, which cleanup ensures.
			d.cmd.Wait()
			d.state = d.cmd.ProcessState
			close(d.exited)
		}()
		t.Cleanup(func() {
			if !d.hasExited() {
				d.cmd.Process.Kill()
				<-d.exited
			}
			// The nodes get SIGTERM from the kernel when dev dies
			// (Pdeathsig, Linux). Their pids are not killed here: once
			// reaped they may belong to someone else.
			if t.Failed() {
				t.Logf("fulcrum dev stdout:\n%s\nstderr:\n%s", d.stdout, d.stderr)
			}
		})
		deadline := time.Now().Add(readyLimit)
		for !strings.Contains(d.stdout.String(), "Stop with Ctrl-C") && !d.hasExited() && time.Now().Before(deadline) {
			select {
			case <-d.exited:
			case <-time.After(10 * time.Millisecond):
			}
		}
		if d.hasExited() && strings.Contains(d.stderr.String(), "ports in use") && attempt < startAttempts {
			t.Logf("ports from %d were taken; retrying", base)
			continue
		}
		d.waitStdout(t, "Stop with Ctrl-C", time.Second)
		rows := make(map[int]devNodeRow)
		for _, m := range devTableRow.FindAllStringSubmatch(d.stdout.String(), -1) {
			id, _ := strconv.Atoi(m[1])
			pid, _ := strconv.Atoi(m[6])
			rows[id] = devNodeRow{resp: m[2], http: m[3], pid: pid}
		}
		return d, rows
	}
}

// TestProcessDev runs "fulcrum dev": a SET through node 1 is read through
// node 3; a node killed with SIGKILL is reported and the others go on
// serving; SIGINT stops everything with status 0 and no process left.
func TestProcessDev(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "dev")
	start := time.Now()
	d, rows := startDev(t, dir, "--shards", "4")
	if len(rows) != 3 {
		t.Fatalf("node table has %d rows, want 3:\n%s", len(rows), d.stdout)
	}
	d.waitStdout(t, "cluster ready", devReadyLimit)
	t.Logf("cluster ready after %v", time.Since(start).Round(time.Millisecond))
	for id, r := range rows {
		if err := syscall.Kill(r.pid, 0); err != nil {
			t.Errorf("node %d: pid %d from the table: %v", id, r.pid, err)
		}
	}

	ctx := context.Background()
	client := func(id int) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: rows[id].resp, MaxRetries: -1})
		t.Cleanup(func() { c.Close() })
		return c
	}
	n1, n3 := client(1), client(3)
	if err := n1.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET k v through node 1: %v", err)
	}
	if got, err := n3.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k through node 3 = %q, %v; want \"v\"", got, err)
	}

	// kill -9 node 2: dev reports it, nodes 1 and 3 keep a quorum.
	if err := syscall.Kill(rows[2].pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	report := fmt.Sprintf("fulcrum dev: node 2 (pid %d) exited unexpectedly: signal: killed\n", rows[2].pid)
	deadline := time.Now().Add(exitLimit)
	for !strings.Contains(d.stderr.String(), report) {
		if time.Now().After(deadline) {
			t.Fatalf("dev did not report the death of node 2 within %v", exitLimit)
		}
		select {
		case <-d.exited:
			t.Fatalf("fulcrum dev exited when node 2 died: %v", d.state)
		case <-time.After(10 * time.Millisecond):
		}
	}
	killed := time.Now()
	deadline = killed.Add(15 * time.Second)
	for {
		err := n1.Set(ctx, "k", "after", 0).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SET through node 1 with node 2 dead: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling an election, under a deadline
	}
	t.Logf("writes through node 1 with node 2 dead: OK %v after the kill", time.Since(killed).Round(time.Millisecond))
	if got, err := n3.Get(ctx, "k").Result(); err != nil || got != "after" {
		t.Fatalf("GET k through node 3 = %q, %v; want \"after\"", got, err)
	}

	stopStart := time.Now()
	if err := d.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
	case <-time.After(devStopLimit):
		t.Fatalf("fulcrum dev still running %v after SIGINT", devStopLimit)
	}
	t.Logf("stopped %v after SIGINT", time.Since(stopStart).Round(time.Millisecond))
	if code := d.state.ExitCode(); code != 0 {
		t.Errorf("fulcrum dev exit status %d after SIGINT, want 0 (%v)", code, d.state)
	}
	if !strings.HasSuffix(d.stdout.String(), "stopped\n") {
		t.Errorf("stdout does not end with \"stopped\":\n%s", d.stdout)
	}
	for id, r := range rows {
		if err := syscall.Kill(r.pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("node %d (pid %d) is still there after dev exited: kill(pid, 0) = %v", id, r.pid, err)
		}
	}
	if strings.Contains(d.stderr.String(), "killing node") {
		t.Errorf("dev had to kill nodes that did not stop on SIGTERM:\n%s", d.stderr)
	}
}

// TestProcessDevPrimaryFailover runs "fulcrum dev", creates a
// replication=primary namespace with sync acks through the CLI, kills the
// node holding every shard's primary (active-passive: node 3) with
// SIGKILL, and
// checks that writes through another node resume within seconds, that
// every acknowledged write is still there, and that "fulcrum cluster
// status" shows the new epoch.
func TestProcessDevPrimaryFailover(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "dev")
	d, rows := startDev(t, dir, "--shards", "2")
	d.waitStdout(t, "cluster ready", devReadyLimit)
	code, out, errOut := run(t, "namespace", "create", "orders", "--replication", "primary", "--ack", "sync", "--shards", "2", "--addr", "http://"+rows[2].http)
	if code != 0 {
		t.Fatalf("namespace create: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "replication=primary ack=sync ack_replicas=1 availability=active-passive") {
		t.Fatalf("namespace create printed:\n%s", out)
	}
	ctx := context.Background()
	client := func(id int) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: rows[id].resp, MaxRetries: -1, PoolSize: 1,
			OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "NAMESPACE", "orders").Err() }})
		t.Cleanup(func() { c.Close() })
		return c
	}
	n2, n1 := client(2), client(1)
	// A client that goes through "fulcrum proxy", which follows the active.
	proxyAddr := freeAddrs(t, 1)[0]
	var nodesFlag []string
	for id := 1; id <= 3; id++ {
		nodesFlag = append(nodesFlag, "http://"+rows[id].http)
	}
	px := launchNode(t, binary(t), "", proxyAddr, "", []string{"proxy", "--namespace", "orders", "--listen", proxyAddr,
		"--nodes", strings.Join(nodesFlag, ","), "--poll", "50ms"})
	px.waitOutput("listening on", 10*time.Second)
	viaProxy := redis.NewClient(&redis.Options{Addr: proxyAddr, MaxRetries: -1, PoolSize: 1,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "NAMESPACE", "orders").Err() }})
	t.Cleanup(func() { viaProxy.Close() })
	setUntil := func(c *redis.Client, key, val string, limit time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			err := c.Set(ctx, key, val, 0).Err()
			if err == nil {
				return time.Since(start)
			}
			if time.Since(start) > limit {
				t.Fatalf("SET %s: still failing after %v: %v", key, limit, err)
			}
			time.Sleep(20 * time.Millisecond) // polling a failover, under a deadline
		}
	}
	setUntil(n2, "k0", "v0", 15*time.Second)
	const keys = 40
	for i := 1; i < keys; i++ {
		// Sync refuses writes while a loaded replica is out of the
		// in-sync set for a moment.
		setUntil(n2, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i), 10*time.Second)
	}
	// Active-passive: node 3 (the highest id) is every shard's primary.
	code, out, errOut = run(t, "cluster", "status", "--addr", "http://"+rows[3].http)
	if code != 0 || len(regexp.MustCompile(`(?m)^orders\s+\d\s+primary\s+3\s+1\s`).FindAllString(out, -1)) != 2 {
		t.Fatalf("cluster status of node 3 before the kill: want it primary of both shards in epoch 1 (exit %d):\n%s%s", code, out, errOut)
	}
	nodeVia := func(c *redis.Client) string {
		info, err := c.Info(ctx, "cluster").Result()
		if err != nil {
			return err.Error()
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "fulcrum_node_id:"); ok {
				return v
			}
		}
		return "?"
	}
	// And a Go client (package client) that follows the active itself.
	fc, err := fulcrum.New(ctx, fulcrum.Options{Nodes: nodesFlag, Namespace: "orders", Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	if err := fc.Set(ctx, "c0", "v"); err != nil || fc.Node() != 3 {
		t.Fatalf("Go client: SET %v, talking to node %d; want the active node 3", err, fc.Node())
	}
	setUntil(viaProxy, "p0", "v", 10*time.Second)
	if got := nodeVia(viaProxy); got != "3" {
		t.Fatalf("the proxy sends clients to node %s, want the active node 3", got)
	}
	if err := syscall.Kill(rows[3].pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took := setUntil(n2, "after", "failover", 20*time.Second)
	t.Logf("writes through node 2 resumed %v after SIGKILL of the primary", took.Round(time.Millisecond))
	took = setUntil(viaProxy, "p1", "v", 10*time.Second)
	if got := nodeVia(viaProxy); got != "1" && got != "2" {
		t.Fatalf("after the failover the proxy sends clients to node %s", got)
	}
	t.Logf("and through the proxy %v after that, to node %s", took.Round(time.Millisecond), nodeVia(viaProxy))
	start := time.Now()
	for {
		err := fc.Set(ctx, "c1", "v")
		if err == nil {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("Go client: SET after the failover: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // a write is not retried after a lost connection: the caller retries
	}
	if got, ok, err := fc.Get(ctx, "c0"); err != nil || !ok || got != "v" || (fc.Node() != 1 && fc.Node() != 2) {
		t.Fatalf("Go client after the failover: GET c0 = %q %v %v from node %d", got, ok, err, fc.Node())
	}
	t.Logf("and the Go client %v after that, to node %d", time.Since(start).Round(time.Millisecond), fc.Node())
	for i := 0; i < keys; i++ {
		if got, err := n1.Get(ctx, fmt.Sprintf("k%d", i)).Result(); err != nil || got != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%d through node 1 after failover: %q %v (an acknowledged sync write is gone)", i, got, err)
		}
	}
	code, out, errOut = run(t, "cluster", "status", "--addr", "http://"+rows[1].http)
	if code != 0 || !strings.Contains(out, "NAMESPACE  SHARD  ROLE") || !regexp.MustCompile(`orders\s+\d\s+\w+\s+[12]\s+2\s`).MatchString(out) {
		t.Fatalf("cluster status after failover (exit %d):\n%s%s", code, out, errOut)
	}
}
