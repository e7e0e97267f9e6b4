package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/config"
	"github.com/fulcrumdb/fulcrum/internal/kv"
)

const devUsage = `Usage: fulcrum dev [flags]

Run a local cluster for development and experiments: --nodes processes of
this binary ("fulcrum server"), all on 127.0.0.1, each shard a Raft group over
min(3, nodes) of them. Node i (from 1) listens on

  RESP   base + 10*(i-1)       7379, 7389, 7399 with the default base
  HTTP   base + 10*(i-1) + 1   7380, 7390, 7400
  peers  base + 10*(i-1) + 2   7381, 7391, 7401

and keeps its data in DIR/node<i>; its generated configuration is
DIR/node<i>.toml. Data survives a restart of "fulcrum dev" with the same
--nodes and --shards. Every port is checked before anything starts.

Once every node answers /readyz and every shard has a leader, "cluster ready"
is printed. The nodes' logs go to stderr, each line prefixed "[node i] ". A
node that dies (kill -9 one to watch a failover) is reported with its last log
lines and the others keep running; start it again by hand with
"fulcrum server --config DIR/node<i>.toml". SIGINT or SIGTERM stops every node
gracefully (a second signal kills them) and exits with status 0.
`

// Timing and limits of "fulcrum dev".
const (
	// devPoll is how often readiness is polled.
	devPoll = 100 * time.Millisecond
	// devSlowReady is when a cluster still not ready is reported.
	devSlowReady = 30 * time.Second
	// devShutdownTimeout is the nodes' shutdown_timeout.
	devShutdownTimeout = config.Duration(3 * time.Second)
	// devStopLimit bounds the graceful stop of the nodes: their
	// shutdown_timeout and a margin to close storage.
	devStopLimit = 10 * time.Second
	// devTailLines is how many of a node's last output lines are kept to
	// explain its death.
	devTailLines = 10
	// devMaxNodes bounds --nodes so the ports stay within one decade each.
	devMaxNodes = 9
)

// DevMain is "fulcrum dev".
type DevMain struct {
	Stdout, Stderr io.Writer
	Notify         func(chan<- os.Signal)
	StopNotify     func(chan<- os.Signal)
	// Executable returns the binary the nodes run (os.Executable).
	Executable func() (string, error)
	HTTPClient *http.Client

	// Set by ParseFlags.
	BasePort int
	Nodes    int
	DataDir  string
	Shards   int
	LogLevel string

	// stopLimit replaces devStopLimit when set (tests).
	stopLimit time.Duration
}

// ParseFlags reads and checks the flags.
func (m *DevMain) ParseFlags(ctx context.Context, args []string) error {
	cl := newCmdline("dev", devUsage, m.Stdout, m.Stderr)
	fs := cl.fs
	fs.IntVar(&m.BasePort, "base-port", 7379, "first `port`: node 1's RESP port; node i's ports start at base+10*(i-1)")
	fs.IntVar(&m.Nodes, "nodes", 3, "`number` of nodes, 1 to 9")
	fs.StringVar(&m.DataDir, "data-dir", "./fulcrum-dev", "`directory` of the nodes' data (DIR/node1, ...) and configurations")
	fs.IntVar(&m.Shards, "shards", config.Default().Cluster.Shards, "`number` of shards of the default namespace, 1 to 1024")
	fs.StringVar(&m.LogLevel, "log-level", config.LogWarn, "the nodes' log `level`: debug, info, warn or error")
	if err := cl.parseNone(args); err != nil {
		return err
	}
	switch {
	case m.Nodes < 1 || m.Nodes > devMaxNodes:
		return cl.usageErr("--nodes %d is not between 1 and %d", m.Nodes, devMaxNodes)
	case m.Shards < 1 || m.Shards > 1024:
		return cl.usageErr("--shards %d is not between 1 and 1024", m.Shards)
	case !slices.Contains([]string{config.LogDebug, config.LogInfo, config.LogWarn, config.LogError}, m.LogLevel):
		return cl.usageErr("--log-level %q is not one of debug, info, warn, error", m.LogLevel)
	case m.DataDir == "":
		return cl.usageErr("--data-dir must not be empty")
	}
	if top := m.BasePort + 10*(m.Nodes-1) + 2; m.BasePort < 1 || top > 65535 {
		return cl.usageErr("--base-port %d: the ports of %d nodes would be %d to %d, outside 1 to 65535", m.BasePort, m.Nodes, m.BasePort, top)
	}
	return nil
}

