package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/failover"
)

// Config configures a Proxy.
type Config struct {
	// Listen is the TCP address clients connect to.
	Listen string
	// Nodes are the HTTP API base URLs of cluster members
	// ("http://10.0.0.1:7380"); the proxy asks them, in turn, for the
	// view, so any live one will do.
	Nodes []string
	// Namespace is the replication=primary namespace whose active node
	// the proxy follows.
	Namespace string
	// Poll is how often the proxy reads the view (default 100ms): it
	// bounds how long after a failover clients are redirected.
	Poll time.Duration
	// HTTP carries the view requests (default: a client with a one-second
	// timeout).
	HTTP   *http.Client
	Logger *slog.Logger
}

// Validate checks the fields.
func (c Config) Validate() error {
	switch {
	case c.Listen == "":
		return errors.New("proxy: no listen address")
	case len(c.Nodes) == 0:
		return errors.New("proxy: no cluster nodes to ask for the view")
	case c.Namespace == "":
		return errors.New("proxy: no namespace to follow")
	case c.Poll < 0:
		return fmt.Errorf("proxy: poll %v: want > 0", c.Poll)
	}
	for _, n := range c.Nodes {
		u, err := url.Parse(n)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("proxy: node %q: want an HTTP base URL such as http://127.0.0.1:7380", n)
		}
	}
	return nil
}

// Target is the node the proxy sends new connections to.
type Target struct {
	Node uint64
	Addr string // its RESP address
}

// Proxy accepts client connections and pipes each to the namespace's
// active node, closing them all when the active changes.
type Proxy struct {
	cfg Config
	ln  net.Listener

	mu struct {
		sync.Mutex
		target Target
		conns  map[net.Conn]bool // client sides of the open pipes
		closed bool
	}
}

// New validates cfg and listens; Run serves.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Poll == 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p := &Proxy{cfg: cfg, ln: ln}
	p.mu.conns = make(map[net.Conn]bool)
	return p, nil
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the current target (zero before the first view).
func (p *Proxy) Target() Target {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.target
}

// Run follows the view and serves connections until ctx ends; then it
// closes the listener and every pipe and returns once they are done.
func (p *Proxy) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.follow(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		p.ln.Close()
		p.mu.Lock()
		p.mu.closed = true
		for c := range p.mu.conns {
			c.Close()
		}
		p.mu.Unlock()
	}()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return fmt.Errorf("proxy: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.pipe(ctx, c)
		}()
	}
}

// pipe connects a client to the current target and copies both ways
// until either side closes or the target changes.
func (p *Proxy) pipe(ctx context.Context, client net.Conn) {
	defer client.Close()
	t := p.Target()
	if t.Addr == "" {
		p.cfg.Logger.Warn("proxy: no active node known yet; closing the connection", "namespace", p.cfg.Namespace)
		return
	}
	d := net.Dialer{Timeout: time.Second}
	server, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		p.cfg.Logger.Warn("proxy: cannot reach the active node", "node", t.Node, "addr", t.Addr, "err", err)
		return
	}
	defer server.Close()
	p.mu.Lock()
	if p.mu.closed || p.mu.target != t {
		p.mu.Unlock()
		return
	}
	p.mu.conns[client] = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.mu.conns, client)
		p.mu.Unlock()
	}()
	done := make(chan struct{}, 2)
	go func() { // ends when either side closes: the other close follows
		io.Copy(server, client)
		server.Close()
		done <- struct{}{}
	}()
	io.Copy(client, server)
	client.Close()
	<-done
}

