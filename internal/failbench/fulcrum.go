package failbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fulcrumdb/fulcrum/internal/config"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/placement"
)

// Limits of the Fulcrum system's steps.
const (
	fulcrumStartLimit = 60 * time.Second
	fulcrumReadyLimit = 30 * time.Second
	startAttempts     = 3
	readBackLimit     = 30 * time.Second
	readBackBatch     = 500
)

// fulcrumIPBase and redisIPBase place the processes' own loopback
// addresses (127.0.0.41 to .49, .51 to .59) apart from the addresses other
// tests cut off.
const (
	fulcrumIPBase = 41
	redisIPBase   = 51
)

// lostWritesField is the INFO field in which a Fulcrum node reports the
// writes it set aside as lost when it met a newer primary (the sum over
// its replication=primary shard replicas, kept across restarts). It is
// the one place that knows how the count is exposed; without it the
// count is ErrNotExposed.
const lostWritesField = "fulcrum_primary_lost_writes"

// controlPlaneNamespace names the control plane's Raft group in GET
// /v1/cluster.
const controlPlaneNamespace = "_cluster"

// FulcrumConfig describes the cluster StartFulcrum runs: Nodes "fulcrum
// server" processes on loopback, with one replication=primary namespace.
type FulcrumConfig struct {
	// Binary is the fulcrum binary; Dir holds the nodes' data and
	// configurations.
	Binary, Dir string
	// Nodes is the cluster size (3 if 0).
	Nodes int
	// Namespace is created with --replication primary --ack Ack --shards
	// Shards (active-passive, 3 replicas).
	Namespace string
	Ack       string
	Shards    int
	// FailoverTimeout sets cluster.failover_timeout and Tick cluster.tick
	// (the Raft clock, also of the control plane, whose leader makes the
	// promotion); 0 keeps the default.
	FailoverTimeout, Tick time.Duration
	// LogLevel is the nodes' log level ("warn" if empty).
	LogLevel string
}

// Fulcrum is a running cluster: a System. It owns its processes; Close
// kills them. It is driven by one goroutine at a time (Run's); each of
// its clients by one writer connection.
type Fulcrum struct {
	cfg    FulcrumConfig
	nodes  []*fulcrumNode
	http   *http.Client
	probes int
	// victim is the index of the node killed last (-1 before any);
	// lostBefore its lost-writes count just before the kill, if known.
	victim       int
	lostBefore   uint64
	lostBeforeOK bool
	// chosen is the primary IsolatePrimary cut off, for KillPrimary; fw
	// its firewall, made on first use.
	chosen *fulcrumNode
	fw     *firewall
}

var (
	_ System       = (*Fulcrum)(nil)
	_ LostReporter = (*Fulcrum)(nil)
	_ Isolator     = (*Fulcrum)(nil)
)

type fulcrumNode struct {
	id                 uint64
	respAddr, httpAddr string
	// peerIP is the address it talks to its peers from (and listens on
	// for them): its own, so that the firewall can cut it off.
	peerIP     string
	configPath string
	proc       *proc
	// cmd has the namespace selected; replica also READONLY, so reads are
	// served by the node's own replica.
	cmd, replica *redis.Client
}

// StartFulcrum starts the cluster, creates the namespace and waits until
// it is Ready. On error everything started is stopped.
func StartFulcrum(ctx context.Context, cfg FulcrumConfig) (*Fulcrum, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = config.LogWarn
	}
	f := &Fulcrum{cfg: cfg, http: &http.Client{Timeout: 2 * time.Second}, victim: -1}
	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		if err = f.start(ctx, attempt); err == nil {
			break
		}
		f.Close()
		if !strings.Contains(err.Error(), "address already in use") {
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}
	create := func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(cctx, cfg.Binary, "namespace", "create", cfg.Namespace, "--replication", "primary",
			"--ack", cfg.Ack, "--shards", strconv.Itoa(cfg.Shards), "--addr", "http://"+f.nodes[0].httpAddr).CombinedOutput()
		if err != nil {
			return fmt.Errorf("fulcrum namespace create: %w: %s", err, out)
		}
		return nil
	}
	if err := poll(ctx, fulcrumStartLimit, "create namespace", create); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Ready(ctx); err != nil {
		err = fmt.Errorf("%w\n%s", err, f.Tail())
		f.Close()
		return nil, err
	}
	return f, nil
}

