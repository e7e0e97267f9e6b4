package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Request is one operation sent to a target.
type Request struct {
	Op    Op
	Key   []byte
	Value []byte // for OpWrite
}

// Target is a server under test. It opens one connection per client.
type Target interface {
	// Name is the label used in reports ("fulcrum", "redis").
	Name() string
	// Kind is the protocol ("resp", "http", "etcd").
	Kind() string
	// Addr is the address it connects to (comma-separated if several).
	Addr() string
	// Connect opens the connection of the client numbered client (0 to
	// Config.Clients-1), set up as opts asks. A target with several
	// addresses connects client i to address i mod n, so clients spread
	// evenly and the same way in every run.
	Connect(ctx context.Context, opts ConnOptions, client int) (Conn, error)
}

// ConnOptions is what every connection of a run asks of the server.
type ConnOptions struct {
	// Namespace is the Fulcrum namespace ("" = the server's default).
	Namespace string
	// Quorum overrides the W and R of a Fulcrum eventual namespace on
	// the resp and http targets (see TakesQuorum); others ignore it.
	Quorum Quorum
}

// Quorum is how many replicas of a Fulcrum eventual namespace must
// acknowledge each write (W) and answer each read (R); 0 leaves the
// namespace's own. The server checks them against the namespace at
// every request (1 to its replicas; weak namespaces take only 1) and
// strong namespaces ignore them.
type Quorum struct {
	W int `json:"w"`
	R int `json:"r"`
}

// IsZero reports whether q overrides nothing.
func (q Quorum) IsZero() bool { return q == Quorum{} }

// Validate checks that q's counts are not negative (the server checks
// the upper bound against the namespace).
func (q Quorum) Validate() error {
	if q.W < 0 || q.R < 0 {
		return fmt.Errorf("quorum w %d r %d: want 0 (the namespace's) or more", q.W, q.R)
	}
	return nil
}

// String renders q as "w=2 r=default".
func (q Quorum) String() string {
	f := func(n int) string {
		if n == 0 {
			return "default"
		}
		return strconv.Itoa(n)
	}
	return "w=" + f(q.W) + " r=" + f(q.R)
}

// quorumTarget marks the targets that send Quorum to the server: the
// Fulcrum front ends (a resp target may also be another Redis-protocol
// server, which then refuses the command at connect).
type quorumTarget interface{ quorumCapable() }

var (
	_ quorumTarget = (*RESPTarget)(nil)
	_ quorumTarget = (*HTTPTarget)(nil)
)

// TakesQuorum reports whether t applies ConnOptions.Quorum (resp and
// http do; etcd has no such setting and ignores it).
func TakesQuorum(t Target) bool {
	_, ok := t.(quorumTarget)
	return ok
}

// Conn is one client's connection to a target. It is used by one
// goroutine at a time.
type Conn interface {
	// Do sends reqs (pipelined if the protocol allows) and stores each
	// request's error in errs[i]. A missing key is not an error.
	Do(ctx context.Context, reqs []Request, errs []error)
	Close() error
}

// Versioner is a Target that can tell the server's software version, for
// the result file.
type Versioner interface {
	ServerVersion(ctx context.Context) (string, error)
}

var (
	_ Versioner = (*RESPTarget)(nil)
	_ Versioner = (*HTTPTarget)(nil)
	_ Versioner = (*EtcdTarget)(nil)
)

// ParseTarget parses "name=kind://addr[,addr...][?options]", e.g.
// "fulcrum=resp://127.0.0.1:7379" or
// "etcd=etcd://127.0.0.1:2379,127.0.0.1:22379?conns=8". Kinds: resp, http,
// etcd; only etcd takes options (see EtcdTarget).
func ParseTarget(spec string) (Target, error) {
	name, rest, ok := strings.Cut(spec, "=")
	if !ok || name == "" {
		return nil, fmt.Errorf("target %q: want name=kind://addr", spec)
	}
	kind, rest, ok := strings.Cut(rest, "://")
	if !ok || rest == "" {
		return nil, fmt.Errorf("target %q: want name=kind://addr", spec)
	}
	list, query, hasQuery := strings.Cut(rest, "?")
	var addrs []string
	for a := range strings.SplitSeq(list, ",") {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("target %q: address %q: %w", spec, a, err)
		}
		addrs = append(addrs, a)
	}
	if hasQuery && kind != "etcd" {
		return nil, fmt.Errorf("target %q: %s takes no options", spec, kind)
	}
	switch kind {
	case "resp":
		return &RESPTarget{name: name, addrs: addrs}, nil
	case "http":
		return &HTTPTarget{name: name, addrs: addrs}, nil
	case "etcd":
		t, err := newEtcdTarget(name, addrs, query)
		if err != nil {
			return nil, fmt.Errorf("target %q: %w", spec, err)
		}
		return t, nil
	}
	return nil, fmt.Errorf("target %q: unknown kind %q (want resp, http or etcd)", spec, kind)
}

