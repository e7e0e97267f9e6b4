package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/proxy"
)

const proxyUsage = `Usage:
  fulcrum proxy --namespace NS --nodes URL[,URL...] [--listen 127.0.0.1:6390] [--poll 100ms]

Run a TCP proxy that sends every client connection to the active node of a
replication=primary namespace: the node that is primary of most of its
shards. It reads the view from any of --nodes (members' HTTP API URLs) every
--poll and, when a failover moves the active, closes the open connections
so that clients reconnect to the new one. Use it where the service address
cannot move (cluster.vip needs Linux privileges and a shared network).
It stops on SIGINT or SIGTERM.

Example:
  fulcrum proxy --namespace orders \
      --nodes http://127.0.0.1:7380,http://127.0.0.1:7390,http://127.0.0.1:7400
  redis-cli -p 6390     (then NAMESPACE orders)
`

// ProxyMain is "fulcrum proxy".
type ProxyMain struct {
	Stdout, Stderr io.Writer
	Notify         func(chan<- os.Signal)
	StopNotify     func(chan<- os.Signal)

	cfg proxy.Config
}

// ParseFlags parses the proxy's flags.
func (m *ProxyMain) ParseFlags(ctx context.Context, args []string) error {
	cl := newCmdline("proxy", proxyUsage, m.Stdout, m.Stderr)
	var nodes string
	cl.fs.StringVar(&m.cfg.Listen, "listen", "127.0.0.1:6390", "`address` clients connect to")
	cl.fs.StringVar(&nodes, "nodes", "", "comma-separated HTTP API `URLs` of cluster members, asked in turn for the view")
	cl.fs.StringVar(&m.cfg.Namespace, "namespace", "", "the replication=primary `namespace` whose active node to follow")
	cl.fs.DurationVar(&m.cfg.Poll, "poll", 100*time.Millisecond, "how often to read the view (bounds the redirect after a failover)")
	if err := cl.parseNone(args); err != nil {
		return err
	}
	for _, n := range strings.Split(nodes, ",") {
		if n = strings.TrimSpace(n); n != "" {
			m.cfg.Nodes = append(m.cfg.Nodes, strings.TrimSuffix(n, "/"))
		}
	}
	if m.cfg.Poll <= 0 {
		return cl.usageErr("--poll %v: want > 0", m.cfg.Poll)
	}
	if err := m.cfg.Validate(); err != nil {
		return cl.usageErr("%v", strings.TrimPrefix(err.Error(), "proxy: "))
	}
	return nil
}

// Run serves until a signal.
func (m *ProxyMain) Run(ctx context.Context) error {
	m.cfg.Logger = slog.New(slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	p, err := proxy.New(m.cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := make(chan os.Signal, 1)
	m.Notify(sigs)
	defer m.StopNotify(sigs)
	go func() { // ends with Run: cancel or a signal
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	fmt.Fprintf(m.Stdout, "fulcrum proxy: listening on %s, following namespace %q\n", p.Addr(), m.cfg.Namespace)
	return p.Run(ctx)
}
