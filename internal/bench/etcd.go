package bench

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// etcdTimeout bounds one request, like the RESP target's read and write
// timeouts.
const etcdTimeout = 5 * time.Second

// EtcdTarget is an etcd v3 cluster driven through the official Go client
// (go.etcd.io/etcd/client/v3). Reads are linearizable Range requests (the
// client's default, not WithSerializable), writes are Put, deletes are
// Delete, CASes are a Txn If(ModRevision(key) == last seen).Then(Put); a
// missing key is not an error. Every client is given all the
// endpoints and its requests are spread over them round-robin by the
// client's balancer, so writes and reads reaching a follower are forwarded
// to (or confirmed with) the leader by etcd itself, as in production.
//
// Connections: by default every bench client has its own clientv3.Client,
// which opens one HTTP/2 connection per endpoint and carries one request
// at a time, the same shape as the RESP target's one TCP connection per
// client. With the option conns=N ("etcd://a,b,c?conns=8"), the bench
// clients share N clientv3.Clients instead (client i uses i mod N) and
// their requests are multiplexed as concurrent HTTP/2 streams, which is
// how etcd's own benchmark tool drives it (--conns, --clients) and lets
// the client and server batch frames per write.
//
// Retries: the client's own unary retry interceptor cannot be switched
// off; it is limited to one retry, which happens only on errors (none in a
// healthy run), so a successful request's latency is one round trip.
type EtcdTarget struct {
	name      string
	endpoints []string
	conns     int // 0: a client per bench client; else this many shared

	mu struct {
		sync.Mutex
		shared map[int]*sharedEtcd // by slot, while some connection uses it
	}
}

// sharedEtcd is a clientv3.Client shared by refs bench connections.
type sharedEtcd struct {
	c    *clientv3.Client
	refs int
}

var _ Target = (*EtcdTarget)(nil)

// newEtcdTarget builds a target from the parsed endpoints and the option
// string ("conns=8").
func newEtcdTarget(name string, endpoints []string, query string) (*EtcdTarget, error) {
	t := &EtcdTarget{name: name, endpoints: endpoints}
	opts, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("options %q: %w", query, err)
	}
	for k, v := range opts {
		switch k {
		case "conns":
			n, err := strconv.Atoi(v[len(v)-1])
			if err != nil || n < 1 {
				return nil, fmt.Errorf("conns=%s: want a positive integer", v[len(v)-1])
			}
			t.conns = n
		default:
			return nil, fmt.Errorf("unknown option %q (etcd takes conns)", k)
		}
	}
	t.mu.shared = make(map[int]*sharedEtcd)
	return t, nil
}

// Name implements Target.
func (t *EtcdTarget) Name() string { return t.name }

// Kind implements Target.
func (t *EtcdTarget) Kind() string { return "etcd" }

// casCapable marks EtcdTarget as running CASes: a Txn on ModRevision.
func (t *EtcdTarget) casCapable() {}

// Addr implements Target: the endpoints, comma-separated.
func (t *EtcdTarget) Addr() string { return strings.Join(t.endpoints, ",") }

// Conns is the number of shared clients, 0 when every bench client has
// its own.
func (t *EtcdTarget) Conns() int { return t.conns }

func (t *EtcdTarget) newClient() (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:       t.endpoints,
		DialTimeout:     etcdTimeout,
		Logger:          zap.NewNop(),
		MaxUnaryRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", t.Addr(), err)
	}
	return c, nil
}

// Connect implements Target. A namespace becomes a key prefix "ns/";
// the quorum is ignored (etcd's reads and writes are always
// linearizable). The connection is checked with a read of a key outside
// the workload's.
func (t *EtcdTarget) Connect(ctx context.Context, co ConnOptions, client int) (Conn, error) {
	ns := co.Namespace
	c, release, err := t.client(client)
	if err != nil {
		return nil, err
	}
	kv := c.KV
	if ns != "" {
		kv = namespace.NewKV(kv, ns+"/")
	}
	conn := &etcdConn{kv: kv, release: release}
	pctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	if _, err := kv.Get(pctx, "\x00fulcrum-bench-probe"); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("connect %s (%s): %w", t.name, t.Addr(), etcdError(err))
	}
	return conn, nil
}

