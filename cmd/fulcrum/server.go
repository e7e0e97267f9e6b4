package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/fulcrumdb/fulcrum/internal/config"
)

const serverUsage = `Usage: fulcrum server [flags]

Run a Fulcrum node until SIGINT or SIGTERM, then shut down gracefully
(listeners close, in-flight requests get shutdown_timeout to finish, storage
is closed). A second signal exits at once with status 130.

The configuration is the built-in default, overlaid by --config FILE, overlaid
by the flags below that are given. It is validated before anything starts;
every problem is printed and the exit status is 2. Without node_id the host
name is used. Print a commented default file with "fulcrum config default".

A node joins a replicated cluster when it has a cluster id (--cluster-id or
[cluster] id). Every member lists the same peers, itself included, with the
address the others reach it on; for three machines:

  fulcrum server --cluster-id 1 --peer-addr 0.0.0.0:7381 \
      --resp-addr 0.0.0.0:7379 --http-addr 0.0.0.0:7380 \
      --peers "1=db1:7381,2=db2:7381,3=db3:7381" --data-dir /var/lib/fulcrum

and the same on db2 and db3 with --cluster-id 2 and 3. --cluster-name,
--shards and --replicas must agree on every member too. A later node joins
a running cluster through any member's HTTP address, with no id or peers:

  fulcrum server --join db1:7380 --peer-addr db4:7381 --data-dir /var/lib/fulcrum

It gets an id (kept in its data directory), follows the control plane as a
non-voting learner, and serves every request by forwarding it (shards are
not moved onto it yet).
`

// ServerMain is "fulcrum server".
type ServerMain struct {
	Stdout, Stderr io.Writer
	Notify         func(chan<- os.Signal)
	StopNotify     func(chan<- os.Signal)
	Exit           func(code int)
	Hostname       func() (string, error)
	Serve          ServeFunc

	// ConfigPath and Config are set by ParseFlags: the file given, if any,
	// and the validated configuration the node will run with.
	ConfigPath string
	Config     config.Config
}

// ParseFlags builds and validates the configuration. Only flags given on the
// command line override the file (flag.Visit), so a flag's zero value never
// masks a setting.
func (m *ServerMain) ParseFlags(ctx context.Context, args []string) error {
	cl := newCmdline("server", serverUsage, m.Stdout, m.Stderr)
	fs := cl.fs
	path := fs.String("config", "", "TOML configuration `file`")
	dataDir := fs.String("data-dir", "", "data `directory` (overrides data.dir)")
	respAddr := fs.String("resp-addr", "", "RESP listen `host:port` (overrides resp.addr)")
	httpAddr := fs.String("http-addr", "", "HTTP listen `host:port` (overrides http.addr)")
	syncMode := fs.String("sync", "", "durability `mode`: always, interval or none (overrides data.sync)")
	logLevel := fs.String("log-level", "", "log `level`: debug, info, warn or error (overrides log.level)")
	nodeID := fs.String("node-id", "", "node `id` (overrides node_id)")
	clusterID := fs.Uint64("cluster-id", 0, "this node's `number` in the cluster, from 1; 0 runs alone (overrides cluster.id)")
	peerAddr := fs.String("peer-addr", "", "`host:port` to listen on for other nodes (overrides cluster.peer_addr)")
	peers := fs.String("peers", "", "every initial member, this node included: `ID=host:port,...` (overrides cluster.peers)")
	clusterName := fs.String("cluster-name", "", "cluster `name`; members of other clusters are refused (overrides cluster.name)")
	shards := fs.Int("shards", 0, "`number` of shards of the default namespace (overrides cluster.shards)")
	replicas := fs.Int("replicas", 0, "replicas of each shard, capped to the number of nodes (overrides cluster.replicas)")
	joinAddr := fs.String("join", "", "HTTP `host:port` of a running member to join through; the node gets its id there (overrides cluster.join)")
	pos, err := cl.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return cl.usageErr("unexpected argument %q", pos[0])
	}

	cfg := config.Default()
	if *path != "" {
		if cfg, err = config.Load(*path); err != nil {
			if errors.Is(err, config.ErrUnknownKeys) {
				// Report the rules the known keys break in the same pass.
				err = errors.Join(append(config.Problems(err), config.Problems(cfg.Validate())...)...)
			}
			m.printProblems("cannot load the configuration", err)
			return exitCode(2)
		}
	}
	var clusterFlags []string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "peer-addr", "peers", "cluster-name", "shards", "replicas":
			clusterFlags = append(clusterFlags, "--"+f.Name)
		}
		switch f.Name {
		case "data-dir":
			cfg.Data.Dir = *dataDir
		case "resp-addr":
			cfg.RESP.Addr = *respAddr
		case "http-addr":
			cfg.HTTP.Addr = *httpAddr
		case "sync":
			cfg.Data.Sync = *syncMode
		case "log-level":
			cfg.Log.Level = *logLevel
		case "node-id":
			cfg.NodeID = *nodeID
		case "cluster-id":
			cfg.Cluster.ID = *clusterID
		case "peer-addr":
			cfg.Cluster.PeerAddr = *peerAddr
		case "peers":
			cfg.Cluster.Peers = splitPeers(*peers)
		case "cluster-name":
			cfg.Cluster.Name = *clusterName
		case "shards":
			cfg.Cluster.Shards = *shards
		case "replicas":
			cfg.Cluster.Replicas = *replicas
		case "join":
			cfg.Cluster.Join = *joinAddr
		}
	})
	if cfg.NodeID == "" {
		cfg.NodeID = m.hostNodeID()
	}
	problems := config.Problems(cfg.Validate())
	if len(clusterFlags) > 0 && !cfg.Cluster.Member() {
		// Validate ignores [cluster] on a node that runs alone; a flag
		// given for it is a mistake the operator wants to hear about.
		problems = append(problems, fmt.Errorf("%s given, but cluster.id is 0 (the node would run alone): set --cluster-id or [cluster] id, or --join",
			strings.Join(clusterFlags, ", ")))
	}
	if len(problems) > 0 {
		m.printProblems("invalid configuration", errors.Join(problems...))
		return exitCode(2)
	}
	m.ConfigPath, m.Config = *path, cfg
	return nil
}

