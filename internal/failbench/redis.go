package failbench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limits of the Redis system's steps. Sentinels discover replicas from
// the master's INFO (every 10 s) and each other through hello messages
// (every 2 s), so becoming whole takes longer than for Fulcrum.
const (
	redisStartLimit = 30 * time.Second
	redisReadyLimit = 90 * time.Second
	// masterName is the name the Sentinels monitor the master under.
	masterName = "fbmaster"
)

// RedisConfig describes the setup StartRedis runs: a master and two
// replicas (redis-server, no persistence) and three Sentinels with quorum
// 2, all on loopback.
type RedisConfig struct {
	// Server and Sentinel are the redis-server and redis-sentinel
	// binaries; Dir holds their configurations and working directories.
	Server, Sentinel, Dir string
	// DownAfter is Sentinel's down-after-milliseconds; 0 leaves it out of
	// the configuration (Sentinel's default, 30 s).
	DownAfter time.Duration
	// FailoverTimeout is Sentinel's failover-timeout (60 s if 0, the
	// value of the Sentinel documentation's example configuration). A
	// Sentinel whose failover attempt failed waits twice this before the
	// next; a completed failover resets it.
	FailoverTimeout time.Duration
	// WaitReplicas, if above 0, follows every SET with WAIT WaitReplicas
	// WaitTimeout on the same connection; the write counts as
	// acknowledged only if that many replicas confirmed it (Redis's
	// closest analogue of semi-synchronous replication).
	WaitReplicas int
	WaitTimeout  time.Duration
}

// Redis is a running master, replicas and Sentinels: a System. It owns
// its processes; Close kills them. It is driven by one goroutine at a
// time (Run's); each of its clients by one writer connection.
type Redis struct {
	cfg       RedisConfig
	servers   []*redisNode
	sentinels []*redisNode
	victim    int // index in servers of the one killed last, or -1
	fw        *firewall
}

var (
	_ System   = (*Redis)(nil)
	_ Isolator = (*Redis)(nil)
)

type redisNode struct {
	name, addr, dir, conf string
	proc                  *proc
}