// client returns the clientv3.Client bench client i uses and the function
// that gives it back (closing it when no connection uses it any more).
func (t *EtcdTarget) client(i int) (*clientv3.Client, func() error, error) {
	if t.conns == 0 {
		c, err := t.newClient()
		if err != nil {
			return nil, nil, err
		}
		return c, c.Close, nil
	}
	slot := i % t.conns
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.mu.shared[slot]
	if s == nil {
		// clientv3.New does not wait for the connection (grpc dials in
		// the background), so it is cheap enough to call under the lock.
		c, err := t.newClient()
		if err != nil {
			return nil, nil, err
		}
		s = &sharedEtcd{c: c}
		t.mu.shared[slot] = s
	}
	s.refs++
	return s.c, func() error {
		t.mu.Lock()
		defer t.mu.Unlock()
		if s.refs--; s.refs > 0 {
			return nil
		}
		delete(t.mu.shared, slot)
		return s.c.Close()
	}, nil
}

// ServerVersion implements Versioner from the Status of the first endpoint
// that answers: "etcd 3.4.23".
func (t *EtcdTarget) ServerVersion(ctx context.Context) (string, error) {
	c, err := t.newClient()
	if err != nil {
		return "", err
	}
	defer c.Close()
	var errs []error
	for _, ep := range t.endpoints {
		sctx, cancel := context.WithTimeout(ctx, etcdTimeout)
		st, err := c.Status(sctx, ep)
		cancel()
		if err == nil {
			return "etcd " + st.Version, nil
		}
		errs = append(errs, fmt.Errorf("status of %s: %w", ep, err))
	}
	return "", errors.Join(errs...)
}

type etcdConn struct {
	kv      clientv3.KV
	release func() error
	once    sync.Once
	seen    *versionCache // ModRevisions; nil until the first CAS
}

// Do implements Conn. etcd has no pipelining, so requests go one after
// another (Run refuses a pipeline for this target anyway).
func (c *etcdConn) Do(ctx context.Context, reqs []Request, errs []error) {
	for i, r := range reqs {
		rctx, cancel := context.WithTimeout(ctx, etcdTimeout)
		errs[i] = c.do(rctx, r)
		cancel()
	}
}

// do sends one request and notes the key's ModRevision in c.seen (0: the
// key is absent), for CASes.
func (c *etcdConn) do(ctx context.Context, r Request) error {
	key := string(r.Key)
	switch r.Op {
	case OpRead:
		resp, err := c.kv.Get(ctx, key)
		if err != nil {
			return etcdError(err)
		}
		var rev int64
		if len(resp.Kvs) > 0 {
			rev = resp.Kvs[0].ModRevision
		}
		c.seen.set(r.Key, seen{version: uint64(rev), exists: rev != 0})
	case OpDelete:
		if _, err := c.kv.Delete(ctx, key); err != nil {
			return etcdError(err)
		}
		c.seen.set(r.Key, seen{})
	case OpCAS:
		return c.cas(ctx, r)
	default:
		resp, err := c.kv.Put(ctx, key, string(r.Value))
		if err != nil {
			return etcdError(err)
		}
		c.seen.set(r.Key, seen{version: uint64(resp.Header.Revision), exists: true})
	}
	return nil
}

// cas is a Txn putting the value if the key's ModRevision is still the
// one this client last saw (0: still absent). A key never seen is read
// first, in the same operation, as a client would.
func (c *etcdConn) cas(ctx context.Context, r Request) error {
	if c.seen == nil {
		c.seen = newVersionCache()
	}
	s, ok := c.seen.get(r.Key)
	if !ok {
		if err := c.do(ctx, Request{Op: OpRead, Key: r.Key}); err != nil {
			return err
		}
		s, _ = c.seen.get(r.Key)
	}
	key := string(r.Key)
	resp, err := c.kv.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", int64(s.version))).
		Then(clientv3.OpPut(key, string(r.Value))).
		Commit()
	if err != nil {
		return etcdError(err)
	}
	if !resp.Succeeded {
		c.seen.forget(r.Key)
		return ErrConflict
	}
	c.seen.set(r.Key, seen{version: uint64(resp.Header.Revision), exists: true})
	return nil
}

func (c *etcdConn) Close() error {
	var err error
	c.once.Do(func() { err = c.release() })
	return err
}

// etcdError turns an etcd or gRPC error into a codedError whose code is
// the gRPC status in upper snake case (UNAVAILABLE, RESOURCE_EXHAUSTED),
// with TIMEOUT for DEADLINE_EXCEEDED as the other targets report it.
// Context errors of the caller are returned as they are.
func etcdError(err error) error {
	if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	var code codes.Code
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	} else if s, ok := status.FromError(err); ok {
		code = s.Code()
	} else {
		return err
	}
	switch code {
	case codes.OK, codes.Unknown:
		return err
	case codes.DeadlineExceeded:
		return &codedError{code: "TIMEOUT", msg: err.Error()}
	}
	return &codedError{code: upperSnake(code.String()), msg: err.Error()}
}

// upperSnake turns "ResourceExhausted" into "RESOURCE_EXHAUSTED".
func upperSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}