func (f *Fulcrum) start(ctx context.Context, attempt int) error {
	n := f.cfg.Nodes
	addrs, err := freeAddrs(2 * n)
	if err != nil {
		return err
	}
	var ips []string
	for i := range n {
		ips = append(ips, loopbackIP(fulcrumIPBase, i))
	}
	peerAddrs, err := freeAddrsOn(ips)
	if err != nil {
		return err
	}
	var peers []string
	for i := range n {
		peers = append(peers, fmt.Sprintf("%d=%s", i+1, peerAddrs[i]))
	}
	f.nodes = nil
	for i := range n {
		c := config.Default()
		c.NodeID = fmt.Sprintf("fb%d", i+1)
		c.Data.Dir = filepath.Join(f.cfg.Dir, fmt.Sprintf("a%d-node%d", attempt, i+1))
		c.RESP.Addr, c.HTTP.Addr = addrs[2*i], addrs[2*i+1]
		c.Log.Level = f.cfg.LogLevel
		c.Cluster.ID = uint64(i + 1)
		c.Cluster.PeerAddr = peerAddrs[i]
		c.Cluster.Peers = peers
		c.Cluster.Name = "failbench"
		c.Cluster.Shards = 1 // the default namespace is not measured
		if f.cfg.FailoverTimeout > 0 {
			c.Cluster.FailoverTimeout = config.Duration(f.cfg.FailoverTimeout)
		}
		if f.cfg.Tick > 0 {
			c.Cluster.Tick = config.Duration(f.cfg.Tick)
		}
		if err := c.Validate(); err != nil {
			return fmt.Errorf("node %d config: %w", i+1, err)
		}
		path := filepath.Join(f.cfg.Dir, fmt.Sprintf("a%d-node%d.toml", attempt, i+1))
		if err := writeFile(path, c.TOML()); err != nil {
			return err
		}
		nd := &fulcrumNode{id: uint64(i + 1), respAddr: c.RESP.Addr, httpAddr: c.HTTP.Addr, peerIP: ips[i], configPath: path}
		nd.cmd = f.redisClient(nd.respAddr, false)
		nd.replica = f.redisClient(nd.respAddr, true)
		f.nodes = append(f.nodes, nd)
		if nd.proc, err = startProc(fmt.Sprintf("fulcrum node %d", nd.id), f.cfg.Binary, "server", "--config", path); err != nil {
			return err
		}
	}
	for _, nd := range f.nodes {
		if err := f.waitUp(ctx, nd); err != nil {
			return err
		}
	}
	return nil
}

// redisClient is a connection pool to a node with the namespace selected
// on every connection (and READONLY if replica), without retries: every
// failure is the caller's to see.
func (f *Fulcrum) redisClient(addr string, replica bool) *redis.Client {
	ns := f.cfg.Namespace
	return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 2, DialTimeout: time.Second, DialerRetries: 1,
		ContextTimeoutEnabled: true, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			if err := cn.Do(ctx, "NAMESPACE", ns).Err(); err != nil {
				return err
			}
			if replica {
				return cn.Do(ctx, "READONLY").Err()
			}
			return nil
		}})
}

// waitUp waits until the node answers /readyz with 200.
func (f *Fulcrum) waitUp(ctx context.Context, nd *fulcrumNode) error {
	err := poll(ctx, fulcrumStartLimit, fmt.Sprintf("node %d /readyz", nd.id), func(ctx context.Context) error {
		if !nd.proc.running() {
			return fmt.Errorf("exited: %s", nd.proc.tail())
		}
		return getJSON(ctx, f.http, "http://"+nd.httpAddr+"/readyz", nil)
	})
	if err != nil && !nd.proc.running() && strings.Contains(nd.proc.out.String(), "address already in use") {
		return fmt.Errorf("node %d: address already in use", nd.id)
	}
	return err
}