// ErrorCode classifies an error for the report: the first word of a
// server error (UNAVAILABLE, TIMEOUT, TOO_LARGE, ...), TIMEOUT for client
// side timeouts, IO for other connection failures.
func ErrorCode(err error) string {
	var ce *codedError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ce):
		return ce.code
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "TIMEOUT"
	case errors.Is(err, context.Canceled):
		return "CANCELED"
	}
	var re redis.Error
	if errors.As(err, &re) {
		if w, _, _ := strings.Cut(re.Error(), " "); w != "" {
			return w
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "TIMEOUT"
	}
	return "IO"
}

// codedError is a server's answer carrying an error code.
type codedError struct {
	code string
	msg  string
}

func (e *codedError) Error() string { return e.code + " " + e.msg }

// RESPTarget is any Redis-protocol server, or several nodes of one
// cluster that each answer every request.
type RESPTarget struct {
	name  string
	addrs []string
}

var _ Target = (*RESPTarget)(nil)

// Name implements Target.
func (t *RESPTarget) Name() string { return t.name }

// Kind implements Target.
func (t *RESPTarget) Kind() string { return "resp" }

// Addr implements Target.
func (t *RESPTarget) Addr() string { return strings.Join(t.addrs, ",") }

// quorumCapable marks RESPTarget as sending FULCRUM.CONSISTENCY.
func (t *RESPTarget) quorumCapable() {}

// Connect implements Target: a go-redis client with a single connection
// and no retries, so that every latency is one round trip. A namespace is
// selected with NAMESPACE on the connection, then a quorum with
// FULCRUM.CONSISTENCY (only when one is set, so that other Redis-protocol
// servers can be driven without one). go-redis runs both again if it
// reconnects.
func (t *RESPTarget) Connect(ctx context.Context, co ConnOptions, client int) (Conn, error) {
	addr := t.addrs[client%len(t.addrs)]
	opts := &redis.Options{
		Addr:            addr,
		PoolSize:        1,
		MaxRetries:      -1,
		DisableIdentity: true,
		ReadTimeout:     5 * time.Second,
		WriteTimeout:    5 * time.Second,
	}
	if setup := respSetup(co); len(setup) > 0 {
		opts.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
			for _, cmd := range setup {
				if err := cn.Do(ctx, cmd...).Err(); err != nil {
					return &setupError{cmd: cmd, err: err}
				}
			}
			return nil
		}
	}
	c := redis.NewClient(opts)
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("connect %s (%s): %w", t.name, addr, err)
	}
	return &respConn{c: c}, nil
}

// respSetup returns the commands that set a connection up as co asks.
func respSetup(co ConnOptions) [][]any {
	var cmds [][]any
	if co.Namespace != "" {
		cmds = append(cmds, []any{"NAMESPACE", co.Namespace})
	}
	if !co.Quorum.IsZero() {
		cmd := []any{"FULCRUM.CONSISTENCY"}
		if co.Quorum.W != 0 {
			cmd = append(cmd, "W", strconv.Itoa(co.Quorum.W))
		}
		if co.Quorum.R != 0 {
			cmd = append(cmd, "R", strconv.Itoa(co.Quorum.R))
		}
		cmds = append(cmds, cmd)
	}
	return cmds
}

// setupError is a setup command that the server refused.
type setupError struct {
	cmd []any
	err error
}

func (e *setupError) Error() string {
	parts := make([]string, len(e.cmd))
	for i, a := range e.cmd {
		parts[i] = fmt.Sprint(a)
	}
	msg := strings.Join(parts, " ")
	if e.cmd[0] == "FULCRUM.CONSISTENCY" {
		msg += " (a quorum needs a Fulcrum server)"
	}
	return msg + ": " + e.err.Error()
}