// devNode is one node of the dev cluster: its addresses, and once started
// its process.
type devNode struct {
	id                           int
	respAddr, httpAddr, peerAddr string
	dir                          string // data directory, as the user named it
	configPath                   string

	cmd *exec.Cmd
	out *prefixWriter
	// err is cmd.Wait's result, set before the node is sent on the exits
	// channel and read only after.
	err error
	// exited is set by Run's goroutine once it has received the node from
	// the exits channel.
	exited bool
}

// devPorts returns node i's RESP, HTTP and peer ports (i from 1).
func devPorts(base, i int) (respPort, httpPort, peerPort int) {
	p := base + 10*(i-1)
	return p, p + 1, p + 2
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// layout returns the nodes with their addresses and paths.
func (m *DevMain) layout() []*devNode {
	nodes := make([]*devNode, m.Nodes)
	for i := range nodes {
		id := i + 1
		r, h, p := devPorts(m.BasePort, id)
		nodes[i] = &devNode{
			id: id, respAddr: loopback(r), httpAddr: loopback(h), peerAddr: loopback(p),
			dir:        filepath.Join(m.DataDir, fmt.Sprintf("node%d", id)),
			configPath: filepath.Join(m.DataDir, fmt.Sprintf("node%d.toml", id)),
		}
	}
	return nodes
}

// devName is the cluster name in the generated configurations, so a dev
// node never talks to a node of a real cluster.
const devName = "fulcrum-dev"

// configs returns each node's configuration, validated. absDir is the data
// directory made absolute, so the files work from any directory.
func (m *DevMain) configs(nodes []*devNode, absDir string) ([]config.Config, error) {
	peers := make([]string, len(nodes))
	for i, n := range nodes {
		peers[i] = fmt.Sprintf("%d=%s", n.id, n.peerAddr)
	}
	cfgs := make([]config.Config, len(nodes))
	for i, n := range nodes {
		cfg := config.Default()
		cfg.NodeID = fmt.Sprintf("node%d", n.id)
		cfg.Data.Dir = filepath.Join(absDir, fmt.Sprintf("node%d", n.id))
		cfg.RESP.Addr, cfg.HTTP.Addr = n.respAddr, n.httpAddr
		cfg.Log.Level = m.LogLevel
		// Ctrl-C should not keep a developer waiting: a node that cannot
		// hand its leaderships over (its peers are stopping too) waits
		// for this long.
		cfg.ShutdownTimeout = devShutdownTimeout
		cfg.Cluster.ID = uint64(n.id)
		cfg.Cluster.PeerAddr = n.peerAddr
		cfg.Cluster.Peers = slices.Clone(peers)
		cfg.Cluster.Name = devName
		cfg.Cluster.Shards = m.Shards
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("dev: configuration of node %d: %w", n.id, err)
		}
		cfgs[i] = cfg
	}
	return cfgs, nil
}

