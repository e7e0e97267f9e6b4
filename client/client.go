// Package client is a Go client for one Fulcrum namespace that follows a
// replication=primary namespace's active node through failovers, without
// a moving service address or a proxy.
//
// It reads the control plane's view from any of the members' HTTP APIs
// (the same view "fulcrum proxy" reads), keeps a Redis-protocol
// connection pool to the namespace's active node, and switches the pool
// when a failover moves the active: at once when a request fails for a
// connection reason or is refused by a node that is no longer primary,
// and otherwise within Options.Poll. For other namespaces it talks to the
// first member that answers (every node serves every namespace).
//
// A request that fails with a connection error may or may not have been
// applied; the client retries only reads and refusals the server made
// before applying anything (NOT_LEADER, STALE_EPOCH, and an UNAVAILABLE
// whose message says the lease was lost or no primary is known), as the
// server's own router does.
//
// The Client is safe for concurrent use. Close stops its goroutine.
package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fulcrumdb/fulcrum/internal/proxy"
)

// Options configures a Client.
type Options struct {
	// Nodes are the members' HTTP API base URLs, e.g.
	// "http://10.0.0.1:7380"; any live one is enough.
	Nodes []string
	// Namespace is the namespace every command of the client runs in.
	Namespace string
	// Poll is how often the client reads the view (default 100ms).
	Poll time.Duration
	// Timeout bounds each request that comes without a deadline (default
	// 2s, the server's default request timeout).
	Timeout time.Duration
	// HTTP carries the view requests (default: a one-second timeout).
	HTTP *http.Client
}

// ErrClosed is returned by requests on a closed Client.
var ErrClosed = errors.New("fulcrum client: closed")

// Client is a namespace's client.
type Client struct {
	opts   Options
	cancel context.CancelFunc
	done   chan struct{}
	kick   chan struct{}

	mu struct {
		sync.Mutex
		node   uint64
		addr   string
		rdb    *redis.Client
		closed bool
	}
}

// New returns a client once it has found where to send requests, or an
// error when no member answers before ctx ends.
func New(ctx context.Context, opts Options) (*Client, error) {
	if len(opts.Nodes) == 0 || opts.Namespace == "" {
		return nil, errors.New("fulcrum client: Nodes and Namespace are required")
	}
	if opts.Poll <= 0 {
		opts.Poll = 100 * time.Millisecond
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.HTTP == nil {
		opts.HTTP = &http.Client{Timeout: time.Second}
	}
	for i, n := range opts.Nodes {
		opts.Nodes[i] = strings.TrimSuffix(n, "/")
	}
	c := &Client{opts: opts, done: make(chan struct{}), kick: make(chan struct{}, 1)}
	for {
		if err := c.refresh(ctx); err == nil {
			break
		} else if ctx.Err() != nil {
			return nil, fmt.Errorf("fulcrum client: no member answered: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("fulcrum client: no member answered: %w", ctx.Err())
		case <-time.After(opts.Poll):
		}
	}
	bg, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go c.follow(bg)
	return c, nil
}

// Close stops following the view and closes the connections.
func (c *Client) Close() error {
	c.cancel()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.closed = true
	if c.mu.rdb != nil {
		return c.mu.rdb.Close()
	}
	return nil
}

// Node is the member the client currently sends requests to.
func (c *Client) Node() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.node
}

// follow refreshes the target every Poll, or at once when a request
// asks, until ctx ends.
func (c *Client) follow(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(c.opts.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
		_ = c.refresh(ctx) // the old target stays until a member answers
	}
}

// refresh asks the members, in order, where requests should go.
func (c *Client) refresh(ctx context.Context) error {
	var last error
	for _, base := range c.opts.Nodes {
		t, err := proxy.Resolve(ctx, c.opts.HTTP, base, c.opts.Namespace)
		if err != nil && strings.Contains(err.Error(), "is not replication=primary") {
			// Any node serves other namespaces: the one that answered.
			t, err = proxy.Member(ctx, c.opts.HTTP, base)
		}
		if err != nil {
			last = err
			continue
		}
		if t.Addr == "" {
			last = errors.New("no primary yet")
			continue
		}
		c.retarget(t)
		return nil
	}
	return last
}

func (c *Client) retarget(t proxy.Target) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed || c.mu.addr == t.Addr {
		return
	}
	old := c.mu.rdb
	ns := c.opts.Namespace
	c.mu.rdb = redis.NewClient(&redis.Options{Addr: t.Addr, MaxRetries: -1, DialTimeout: time.Second,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "NAMESPACE", ns).Err() }})
	c.mu.node, c.mu.addr = t.Node, t.Addr
	if old != nil {
		old.Close()
	}
}

func (c *Client) current() (*redis.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return nil, ErrClosed
	}
	return c.mu.rdb, nil
}

// retryable says whether a failed request may be sent again: the server
// refused it before applying it, or (read only) the connection failed.
func retryable(err error, read bool) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return false
	}
	msg := err.Error()
	for _, code := range []string{"NOT_LEADER", "STALE_EPOCH"} {
		if strings.HasPrefix(msg, code) {
			return true
		}
	}
	if strings.HasPrefix(msg, "UNAVAILABLE") && (strings.Contains(msg, "lease lost") || strings.Contains(msg, "no primary") || strings.Contains(msg, "no grant yet")) {
		return true
	}
	if errors.Is(err, redis.ErrClosed) {
		return true // the pool was switched before the request was sent
	}
	var ne net.Error
	return read && (errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || strings.Contains(msg, "connection refused") || strings.Contains(msg, "EOF"))
}

// do runs f against the current target, following a failover within
// the request's deadline.
func (c *Client) do(ctx context.Context, read bool, f func(*redis.Client) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	for attempt := 0; ; attempt++ {
		rdb, err := c.current()
		if err != nil {
			return err
		}
		err = f(rdb)
		if !retryable(err, read) {
			return err
		}
		select { // ask the follower to look now
		case c.kick <- struct{}{}:
		default:
		}
		d := min(10*time.Millisecond<<min(attempt, 4), 100*time.Millisecond)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(d):
		}
	}
}

// Set stores value under key.
func (c *Client) Set(ctx context.Context, key, value string) error {
	return c.do(ctx, false, func(r *redis.Client) error { return r.Set(ctx, key, value, 0).Err() })
}

// Get returns key's value; found is false when it does not exist.
func (c *Client) Get(ctx context.Context, key string) (value string, found bool, err error) {
	err = c.do(ctx, true, func(r *redis.Client) error {
		value, err = r.Get(ctx, key).Result()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	return value, err == nil, err
}

// Del deletes keys and returns how many existed.
func (c *Client) Del(ctx context.Context, keys ...string) (int64, error) {
	var n int64
	err := c.do(ctx, false, func(r *redis.Client) (err error) {
		n, err = r.Del(ctx, keys...).Result()
		return err
	})
	return n, err
}

// Do sends any command (as redis.Client.Do); it is never retried after a
// connection failure, since it may be a write.
func (c *Client) Do(ctx context.Context, args ...any) (any, error) {
	var out any
	err := c.do(ctx, false, func(r *redis.Client) (err error) {
		out, err = r.Do(ctx, args...).Result()
		return err
	})
	return out, err
}