// Unwrap returns a list, not an error: go-redis strips one level of
// single wrapping (errors.Unwrap) off an OnConnect error, which would
// lose the command from the message; errors.Is and As still see e.err.
func (e *setupError) Unwrap() []error { return []error{e.err} }

// ServerVersion implements Versioner from INFO server of the first
// address: "fulcrum dev", "redis 7.2.4".
func (t *RESPTarget) ServerVersion(ctx context.Context) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: t.addrs[0], PoolSize: 1, MaxRetries: -1, DisableIdentity: true})
	defer c.Close()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	fields := map[string]string{}
	for line := range strings.SplitSeq(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	if v, ok := fields["fulcrum_version"]; ok {
		return "fulcrum " + v, nil
	}
	if v, ok := fields["redis_version"]; ok {
		return "redis " + v, nil
	}
	return "", errors.New("no version in INFO server")
}

type respConn struct {
	c    *redis.Client
	cmds []redis.Cmder
}

// errRESPCAS answers an OpCAS on a RESP connection; CheckTarget refuses
// such a workload before it starts.
var errRESPCAS = errors.New("resp has no compare-and-set")

func respCmd(ctx context.Context, c redis.Cmdable, r Request) redis.Cmder {
	switch r.Op {
	case OpCAS:
		cmd := redis.NewStatusCmd(ctx) // not sent: a SET would not be a CAS
		cmd.SetErr(errRESPCAS)
		return cmd
	case OpRead:
		return c.Get(ctx, string(r.Key))
	case OpDelete:
		return c.Del(ctx, string(r.Key))
	}
	return c.Set(ctx, string(r.Key), r.Value, 0)
}

func (c *respConn) Do(ctx context.Context, reqs []Request, errs []error) {
	if len(reqs) == 1 {
		errs[0] = ignoreNil(respCmd(ctx, c.c, reqs[0]).Err())
		return
	}
	p := c.c.Pipeline()
	c.cmds = c.cmds[:0]
	for _, r := range reqs {
		c.cmds = append(c.cmds, respCmd(ctx, p, r))
	}
	_, _ = p.Exec(ctx) // per-command errors are read below
	for i, cmd := range c.cmds {
		errs[i] = ignoreNil(cmd.Err())
	}
}