// checkPorts binds every port the nodes will use and releases them. It
// names each port that is taken, so nothing starts half-way.
func checkPorts(nodes []*devNode) error {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var busy []string
	for _, n := range nodes {
		for _, a := range []struct{ what, addr string }{{"RESP", n.respAddr}, {"HTTP", n.httpAddr}, {"peer", n.peerAddr}} {
			ln, err := net.Listen("tcp", a.addr)
			if err != nil {
				busy = append(busy, fmt.Sprintf("port %s (%s of node %d): %v", portOf(a.addr), a.what, n.id, err))
				continue
			}
			lns = append(lns, ln)
		}
	}
	if len(busy) > 0 {
		return fmt.Errorf("cannot start the cluster, ports in use (another fulcrum dev? pick another --base-port):\n  %s", strings.Join(busy, "\n  "))
	}
	return nil
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// prepare creates the data directory and writes the nodes' configuration
// files. A directory left by an earlier run with another layout is refused:
// its Raft groups were formed over other nodes and shards.
func (m *DevMain) prepare(nodes []*devNode) error {
	abs, err := filepath.Abs(m.DataDir)
	if err != nil {
		return fmt.Errorf("dev: data directory: %w", err)
	}
	cfgs, err := m.configs(nodes, abs)
	if err != nil {
		return err
	}
	if old, err := config.Load(nodes[0].configPath); err == nil {
		if n, s := len(old.Cluster.Peers), old.Cluster.Shards; n != m.Nodes || s != m.Shards {
			return fmt.Errorf("%s holds a cluster of %d nodes and %d shards from an earlier fulcrum dev; run with --nodes %d --shards %d, or remove it, or pick another --data-dir",
				m.DataDir, n, s, n, s)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dev: reading the earlier configuration: %w", err)
	}
	if err := os.MkdirAll(m.DataDir, 0o755); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	for i, n := range nodes {
		text := fmt.Sprintf("# Written by \"fulcrum dev\" for node %d of %d; rewritten on every start.\n\n%s", n.id, len(nodes), cfgs[i].TOML())
		if err := os.WriteFile(n.configPath, []byte(text), 0o644); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
	}
	return nil
}

// Run starts the nodes, reports readiness and deaths, and stops the nodes
// on a signal or when ctx ends. It returns once every node has exited.
func (m *DevMain) Run(ctx context.Context) error {
	nodes := m.layout()
	if err := checkPorts(nodes); err != nil {
		return err
	}
	exe, err := m.Executable()
	if err != nil {
		return fmt.Errorf("dev: locating the fulcrum binary: %w", err)
	}
	if err := m.prepare(nodes); err != nil {
		return err
	}

	sigs := make(chan os.Signal, 2)
	m.Notify(sigs)
	defer m.StopNotify(sigs)

	stderr := &lockedWriter{w: m.Stderr}
	// Each node's waiter sends it here exactly once, so the buffer never
	// blocks a waiter; Run receives every send before returning.
	exits := make(chan *devNode, len(nodes))
	start := time.Now()
	for _, n := range nodes {
		if err := n.start(exe, stderr, exits); err != nil {
			m.stop(nodes, sigs, exits, stderr)
			return err
		}
	}
	m.printTable(nodes)

	readyCtx, cancelReady := context.WithCancel(ctx)
	ready := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		// Owned by Run: cancelled and waited for on every return path.
		defer wg.Done()
		ready <- m.waitReady(readyCtx, nodes, stderr)
	}()
	defer wg.Wait()
	defer cancelReady()

	running := len(nodes)
	for {
		select {
		case <-sigs:
			m.stop(nodes, sigs, exits, stderr)
			return nil
		case <-ctx.Done():
			m.stop(nodes, sigs, exits, stderr)
			return nil
		case err := <-ready:
			ready = nil
			if err == nil {
				fmt.Fprintf(m.Stdout, "cluster ready (%v)\n", time.Since(start).Round(time.Millisecond))
			}
		case n := <-exits:
			n.exited = true
			running--
			m.reportExit(n, stderr, nodes)
			if running == 0 {
				return errors.New("dev: every node has exited")
			}
		}
	}
}

// start launches the node's process. A goroutine waits for it and then
// sends n on exits; the process ends at the latest when stop kills it.
func (n *devNode) start(exe string, stderr *lockedWriter, exits chan<- *devNode) error {
	n.out = &prefixWriter{out: stderr, prefix: fmt.Sprintf("[node %d] ", n.id), keep: devTailLines}
	n.cmd = exec.Command(exe, "server", "--config", n.configPath)
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	// The nodes get the terminal's Ctrl-C from us, as a SIGTERM, not
	// directly: otherwise our SIGTERM would be their second signal.
	n.cmd.SysProcAttr = childProcAttr()
	// Wait must not hang on the output pipe if the node left a child.
	n.cmd.WaitDelay = time.Second
	if err := n.cmd.Start(); err != nil {
		return fmt.Errorf("dev: starting node %d: %w", n.id, err)
	}
	go func() {
		n.err = n.cmd.Wait()
		n.out.flush()
		exits <- n
	}()
	return nil
}

func (n *devNode) pid() int { return n.cmd.Process.Pid }

// exitDescription says how a node's process ended.
func (n *devNode) exitDescription() string {
	if n.err == nil {
		return "exit status 0"
	}
	return n.err.Error()
}

func (m *DevMain) printTable(nodes []*devNode) {
	fmt.Fprintf(m.Stdout, "fulcrum dev: %d node(s), %d shards, cluster %q\n\n", len(nodes), m.Shards, devName)
	tw := tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tRESP\tHTTP\tPEER\tDATA\tPID")
	for _, n := range nodes {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\n", n.id, n.respAddr, n.httpAddr, n.peerAddr, n.dir, n.pid())
	}
	tw.Flush()
	other := nodes[len(nodes)-1]
	if len(nodes) > 1 {
		other = nodes[1]
	}
	fmt.Fprintf(m.Stdout, "\nTry:  redis-cli -p %s set k v; redis-cli -p %s get k\n", portOf(nodes[0].respAddr), portOf(other.respAddr))
	fmt.Fprintf(m.Stdout, "      fulcrum cluster status --addr %s\n", nodes[0].httpAddr)
	fmt.Fprintf(m.Stdout, "Stop with Ctrl-C. Waiting for every node and a leader for every shard...\n")
}

// waitReady polls until every node answers /readyz and, in every node's
// view, every shard has a leader. It returns nil then, or ctx's error. It
// mentions on stderr, once, a cluster still not ready after devSlowReady.
func (m *DevMain) waitReady(ctx context.Context, nodes []*devNode, stderr *lockedWriter) error {
	slow := time.NewTimer(devSlowReady)
	defer slow.Stop()
	tick := time.NewTicker(devPoll)
	defer tick.Stop()
	for {
		err := m.readiness(ctx, nodes)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-slow.C:
			stderr.printf("fulcrum dev: cluster still not ready after %v: %v\n", devSlowReady, err)
		case <-tick.C:
		}
	}
}