// StartRedis starts the servers and Sentinels and waits until they are
// Ready. On error everything started is stopped.
func StartRedis(ctx context.Context, cfg RedisConfig) (*Redis, error) {
	if cfg.FailoverTimeout == 0 {
		cfg.FailoverTimeout = 60 * time.Second
	}
	if cfg.WaitTimeout == 0 {
		cfg.WaitTimeout = time.Second
	}
	r := &Redis{cfg: cfg, victim: -1}
	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		if err = r.start(ctx, attempt); err == nil {
			break
		}
		r.Close()
		if !strings.Contains(err.Error(), "address already in use") {
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}
	if err := r.Ready(ctx); err != nil {
		err = fmt.Errorf("%w\n%s", err, r.Tail())
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Redis) start(ctx context.Context, attempt int) error {
	// Each server on an address of its own (and replicating from it), so
	// that the firewall can cut the master off from its replicas.
	var ips []string
	for i := range 3 {
		ips = append(ips, loopbackIP(redisIPBase, i))
	}
	addrs, err := freeAddrsOn(ips)
	if err != nil {
		return err
	}
	sentAddrs, err := freeAddrs(3)
	if err != nil {
		return err
	}
	addrs = append(addrs, sentAddrs...)
	r.servers, r.sentinels = nil, nil
	for i := range 3 {
		nd := &redisNode{name: fmt.Sprintf("redis-server %d", i+1), addr: addrs[i],
			dir: filepath.Join(r.cfg.Dir, fmt.Sprintf("a%d-server%d", attempt, i+1))}
		nd.conf = nd.dir + ".conf"
		r.servers = append(r.servers, nd)
		master := ""
		if i > 0 {
			master = addrs[0]
		}
		if err := r.startServer(ctx, nd, master); err != nil {
			return err
		}
	}
	host, port, _ := net.SplitHostPort(addrs[0])
	for i := range 3 {
		nd := &redisNode{name: fmt.Sprintf("redis-sentinel %d", i+1), addr: addrs[3+i],
			dir: filepath.Join(r.cfg.Dir, fmt.Sprintf("a%d-sentinel%d", attempt, i+1))}
		nd.conf = nd.dir + ".conf"
		r.sentinels = append(r.sentinels, nd)
		_, sport, _ := net.SplitHostPort(nd.addr)
		conf := fmt.Sprintf("bind 127.0.0.1\nport %s\ndir %s\nsentinel monitor %s %s %s 2\nsentinel failover-timeout %s %d\n",
			sport, nd.dir, masterName, host, port, masterName, r.cfg.FailoverTimeout.Milliseconds())
		if r.cfg.DownAfter > 0 {
			conf += fmt.Sprintf("sentinel down-after-milliseconds %s %d\n", masterName, r.cfg.DownAfter.Milliseconds())
		}
		if err := mkdirWrite(nd.dir, nd.conf, conf); err != nil {
			return err
		}
		if nd.proc, err = startProc(nd.name, r.cfg.Sentinel, nd.conf); err != nil {
			return err
		}
		if err := waitPing(ctx, nd); err != nil {
			return err
		}
	}
	return nil
}

// startServer writes nd's configuration (a replica of master unless it is
// empty) and starts it. No persistence: like the Debian package's default
// minus its RDB snapshots; a restarted server comes back empty and
// resynchronises. repl-diskless-sync-delay 0 only makes that resync start
// at once instead of after Redis's default 5 s. Each server listens on and
// replicates from its own loopback address (bind-source-addr), which
// protected mode would take for a remote one; it is loopback all the same.
func (r *Redis) startServer(ctx context.Context, nd *redisNode, master string) error {
	host, port, _ := net.SplitHostPort(nd.addr)
	conf := fmt.Sprintf("bind %s\nbind-source-addr %s\nprotected-mode no\nport %s\ndir %s\nsave \"\"\nappendonly no\nrepl-diskless-sync-delay 0\n", host, host, port, nd.dir)
	if master != "" {
		h, p, _ := net.SplitHostPort(master)
		conf += fmt.Sprintf("replicaof %s %s\n", h, p)
	}
	if err := mkdirWrite(nd.dir, nd.conf, conf); err != nil {
		return err
	}
	var err error
	if nd.proc, err = startProc(nd.name, r.cfg.Server, nd.conf); err != nil {
		return err
	}
	return waitPing(ctx, nd)
}

func waitPing(ctx context.Context, nd *redisNode) error {
	c := plainClient(nd.addr)
	defer c.Close()
	err := poll(ctx, redisStartLimit, nd.name+" PING", func(ctx context.Context) error {
		if !nd.proc.running() {
			return fmt.Errorf("exited: %s", nd.proc.tail())
		}
		return c.Ping(ctx).Err()
	})
	if err != nil && strings.Contains(nd.proc.out.String(), "Address already in use") {
		return fmt.Errorf("%s: address already in use", nd.name)
	}
	return err
}

// plainClient is a RESP2 connection pool without retries.
func plainClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1, PoolSize: 2, DialTimeout: time.Second, DialerRetries: 1,
		ContextTimeoutEnabled: true, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
}

func sentinelClient(addr string) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1, PoolSize: 1, DialTimeout: time.Second, DialerRetries: 1,
		ContextTimeoutEnabled: true, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
}

// master asks the Sentinels in turn, from the first, for the master's
// address; the first answer counts.
func masterAddr(ctx context.Context, sentinels []*redis.SentinelClient, first int) (string, int, error) {
	var errs []error
	for j := range sentinels {
		i := (first + j) % len(sentinels)
		hp, err := sentinels[i].GetMasterAddrByName(ctx, masterName).Result()
		if err == nil && len(hp) == 2 {
			return net.JoinHostPort(hp[0], hp[1]), i, nil
		}
		errs = append(errs, fmt.Errorf("sentinel %d: %v %w", i+1, hp, err))
	}
	return "", first, fmt.Errorf("no sentinel named the master: %w", errors.Join(errs...))
}