func ignoreNil(err error) error {
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

func (c *respConn) Close() error { return c.c.Close() }

// HTTPTarget is Fulcrum's HTTP API, on one node or several: GET, PUT and
// DELETE of /v1/namespaces/{ns}/keys/{key}; a CAS is a PUT with If-Match
// on the version (Fulcrum-Version) the client last saw, or If-None-Match: *
// if it saw the key absent.
type HTTPTarget struct {
	name  string
	addrs []string
}

var _ Target = (*HTTPTarget)(nil)

// Name implements Target.
func (t *HTTPTarget) Name() string { return t.name }

// Kind implements Target.
func (t *HTTPTarget) Kind() string { return "http" }

// casCapable marks HTTPTarget as running CASes: a PUT with If-Match.
func (t *HTTPTarget) casCapable() {}

// quorumCapable marks HTTPTarget as sending ?w= and ?r=.
func (t *HTTPTarget) quorumCapable() {}

// Addr implements Target.
func (t *HTTPTarget) Addr() string { return strings.Join(t.addrs, ",") }

// Connect implements Target: a keep-alive client with its own transport,
// so each bench client has its own connection. A quorum becomes query
// parameters: ?r=N on reads, ?w=N on writes and deletes (both on a CAS:
// its read and its PUT).
func (t *HTTPTarget) Connect(ctx context.Context, co ConnOptions, client int) (Conn, error) {
	addr := t.addrs[client%len(t.addrs)]
	ns := co.Namespace
	if ns == "" {
		ns = "default"
	}
	tr := &http.Transport{
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	c := &httpConn{
		client: &http.Client{Transport: tr, Timeout: 5 * time.Second},
		tr:     tr,
		base:   "http://" + addr + "/v1/namespaces/" + url.PathEscape(ns) + "/keys/",
	}
	if co.Quorum.R != 0 {
		c.readQuery = "?r=" + strconv.Itoa(co.Quorum.R)
	}
	if co.Quorum.W != 0 {
		c.writeQuery = "?w=" + strconv.Itoa(co.Quorum.W)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("connect %s (%s): %w", t.name, addr, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return c, nil
}

// ServerVersion implements Versioner from the Server header of the first
// address's /healthz.
func (t *HTTPTarget) ServerVersion(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.addrs[0]+"/healthz", nil)
	if err != nil {
		return "", err
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return strings.Replace(resp.Header.Get("Server"), "/", " ", 1), nil
}

type httpConn struct {
	client     *http.Client
	tr         *http.Transport
	base       string
	readQuery  string        // "?r=N" or ""
	writeQuery string        // "?w=N" or ""
	seen       *versionCache // nil until the first CAS
}

func (c *httpConn) Do(ctx context.Context, reqs []Request, errs []error) {
	// HTTP/1.1 has no usable pipelining: requests go one after another.
	for i, r := range reqs {
		if r.Op == OpCAS {
			errs[i] = c.cas(ctx, r)
			continue
		}
		errs[i] = c.do(ctx, r, "", "")
	}
}

// cas is a PUT conditional on the version this client last saw of the key
// (If-Match), or on its absence (If-None-Match: *). A key never seen is
// read first, in the same operation, as a client would.
func (c *httpConn) cas(ctx context.Context, r Request) error {
	if c.seen == nil {
		c.seen = newVersionCache()
	}
	s, ok := c.seen.get(r.Key)
	if !ok {
		if err := c.do(ctx, Request{Op: OpRead, Key: r.Key}, "", ""); err != nil {
			return err
		}
		if s, ok = c.seen.get(r.Key); !ok {
			return fmt.Errorf("cas %q: the read returned no version", r.Key)
		}
	}
	hdr, val := "If-None-Match", "*"
	if s.exists {
		hdr, val = "If-Match", `"`+strconv.FormatUint(s.version, 10)+`"`
	}
	err := c.do(ctx, Request{Op: OpWrite, Key: r.Key, Value: r.Value}, hdr, val)
	var ce *codedError
	if errors.As(err, &ce) && ce.code == "CONFLICT" {
		c.seen.forget(r.Key)
		return ErrConflict
	}
	return err
}

// do sends one request, with the header hdr: val if hdr is not empty, and
// notes the key's version in c.seen (when there is one).
func (c *httpConn) do(ctx context.Context, r Request, hdr, val string) error {
	method, body, query := http.MethodGet, io.Reader(nil), c.readQuery
	switch r.Op {
	case OpWrite:
		method, body, query = http.MethodPut, bytes.NewReader(r.Value), c.writeQuery
	case OpDelete:
		method, query = http.MethodDelete, c.writeQuery
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+url.PathEscape(string(r.Key))+query, body)
	if err != nil {
		return err
	}
	if r.Op == OpWrite {
		req.Header.Set("Content-Type", "application/octet-stream")
	} else {
		req.Header.Set("Accept", "application/octet-stream")
	}
	if hdr != "" {
		req.Header.Set(hdr, val)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 300 || resp.StatusCode == http.StatusNotFound && r.Op != OpWrite {
		c.noteVersion(r, resp)
		_, err := io.Copy(io.Discard, resp.Body)
		return err
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(data, &eb) == nil && eb.Code != "" {
		return &codedError{code: eb.Code, msg: eb.Message}
	}
	return &codedError{code: fmt.Sprintf("HTTP_%d", resp.StatusCode), msg: strings.TrimSpace(string(data))}
}

// noteVersion records what a successful answer says of the key: its
// version (the Fulcrum-Version header of a GET or PUT), or its absence
// (a 404, or a DELETE).
func (c *httpConn) noteVersion(r Request, resp *http.Response) {
	if c.seen == nil {
		return
	}
	if resp.StatusCode == http.StatusNotFound || r.Op == OpDelete {
		c.seen.set(r.Key, seen{})
		return
	}
	v, err := strconv.ParseUint(resp.Header.Get("Fulcrum-Version"), 10, 64)
	if err != nil {
		c.seen.forget(r.Key) // no version: the next CAS reads first
		return
	}
	c.seen.set(r.Key, seen{version: v, exists: true})
}

func (c *httpConn) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}