// follow reads the view every Poll until ctx ends.
func (p *Proxy) follow(ctx context.Context) {
	t := time.NewTicker(p.cfg.Poll)
	defer t.Stop()
	next := 0 // the node to ask first: the last one that answered
	for {
		for i := range p.cfg.Nodes {
			n := (next + i) % len(p.cfg.Nodes)
			target, err := p.resolve(ctx, p.cfg.Nodes[n])
			if err != nil {
				p.cfg.Logger.Debug("proxy: view", "node", p.cfg.Nodes[n], "err", err)
				continue
			}
			next = n
			if target.Addr != "" {
				p.retarget(target)
			}
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// retarget makes t the target and closes the pipes to the old one, so
// their clients reconnect to t.
func (p *Proxy) retarget(t Target) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.target == t {
		return
	}
	old := p.mu.target
	p.mu.target = t
	for c := range p.mu.conns {
		c.Close()
	}
	p.cfg.Logger.Info("proxy: following the active node", "namespace", p.cfg.Namespace, "node", t.Node, "addr", t.Addr, "was", old.Node)
}

// namespaceView and clusterView are what the proxy reads of the HTTP
// API (GET /v1/namespaces/NS and GET /v1/cluster).
type namespaceView struct {
	Policy struct {
		Replication string `json:"replication"`
	} `json:"policy"`
	Shards []struct {
		Leader uint64 `json:"leader"`
	} `json:"shards"`
}

type clusterView struct {
	Node    uint64 `json:"node"`
	Members []struct {
		ID       uint64 `json:"id"`
		PeerAddr string `json:"peer_addr"`
		RESPAddr string `json:"resp_addr"`
	} `json:"members"`
}

func (p *Proxy) resolve(ctx context.Context, base string) (Target, error) {
	return Resolve(ctx, p.cfg.HTTP, base, p.cfg.Namespace)
}

// Resolve asks one member (its HTTP API base URL) for a
// replication=primary namespace's active node: the primary of most of
// its shards (ties to the highest id, as the control plane's
// active-passive placement), and that member's RESP address. A zero
// Target with no error means no shard has a primary yet.
func Resolve(ctx context.Context, hc *http.Client, base, namespace string) (Target, error) {
	var ns namespaceView
	if err := get(ctx, hc, base+"/v1/namespaces/"+url.PathEscape(namespace), &ns); err != nil {
		return Target{}, err
	}
	if ns.Policy.Replication != "primary" {
		return Target{}, fmt.Errorf("namespace %q is not replication=primary", namespace)
	}
	prims := make([]failover.NodeID, len(ns.Shards))
	for i, sh := range ns.Shards {
		prims[i] = failover.NodeID(sh.Leader)
	}
	active := uint64(failover.Active(prims))
	if active == 0 {
		return Target{}, nil // no primary yet: keep the old target
	}
	var cv clusterView
	if err := get(ctx, hc, base+"/v1/cluster", &cv); err != nil {
		return Target{}, err
	}
	for _, m := range cv.Members {
		if m.ID == active {
			addr, err := dialable(m.RESPAddr, m.PeerAddr)
			if err != nil {
				return Target{}, fmt.Errorf("member %d: %w", m.ID, err)
			}
			return Target{Node: active, Addr: addr}, nil
		}
	}
	return Target{}, fmt.Errorf("member %d is not in the view", active)
}

// dialable turns a listen address into one to dial: an unspecified host
// ("", 0.0.0.0, ::) becomes the member's peer host.
func dialable(listen, peer string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("RESP address %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if host, _, err = net.SplitHostPort(peer); err != nil {
			return "", fmt.Errorf("RESP address %q with peer address %q: %w", listen, peer, err)
		}
	}
	return net.JoinHostPort(host, port), nil
}

func get(ctx context.Context, hc *http.Client, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out)
}

// String describes the proxy for logs.
func (p *Proxy) String() string {
	t := p.Target()
	return "proxy " + p.Addr() + " -> node " + strconv.FormatUint(t.Node, 10) + " " + t.Addr
}

// Member asks a member (its HTTP API base URL) for its own RESP address.
func Member(ctx context.Context, hc *http.Client, base string) (Target, error) {
	var cv clusterView
	if err := get(ctx, hc, base+"/v1/cluster", &cv); err != nil {
		return Target{}, err
	}
	for _, m := range cv.Members {
		if m.ID == cv.Node {
			addr, err := dialable(m.RESPAddr, m.PeerAddr)
			if err != nil {
				return Target{}, fmt.Errorf("member %d: %w", m.ID, err)
			}
			return Target{Node: m.ID, Addr: addr}, nil
		}
	}
	return Target{}, fmt.Errorf("member %d is not in its own view yet", cv.Node)
}