func (r *Redis) sentinelClients() []*redis.SentinelClient {
	var out []*redis.SentinelClient
	for _, s := range r.sentinels {
		out = append(out, sentinelClient(s.addr))
	}
	return out
}

func closeAll(cs []*redis.SentinelClient) {
	for _, c := range cs {
		c.Close()
	}
}

// Ready waits until every server runs, every Sentinel names the same
// master, sees the two others and both replicas up with their link to
// the master up, and the master streams to both.
func (r *Redis) Ready(ctx context.Context) error {
	sents := r.sentinelClients()
	defer closeAll(sents)
	return poll(ctx, redisReadyLimit, "redis setup whole", func(ctx context.Context) error {
		for _, s := range r.servers {
			if !s.proc.running() {
				return fmt.Errorf("%s is not running", s.name)
			}
		}
		master := ""
		for i, s := range sents {
			hp, err := s.GetMasterAddrByName(ctx, masterName).Result()
			if err != nil || len(hp) != 2 {
				return fmt.Errorf("sentinel %d: master %v %v", i+1, hp, err)
			}
			addr := net.JoinHostPort(hp[0], hp[1])
			if i > 0 && addr != master {
				return fmt.Errorf("sentinels disagree on the master: %s, %s", master, addr)
			}
			master = addr
			m, err := s.Master(ctx, masterName).Result()
			if err != nil {
				return fmt.Errorf("sentinel %d: %w", i+1, err)
			}
			if m["flags"] != "master" || m["num-other-sentinels"] != "2" {
				return fmt.Errorf("sentinel %d: master flags %q, other sentinels %s", i+1, m["flags"], m["num-other-sentinels"])
			}
			reps, err := s.Replicas(ctx, masterName).Result()
			if err != nil {
				return fmt.Errorf("sentinel %d: %w", i+1, err)
			}
			up := 0
			for _, rep := range reps {
				if rep["flags"] == "slave" && rep["master-link-status"] == "ok" &&
					net.JoinHostPort(rep["master-host"], rep["master-port"]) == master {
					up++
				}
			}
			if up != 2 {
				return fmt.Errorf("sentinel %d sees %d healthy replicas: %v", i+1, up, reps)
			}
		}
		mc := plainClient(master)
		defer mc.Close()
		info, err := mc.Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("master %s: %w", master, err)
		}
		if role, _ := infoField(info, "role"); role != "master" || strings.Count(info, "state=online") != 2 {
			return fmt.Errorf("master %s replication: %s", master, info)
		}
		return nil
	})
}

// KillPrimary kills the server the Sentinels name as master.
func (r *Redis) KillPrimary(ctx context.Context) (string, time.Time, error) {
	sents := r.sentinelClients()
	defer closeAll(sents)
	master, _, err := masterAddr(ctx, sents, 0)
	if err != nil {
		return "", time.Time{}, err
	}
	i := slices.IndexFunc(r.servers, func(s *redisNode) bool { return s.addr == master })
	if i < 0 {
		return "", time.Time{}, fmt.Errorf("master %s is none of the servers", master)
	}
	r.victim = i
	at := time.Now()
	if err := r.servers[i].proc.kill(); err != nil {
		return "", time.Time{}, err
	}
	return r.servers[i].name, at, nil
}

// IsolatePrimary drops the traffic between the master the Sentinels name
// and the other servers (replication) until heal; clients and Sentinels
// still reach every server.
func (r *Redis) IsolatePrimary(ctx context.Context) (heal func() error, err error) {
	if r.fw == nil {
		if r.fw, err = newFirewall(ctx); err != nil {
			return nil, err
		}
	}
	sents := r.sentinelClients()
	defer closeAll(sents)
	master, _, err := masterAddr(ctx, sents, 0)
	if err != nil {
		return nil, err
	}
	mhost, _, _ := net.SplitHostPort(master)
	var others []string
	for _, s := range r.servers {
		if h, _, _ := net.SplitHostPort(s.addr); h != mhost {
			others = append(others, h)
		}
	}
	if len(others) == 0 {
		return nil, fmt.Errorf("%w: the servers share one address", ErrNoFirewall)
	}
	if err := r.fw.cut(ctx, mhost, others); err != nil {
		return nil, errors.Join(err, r.fw.heal())
	}
	return r.fw.heal, nil
}