// readiness returns nil when the cluster is ready, or the first thing
// missing.
func (m *DevMain) readiness(ctx context.Context, nodes []*devNode) error {
	led := make([]bool, m.Shards)
	for _, n := range nodes {
		base := "http://" + n.httpAddr
		if err := getOK(ctx, m.HTTPClient, base+"/readyz"); err != nil {
			return fmt.Errorf("node %d: %w", n.id, err)
		}
		view, _, err := fetchCluster(ctx, m.HTTPClient, base, devPoll*10)
		if err != nil {
			return fmt.Errorf("node %d: %w", n.id, err)
		}
		for _, s := range view.Shards {
			if s.Leader == 0 {
				return fmt.Errorf("node %d: shard %d of namespace %q has no leader yet", n.id, s.Shard, s.Namespace)
			}
			// Other namespaces (the control plane's) have their own shards.
			if s.Namespace == kv.DefaultNamespace && s.Shard >= 0 && s.Shard < len(led) {
				led[s.Shard] = true
			}
		}
	}
	for s, ok := range led {
		if !ok {
			return fmt.Errorf("no node reports shard %d of namespace %q yet", s, kv.DefaultNamespace)
		}
	}
	return nil
}

// getOK sends GET url and wants 200.
func getOK(ctx context.Context, client *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, devPoll*10)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// reportExit explains a node's unexpected exit on stderr.
func (m *DevMain) reportExit(n *devNode, stderr *lockedWriter, nodes []*devNode) {
	var b strings.Builder
	fmt.Fprintf(&b, "fulcrum dev: node %d (pid %d) exited unexpectedly: %s\n", n.id, n.pid(), n.exitDescription())
	if tail := n.out.lastLines(); len(tail) > 0 {
		fmt.Fprintf(&b, "fulcrum dev: its last output:\n")
		for _, l := range tail {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	fmt.Fprintf(&b, "fulcrum dev: the other nodes keep running; start it again with: fulcrum server --config %s\n", n.configPath)
	stderr.printf("%s", b.String())
}

// stop sends SIGTERM to every node still running and waits for all of
// them, killing those still running after devStopLimit or at a second
// signal. It consumes every pending exit, so no waiter is left.
func (m *DevMain) stop(nodes []*devNode, sigs <-chan os.Signal, exits <-chan *devNode, stderr *lockedWriter) {
	// alive holds the nodes whose exit has not been received yet; a node
	// that exited meanwhile has its send pending on exits.
	alive := make(map[*devNode]bool)
	for _, n := range nodes {
		if n.cmd != nil && n.cmd.Process != nil && !n.exited {
			alive[n] = true
		}
	}
	pending := len(alive)
	fmt.Fprintln(m.Stdout, "stopping the nodes (signal again to kill them at once)...")
	for n := range alive {
		if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			n.cmd.Process.Kill() // not running, or no SIGTERM on this system
		}
	}
	killAll := func(why string) {
		for n := range alive {
			stderr.printf("fulcrum dev: killing node %d (pid %d): %s\n", n.id, n.pid(), why)
			n.cmd.Process.Kill()
		}
	}
	stopLimit := devStopLimit
	if m.stopLimit > 0 {
		stopLimit = m.stopLimit
	}
	limit := time.NewTimer(stopLimit)
	defer limit.Stop()
	for pending > 0 {
		select {
		case n := <-exits:
			pending--
			if alive[n] && n.err != nil {
				stderr.printf("fulcrum dev: node %d (pid %d) stopped with %s\n", n.id, n.pid(), n.exitDescription())
			}
			delete(alive, n)
		case <-sigs:
			killAll("second signal")
		case <-limit.C:
			killAll(fmt.Sprintf("still running %v after SIGTERM", stopLimit))
		}
	}
	fmt.Fprintln(m.Stdout, "stopped")
}

// lockedWriter serializes whole writes from the nodes' output copiers and
// dev's own messages, so lines never interleave.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) printf(format string, args ...any) {
	fmt.Fprintf(l, format, args...)
}