// splitPeers splits --peers "1=a:7381, 2=b:7381" into its items; blanks
// around items and empty items (a trailing comma) are dropped, and the
// items are checked by Validate.
func splitPeers(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (m *ServerMain) printProblems(what string, err error) {
	fmt.Fprintf(m.Stderr, "fulcrum server: %s:\n", what)
	for _, p := range config.Problems(err) {
		fmt.Fprintf(m.Stderr, "  %v\n", p)
	}
}

// hostNodeID derives a node id from the host name: characters a node id
// may not hold become '-', and it is cut to 64 characters.
func (m *ServerMain) hostNodeID() string {
	h, err := m.Hostname()
	if err != nil || h == "" {
		return "fulcrum"
	}
	b := []byte(h)
	if len(b) > 64 {
		b = b[:64]
	}
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			b[i] = '-'
		}
	}
	return string(b)
}

// Run serves until ctx is cancelled or a signal arrives. The first
// SIGINT/SIGTERM cancels the node's context, which shuts it down gracefully;
// a second one calls Exit(130) without waiting.
func (m *ServerMain) Run(ctx context.Context) error {
	cfg := m.Config
	logger := newLogger(m.Stderr, cfg)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := make(chan os.Signal, 2)
	m.Notify(sigs)
	defer m.StopNotify(sigs)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.watchSignals(sigs, done, cancel, logger, cfg.ShutdownTimeout)
	}()
	defer wg.Wait()
	defer close(done)

	err := m.Serve(ctx, cfg, logger, func(respAddr, httpAddr string) {
		attrs := []any{"version", version, "resp", respAddr, "http", httpAddr,
			"data_dir", cfg.Data.Dir, "sync", cfg.Data.Sync, "config", m.ConfigPath}
		if cc := cfg.Cluster; cc.ID != 0 {
			attrs = append(attrs, "cluster", cc.Name, "cluster_id", cc.ID, "peer_addr", cc.PeerAddr, "peers", len(cc.Peers))
		}
		logger.Info("fulcrum started", attrs...)
	})
	if err != nil {
		return err
	}
	logger.Info("fulcrum stopped")
	return nil
}

// watchSignals is the signal goroutine of Run, which owns it: it returns
// when done is closed.
func (m *ServerMain) watchSignals(sigs <-chan os.Signal, done <-chan struct{}, cancel context.CancelFunc, logger *slog.Logger, timeout config.Duration) {
	select {
	case s := <-sigs:
		logger.Info("shutting down; signal again to exit at once", "signal", s.String(), "timeout", timeout.String())
		cancel()
	case <-done:
		return
	}
	select {
	case s := <-sigs:
		logger.Error("second signal: exiting without a graceful shutdown", "signal", s.String())
		m.Exit(130)
	case <-done:
	}
}

// newLogger returns the node's structured logger, writing to w in the
// configured format and level, each record tagged with the node id.
func newLogger(w io.Writer, cfg config.Config) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		level = slog.LevelInfo // unreachable after Validate
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.Log.Format == config.LogJSON {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h).With("node", cfg.NodeID)
}