// Restart starts the killed server again as a replica of the master the
// Sentinels name now (it has no data to keep: no persistence).
func (r *Redis) Restart(ctx context.Context) error {
	if r.victim < 0 {
		return errors.New("nothing was killed")
	}
	sents := r.sentinelClients()
	defer closeAll(sents)
	master, _, err := masterAddr(ctx, sents, 0)
	if err != nil {
		return err
	}
	if master == r.servers[r.victim].addr {
		return fmt.Errorf("the sentinels still name the killed %s as master", master)
	}
	return r.startServer(ctx, r.servers[r.victim], master)
}

// ReadBack reads keys from the master the Sentinels name.
func (r *Redis) ReadBack(ctx context.Context, keys []string) (map[string]string, error) {
	sents := r.sentinelClients()
	defer closeAll(sents)
	master, _, err := masterAddr(ctx, sents, 0)
	if err != nil {
		return nil, err
	}
	c := plainClient(master)
	defer c.Close()
	return readBack(ctx, c, keys)
}

// NewClient returns a client that asks the Sentinels (starting with
// sentinel i mod 3) for the master's address when it has no connection,
// and drops its connection after every failed write, as Sentinel's client
// guidelines describe.
func (r *Redis) NewClient(i int) (Client, error) {
	return &redisClient{sentinels: r.sentinelClients(), next: i % len(r.sentinels),
		wait: r.cfg.WaitReplicas, waitTimeout: r.cfg.WaitTimeout}, nil
}

type redisClient struct {
	sentinels   []*redis.SentinelClient
	next        int
	c           *redis.Client
	wait        int
	waitTimeout time.Duration
}

func (c *redisClient) Set(ctx context.Context, key, value string) error {
	if c.c == nil {
		addr, i, err := masterAddr(ctx, c.sentinels, c.next)
		if err != nil {
			return err
		}
		c.next, c.c = i, plainClient(addr)
	}
	err := c.set(ctx, key, value)
	if err != nil {
		c.c.Close()
		c.c = nil
	}
	return err
}

func (c *redisClient) set(ctx context.Context, key, value string) error {
	if c.wait == 0 {
		return c.c.Set(ctx, key, value, 0).Err()
	}
	pipe := c.c.Pipeline()
	set := pipe.Set(ctx, key, value, 0)
	wait := pipe.Do(ctx, "WAIT", c.wait, c.waitTimeout.Milliseconds())
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	if err := set.Err(); err != nil {
		return err
	}
	n, err := wait.Int64()
	if err != nil {
		return fmt.Errorf("WAIT: %w", err)
	}
	if n < int64(c.wait) {
		return fmt.Errorf("WAIT %d: %d replicas acknowledged", c.wait, n)
	}
	return nil
}

func (c *redisClient) Close() error {
	if c.c != nil {
		c.c.Close()
	}
	closeAll(c.sentinels)
	return nil
}

// Tail is the end of every process's output.
func (r *Redis) Tail() string {
	var b strings.Builder
	for _, nd := range slices.Concat(r.servers, r.sentinels) {
		if nd.proc != nil {
			b.WriteString(nd.proc.tail())
			b.WriteString("\n")
		}
	}
	return b.String()
}

// Close kills every process and removes any cut.
func (r *Redis) Close() error {
	var errs []error
	if r.fw != nil {
		errs = append(errs, r.fw.heal())
	}
	for _, nd := range slices.Concat(r.sentinels, r.servers) {
		if nd.proc != nil {
			errs = append(errs, nd.proc.kill())
		}
	}
	return errors.Join(errs...)
}

func mkdirWrite(dir, path, text string) error {
	if err := mkdirAll(dir); err != nil {
		return err
	}
	return writeFile(path, text)
}