// maxPartialLine is how much of an unterminated line prefixWriter holds
// before passing it on.
const maxPartialLine = 64 << 10

// prefixWriter copies a node's output to out line by line, each line
// prefixed, and keeps the last lines to explain a crash. exec's copier
// goroutine writes to it; lastLines may be called at any time.
type prefixWriter struct {
	out    io.Writer
	prefix string
	keep   int

	mu      sync.Mutex
	partial []byte
	tail    []string
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			if len(w.partial) >= maxPartialLine {
				w.emitLocked()
			}
			break
		}
		w.partial = append(w.partial, p[:i]...)
		p = p[i+1:]
		w.emitLocked()
	}
	return n, nil
}

// flush passes on an unterminated last line.
func (w *prefixWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.emitLocked()
	}
}

// emitLocked writes the buffered line. Errors writing dev's stderr are
// ignored: the node must keep running regardless.
func (w *prefixWriter) emitLocked() {
	line := string(w.partial)
	w.partial = w.partial[:0]
	w.out.Write([]byte(w.prefix + line + "\n"))
	if w.keep > 0 {
		if len(w.tail) == w.keep {
			w.tail = append(w.tail[:0], w.tail[1:]...)
		}
		w.tail = append(w.tail, w.prefix+line)
	}
}

// lastLines returns the last lines written, oldest first.
func (w *prefixWriter) lastLines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.tail)
}