// describe is a node's view of the namespace's layout; Leader is the
// shard's primary.
func (f *Fulcrum) describe(ctx context.Context, nd *fulcrumNode) (kv.NamespaceInfo, error) {
	var info kv.NamespaceInfo
	err := getJSON(ctx, f.http, "http://"+nd.httpAddr+"/v1/namespaces/"+f.cfg.Namespace, &info)
	return info, err
}

// primaryStatus is the part of a node's GET /v1/cluster this package
// reads: its Raft groups (the control plane is namespace "_cluster") and
// its replicas of primary shards (older nodes do not send those).
type primaryStatus struct {
	Shards []struct {
		Namespace string `json:"namespace"`
		Leader    uint64 `json:"leader"`
	} `json:"shards"`
	Primaries []struct {
		Namespace string   `json:"namespace"`
		Shard     int      `json:"shard"`
		Role      string   `json:"role"`
		Recorded  []uint64 `json:"recorded_in_sync"`
	} `json:"primaries"`
}

func (f *Fulcrum) clusterStatus(ctx context.Context, nd *fulcrumNode) (primaryStatus, error) {
	var st primaryStatus
	err := getJSON(ctx, f.http, "http://"+nd.httpAddr+"/v1/cluster", &st)
	return st, err
}

func (f *Fulcrum) node(id uint64) *fulcrumNode {
	for _, nd := range f.nodes {
		if nd.id == id {
			return nd
		}
	}
	return nil
}

// probeKeys returns one key of each shard of the namespace.
func (f *Fulcrum) probeKeys(n int) []string {
	keys := make([]string, f.cfg.Shards)
	for i, found := 0, 0; found < f.cfg.Shards; i++ {
		k := fmt.Sprintf("fbprobe:%d:%d", n, i)
		if s := placement.ShardOf(f.cfg.Namespace, []byte(k), f.cfg.Shards); keys[s] == "" {
			keys[s] = k
			found++
		}
	}
	return keys
}

// Ready waits until every node is up and agrees on each shard's primary, a
// fresh write to each shard is acknowledged and every replica serves it
// from its own copy, and (when the nodes report it) the control plane
// records every replica in sync.
func (f *Fulcrum) Ready(ctx context.Context) error {
	f.probes++
	keys := f.probeKeys(f.probes)
	val := fmt.Sprintf("probe-%d", f.probes)
	written := make([]bool, len(keys))
	return poll(ctx, fulcrumReadyLimit, "fulcrum cluster whole", func(ctx context.Context) error {
		var layout kv.NamespaceInfo
		for i, nd := range f.nodes {
			if !nd.proc.running() {
				return fmt.Errorf("node %d is not running", nd.id)
			}
			info, err := f.describe(ctx, nd)
			if err != nil {
				return err
			}
			for _, sh := range info.Shards {
				if sh.Leader == 0 {
					return fmt.Errorf("node %d knows no primary of shard %d", nd.id, sh.Shard)
				}
			}
			if i == 0 {
				layout = info
			} else if !slices.EqualFunc(info.Shards, layout.Shards, func(a, b kv.ShardInfo) bool { return a.Shard == b.Shard && a.Leader == b.Leader }) {
				return fmt.Errorf("nodes disagree on the primaries: node 1 %+v, node %d %+v", layout.Shards, nd.id, info.Shards)
			}
		}
		for s, key := range keys {
			p := f.node(layout.Shards[s].Leader)
			if p == nil {
				return fmt.Errorf("shard %d: unknown primary %d", s, layout.Shards[s].Leader)
			}
			if !written[s] {
				if err := p.cmd.Set(ctx, key, val, 0).Err(); err != nil {
					return fmt.Errorf("probe write to shard %d through node %d: %w", s, p.id, err)
				}
				written[s] = true
			}
			for _, id := range layout.Shards[s].Replicas {
				nd := f.node(id)
				if nd == nil || id == p.id {
					continue
				}
				got, err := nd.replica.Get(ctx, key).Result()
				if err != nil || got != val {
					return fmt.Errorf("replica on node %d of shard %d lacks the probe: %q %v", id, s, got, err)
				}
			}
			st, err := f.clusterStatus(ctx, p)
			if err != nil {
				return err
			}
			for _, ps := range st.Primaries {
				if ps.Namespace != f.cfg.Namespace || ps.Shard != s {
					continue
				}
				for _, id := range layout.Shards[s].Replicas {
					if id != p.id && !slices.Contains(ps.Recorded, id) {
						return fmt.Errorf("shard %d: node %d not recorded in sync (%v)", s, id, ps.Recorded)
					}
				}
			}
		}
		return nil
	})
}

// primary returns the node that is primary of the most shards (ties: the
// first shard's).
func (f *Fulcrum) primary(ctx context.Context) (*fulcrumNode, error) {
	var info kv.NamespaceInfo
	var err error
	for _, nd := range f.nodes {
		if info, err = f.describe(ctx, nd); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	count := map[uint64]int{}
	var victim uint64
	for _, sh := range info.Shards {
		count[sh.Leader]++
		if victim == 0 || count[sh.Leader] > count[victim] {
			victim = sh.Leader
		}
	}
	nd := f.node(victim)
	if nd == nil {
		return nil, fmt.Errorf("no primary: %+v", info.Shards)
	}
	return nd, nil
}

// KillPrimary kills the node that is primary of the most shards (the one
// PauseReplicas chose, if it was called).
func (f *Fulcrum) KillPrimary(ctx context.Context) (string, time.Time, error) {
	nd, err := f.chosen, error(nil)
	f.chosen = nil
	if nd == nil {
		if nd, err = f.primary(ctx); err != nil {
			return "", time.Time{}, err
		}
	}
	f.victim = slices.Index(f.nodes, nd)
	f.lostBefore, err = f.lostWrites(ctx, nd)
	f.lostBeforeOK = err == nil
	if err != nil && !errors.Is(err, ErrNotExposed) {
		return "", time.Time{}, err
	}
	name := fmt.Sprintf("node %d", nd.id)
	if st, err := f.clusterStatus(ctx, nd); err == nil {
		for _, sh := range st.Shards {
			if sh.Namespace == controlPlaneNamespace && sh.Leader == nd.id {
				// Its failover also waits for a new control-plane leader.
				name += " (control-plane leader)"
			}
		}
	}
	at := time.Now()
	if err := nd.proc.kill(); err != nil {
		return "", time.Time{}, err
	}
	return name, at, nil
}

// IsolatePrimary drops the peer traffic between the primary's node and
// the others (replication, forwarding, the control plane) until heal;
// clients still reach every node.
func (f *Fulcrum) IsolatePrimary(ctx context.Context) (heal func() error, err error) {
	if f.fw == nil {
		if f.fw, err = newFirewall(ctx); err != nil {
			return nil, err
		}
	}
	p, err := f.primary(ctx)
	if err != nil {
		return nil, err
	}
	var others []string
	for _, nd := range f.nodes {
		if nd != p && nd.peerIP != p.peerIP {
			others = append(others, nd.peerIP)
		}
	}
	if len(others) == 0 {
		return nil, fmt.Errorf("%w: the nodes share one address", ErrNoFirewall)
	}
	if err := f.fw.cut(ctx, p.peerIP, others); err != nil {
		return nil, errors.Join(err, f.fw.heal())
	}
	f.chosen = p
	return f.fw.heal, nil
}

// Restart starts the killed node again on its configuration and data.
func (f *Fulcrum) Restart(ctx context.Context) error {
	if f.victim < 0 {
		return errors.New("nothing was killed")
	}
	nd := f.nodes[f.victim]
	p, err := startProc(fmt.Sprintf("fulcrum node %d", nd.id), f.cfg.Binary, "server", "--config", nd.configPath)
	if err != nil {
		return err
	}
	nd.proc = p
	return f.waitUp(ctx, nd)
}

// ReadBack reads keys through a node that was not killed; reads go to the
// shard's primary.
func (f *Fulcrum) ReadBack(ctx context.Context, keys []string) (map[string]string, error) {
	var via *fulcrumNode
	for i, nd := range f.nodes {
		if i != f.victim && nd.proc.running() {
			via = nd
			break
		}
	}
	if via == nil {
		return nil, errors.New("no node left to read from")
	}
	return readBack(ctx, via.cmd, keys)
}

// ReportedLost is how much the killed node's lost-writes count grew.
func (f *Fulcrum) ReportedLost(ctx context.Context) (uint64, error) {
	if f.victim < 0 || !f.lostBeforeOK {
		return 0, ErrNotExposed
	}
	after, err := f.lostWrites(ctx, f.nodes[f.victim])
	if err != nil {
		return 0, err
	}
	if after < f.lostBefore {
		return 0, fmt.Errorf("node %d's lost-writes count went down from %d to %d", f.nodes[f.victim].id, f.lostBefore, after)
	}
	return after - f.lostBefore, nil
}

// lostWrites reads lostWritesField from the node's INFO.
func (f *Fulcrum) lostWrites(ctx context.Context, nd *fulcrumNode) (uint64, error) {
	info, err := nd.cmd.Info(ctx, "cluster").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO on node %d: %w", nd.id, err)
	}
	v, ok := infoField(info, lostWritesField)
	if !ok {
		return 0, ErrNotExposed
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("INFO %s on node %d: %w", lostWritesField, nd.id, err)
	}
	return n, nil
}

// NewClient returns a client that knows every node and starts with node
// i mod n; after a failed write it tries the next node, as a client of a
// cluster whose every node forwards writes to the primary would.
func (f *Fulcrum) NewClient(i int) (Client, error) {
	c := &fulcrumClient{at: i % len(f.nodes)}
	for _, nd := range f.nodes {
		c.conns = append(c.conns, f.redisClient(nd.respAddr, false))
	}
	return c, nil
}

type fulcrumClient struct {
	conns []*redis.Client
	at    int
}

func (c *fulcrumClient) Set(ctx context.Context, key, value string) error {
	err := c.conns[c.at].Set(ctx, key, value, 0).Err()
	if err != nil {
		c.at = (c.at + 1) % len(c.conns)
	}
	return err
}

func (c *fulcrumClient) Close() error {
	var errs []error
	for _, cn := range c.conns {
		errs = append(errs, cn.Close())
	}
	return errors.Join(errs...)
}

// Tail is the end of every node's output, for a report of what went wrong.
func (f *Fulcrum) Tail() string {
	var b strings.Builder
	for _, nd := range f.nodes {
		if nd.proc != nil {
			b.WriteString(nd.proc.tail())
			b.WriteString("\n")
		}
	}
	return b.String()
}

// Close kills every node, closes the connections and removes any cut.
func (f *Fulcrum) Close() error {
	var errs []error
	if f.fw != nil {
		errs = append(errs, f.fw.heal())
	}
	for _, nd := range f.nodes {
		if nd.proc != nil {
			errs = append(errs, nd.proc.kill())
		}
		nd.cmd.Close()
		nd.replica.Close()
	}
	return errors.Join(errs...)
}

// readBack GETs keys through c in pipelined batches, retrying a batch
// that fails (a failover may still be settling) for up to readBackLimit.
func readBack(ctx context.Context, c *redis.Client, keys []string) (map[string]string, error) {
	got := make(map[string]string, len(keys))
	for start := 0; start < len(keys); start += readBackBatch {
		batch := keys[start:min(start+readBackBatch, len(keys))]
		err := poll(ctx, readBackLimit, "read back", func(ctx context.Context) error {
			pipe := c.Pipeline()
			cmds := make([]*redis.StringCmd, len(batch))
			for i, k := range batch {
				cmds[i] = pipe.Get(ctx, k)
			}
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			for i, cmd := range cmds {
				v, err := cmd.Result()
				switch {
				case errors.Is(err, redis.Nil):
				case err != nil:
					return fmt.Errorf("GET %s: %w", batch[i], err)
				default:
					got[batch[i]] = v
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return got, nil
}

// infoField returns the value of name in an INFO reply.
func infoField(info, name string) (string, bool) {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok && k == name {
			return v, true
		}
	}
	return "", false
}
