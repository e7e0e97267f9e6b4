//go:build unix

package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fulcrumdb/fulcrum/internal/config"
	"github.com/fulcrumdb/fulcrum/internal/lincheck"
	"github.com/fulcrumdb/fulcrum/internal/placement"
	"github.com/fulcrumdb/fulcrum/internal/server"
)

// The cluster process test runs three real "fulcrum server" members, kills
// the leader of a shard with SIGKILL under load, restarts it, and judges
// the clients' history: linearizable, and no acknowledged write lost.

const (
	clusterShards = 4
	// clusterTick is the members' Raft tick: elections take 10 ticks, so
	// a failover takes a fraction of a second.
	clusterTick = 20 * time.Millisecond
	// failoverLimit is how soon after the kill writes to the shard must
	// succeed again.
	failoverLimit = 5 * time.Second
	// catchUpLimit bounds the restarted member's catch-up.
	catchUpLimit = 15 * time.Second
	// checkLimit bounds porcupine.
	checkLimit = 20 * time.Second
)

// member is one cluster member: its configuration and current process.
type member struct {
	id         uint64
	configPath string
	peerAddr   string
	*node      // the current process; replaced by restart
}

// startCluster starts n members on free loopback ports and waits until each
// answers /readyz and every shard has a leader.
func startCluster(t *testing.T, n int) []*member {
	t.Helper()
	bin := binary(t)
	dir := t.TempDir()
	for attempt := 1; ; attempt++ {
		addrs := freeAddrs(t, 3*n)
		var peers []string
		for i := range n {
			peers = append(peers, fmt.Sprintf("%d=%s", i+1, addrs[3*i+2]))
		}
		members := make([]*member, n)
		for i := range members {
			cfg := config.Default()
			cfg.NodeID = fmt.Sprintf("m%d", i+1)
			cfg.Data.Dir = filepath.Join(dir, fmt.Sprintf("attempt%d-m%d", attempt, i+1))
			cfg.RESP.Addr, cfg.HTTP.Addr = addrs[3*i], addrs[3*i+1]
			cfg.Log.Level = config.LogInfo
			cfg.Cluster.ID = uint64(i + 1)
			cfg.Cluster.PeerAddr = addrs[3*i+2]
			cfg.Cluster.Peers = peers
			cfg.Cluster.Name = "kill-leader-test"
			cfg.Cluster.Shards = clusterShards
			cfg.Cluster.Tick = config.Duration(clusterTick)
			cfg.Cluster.RequestTimeout = config.Duration(time.Second)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, fmt.Sprintf("attempt%d-m%d.toml", attempt, i+1))
			if err := os.WriteFile(path, []byte(cfg.TOML()), 0o600); err != nil {
				t.Fatal(err)
			}
			members[i] = &member{id: uint64(i + 1), configPath: path, peerAddr: cfg.Cluster.PeerAddr}
			members[i].node = launchNode(t, bin, cfg.Data.Dir, cfg.RESP.Addr, cfg.HTTP.Addr, []string{"server", "--config", path})
		}
		var taken bool
		var err error
		for _, m := range members {
			if err = m.waitReady(); err != nil {
				taken = m.hasExited() && strings.Contains(m.output.String(), "address already in use")
				break
			}
		}
		if err == nil {
			waitLeaders(t, members)
			return members
		}
		for _, m := range members {
			if !m.hasExited() {
				m.kill9()
			}
		}
		if !taken || attempt == startAttempts {
			t.Fatalf("cluster did not start: %v", err)
		}
		t.Logf("some of the ports %v were taken; retrying", addrs)
	}
}

// restart starts the member again on its configuration (same data
// directory and addresses) and waits for /readyz.
func (m *member) restart(t *testing.T) {
	t.Helper()
	m.node = launchNode(t, binary(t), m.dataDir, m.respAddr, m.httpAddr, []string{"server", "--config", m.configPath})
	if err := m.waitReady(); err != nil {
		t.Fatalf("member %d did not restart: %v\noutput:\n%s", m.id, err, m.output)
	}
}

var statusClient = &http.Client{Timeout: time.Second}

// status is the member's GET /v1/cluster.
func (m *member) status() (server.ClusterStatus, error) {
	var st server.ClusterStatus
	resp, err := statusClient.Get("http://" + m.httpAddr + "/v1/cluster")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /v1/cluster: %s", resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// shardStatus is the member's view of shard s.
func (m *member) shardStatus(s int) (server.ShardStatus, error) {
	st, err := m.status()
	if err != nil {
		return server.ShardStatus{}, err
	}
	for _, sh := range st.Shards {
		if sh.Namespace == "default" && sh.Shard == s {
			return sh, nil
		}
	}
	return server.ShardStatus{}, fmt.Errorf("member %d has no replica of shard %d", m.id, s)
}

// eventually polls f every 10ms until it returns nil, failing the test
// with f's last error after limit.
func eventually(t *testing.T, limit time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s: still not done after %v: %v", what, limit, err)
		case <-tick.C:
		}
	}
}

// waitLeaders waits until every member sees a leader for each of its
// shards.
func waitLeaders(t *testing.T, members []*member) {
	t.Helper()
	eventually(t, readyLimit, "leaders for every shard", func() error {
		for _, m := range members {
			st, err := m.status()
			if err != nil {
				return fmt.Errorf("member %d: %w", m.id, err)
			}
			shards := 0
			for _, s := range st.Shards {
				if s.Leader == 0 {
					return fmt.Errorf("member %d: shard %d of %q has no leader", m.id, s.Shard, s.Namespace)
				}
				if s.Namespace == "default" {
					shards++
				}
			}
			if shards != clusterShards {
				return fmt.Errorf("member %d has %d shards of the default namespace, want %d", m.id, shards, clusterShards)
			}
		}
		return nil
	})
}

// keysOfShard returns n keys that live in the same shard, and the shard.
func keysOfShard(n int) ([]string, int) {
	shard := placement.ShardOf("default", []byte("key-0"), clusterShards)
	var keys []string
	for i := 0; len(keys) < n; i++ {
		k := fmt.Sprintf("key-%d", i)
		if placement.ShardOf("default", []byte(k), clusterShards) == shard {
			keys = append(keys, k)
		}
	}
	return keys, shard
}

// regClient is one linearizability-checked client: it reads, writes and
// compare-and-sets a few keys over the HTTP API, which, unlike RESP's SET,
// tells the version of each write: the model needs it.
type regClient struct {
	id      int
	members []*member
	at      int // index of the member it talks to
	http    *http.Client
	rec     *lincheck.Recorder
	rng     *rand.Rand
	seen    map[string]uint64 // last version this client saw per key
}

// outcome of one HTTP operation as the checker must record it.
type verdict int

const (
	ended   verdict = iota // the answer is known
	failed                 // certainly not applied
	unknown                // may or may not be applied
)

// do sends one request to the current member and classifies the answer.
// Connection errors move the client to the next member.
func (c *regClient) do(ctx context.Context, method, key string, body string, hdr http.Header) (*http.Response, []byte, verdict, error) {
	m := c.members[c.at]
	var rd io.Reader
	if method == http.MethodPut {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+m.httpAddr+"/v1/namespaces/default/keys/"+key, rd)
	if err != nil {
		return nil, nil, failed, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.at = (c.at + 1) % len(c.members)
		// A refused connection never carried the request; anything else
		// (reset, EOF, timeout) may have been after it was sent.
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, nil, failed, err
		}
		return nil, nil, unknown, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.at = (c.at + 1) % len(c.members)
		return nil, nil, unknown, err
	}
	return resp, data, ended, nil
}

// errorCode is the code of an API error body.
func errorCode(body []byte) string {
	var e struct {
		Code string `json:"code"`
	}
	json.Unmarshal(body, &e)
	return e.Code
}

// writeVerdict classifies a write's error answer: UNAVAILABLE and
// NOT_LEADER promise the write was never applied; anything else (TIMEOUT
// above all) leaves it unknown.
func writeVerdict(status int, body []byte) verdict {
	switch errorCode(body) {
	case "UNAVAILABLE", "NOT_LEADER":
		return failed
	}
	return unknown
}

// step runs one random operation and reports whether it was an
// acknowledged write (Put, or CAS that applied), and its input and version.
func (c *regClient) step(ctx context.Context, keys []string, seq int) (acked bool, in lincheck.Input, version uint64) {
	key := keys[c.rng.IntN(len(keys))]
	value := fmt.Sprintf("c%d-%d", c.id, seq)
	switch r := c.rng.IntN(10); {
	case r < 4:
		in = lincheck.Input{Kind: lincheck.Get, Key: key}
	case r < 7:
		in = lincheck.Input{Kind: lincheck.Put, Key: key, Value: value}
	default:
		in = lincheck.Input{Kind: lincheck.CAS, Key: key, Value: value, IfVersion: max(c.seen[key], 1)}
	}
	p := c.rec.Begin(c.id, in)
	var hdr http.Header
	method := http.MethodPut
	switch in.Kind {
	case lincheck.Get:
		method = http.MethodGet
	case lincheck.CAS:
		hdr = http.Header{"If-Match": {fmt.Sprintf("%q", strconv.FormatUint(in.IfVersion, 10))}}
	}
	resp, body, v, err := c.do(ctx, method, key, in.Value, hdr)
	if err == nil {
		switch {
		case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated:
			ver, perr := strconv.ParseUint(resp.Header.Get("Fulcrum-Version"), 10, 64)
			if perr != nil {
				v = unknown
				break
			}
			out := lincheck.Output{Version: ver, OK: true}
			if in.Kind == lincheck.Get {
				out = lincheck.Output{Exists: true, Value: string(body), Version: ver}
			}
			p.End(out)
			c.seen[key] = ver
			return in.Kind != lincheck.Get, in, ver
		case in.Kind == lincheck.Get && resp.StatusCode == http.StatusNotFound && errorCode(body) == "NOT_FOUND":
			p.End(lincheck.Output{Exists: false})
			return false, in, 0
		case in.Kind == lincheck.CAS && resp.StatusCode == http.StatusPreconditionFailed && errorCode(body) == "CONFLICT":
			p.End(lincheck.Output{OK: false})
			return false, in, 0
		default:
			v = writeVerdict(resp.StatusCode, body)
		}
	}
	switch {
	case in.Kind == lincheck.Get || v == failed:
		p.Fail() // a failed read constrains nothing
	default:
		p.Unknown()
	}
	return false, in, 0
}

// ackedPut is an acknowledged write of the checked clients.
type ackedPut struct {
	value   string
	version uint64
}

// respWriter is a go-redis client writing fresh keys; every SET it was
// told succeeded must survive.
type respWriter struct {
	id      int
	members []*member
	at      int
	rdb     *redis.Client
	acked   []ackedSet
}

func (w *respWriter) client() *redis.Client {
	if w.rdb == nil {
		w.rdb = redis.NewClient(&redis.Options{
			Addr: w.members[w.at].respAddr, PoolSize: 1,
			MaxRetries: -1, DialerRetries: 1, // every error surfaces; none is retried blindly
		})
	}
	return w.rdb
}

func (w *respWriter) set(ctx context.Context, seq int, rng *rand.Rand) {
	s := ackedSet{key: fmt.Sprintf("resp-%d-%06d", w.id, seq)}
	s.value = fmt.Sprintf("%s=%x", s.key, rng.Uint64())
	err := w.client().Set(ctx, s.key, s.value, 0).Err()
	if err == nil {
		w.acked = append(w.acked, s)
		return
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		// The connection failed: try the next member.
		w.rdb.Close()
		w.rdb = nil
		w.at = (w.at + 1) % len(w.members)
	}
}

// TestProcessClusterKillLeader kills the leader of a shard with SIGKILL
// while clients read and write it through every member, then restarts it.
// Writes must resume within failoverLimit, the history of the checked
// clients must be linearizable, and no acknowledged write may be lost.
func TestProcessClusterKillLeader(t *testing.T) {
	t.Parallel()
	testStart := time.Now()
	seed := newSeed(t)
	members := startCluster(t, 3)
	keys, shard := keysOfShard(3)
	t.Logf("cluster up in %v; keys %v in shard %d", time.Since(testStart).Round(time.Millisecond), keys, shard)

	// Load: checked HTTP clients on the shard's keys and go-redis writers
	// of fresh keys over every shard, spread over the members.
	rec := lincheck.NewRecorder()
	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	transport := &http.Transport{MaxIdleConnsPerHost: 16}
	defer transport.CloseIdleConnections()
	var (
		wg        sync.WaitGroup
		acks      atomic.Int64
		killedAt  atomic.Int64 // UnixNano of the kill; 0 before
		resumedAt atomic.Int64 // UnixNano of the first acknowledged write begun after the kill
		mu        sync.Mutex
		lastAcked = make(map[string]ackedPut) // by version, per key
	)
	const regClients, respWriters = 6, 3
	for i := range regClients {
		c := &regClient{
			id: i, members: members, at: i % len(members), rec: rec,
			http: &http.Client{Transport: transport, Timeout: 3 * time.Second},
			rng:  rand.New(rand.NewPCG(seed, uint64(i))), seen: make(map[string]uint64),
		}
		wg.Add(1)
		go func() {
			// Owned by the test: stops when stopLoad is called.
			defer wg.Done()
			for seq := 0; ctx.Err() == nil; seq++ {
				begun := time.Now().UnixNano()
				ok, in, ver := c.step(ctx, keys, seq)
				if !ok {
					continue
				}
				acks.Add(1)
				if k := killedAt.Load(); k != 0 && begun > k {
					resumedAt.CompareAndSwap(0, time.Now().UnixNano())
				}
				mu.Lock()
				if ver > lastAcked[in.Key].version {
					lastAcked[in.Key] = ackedPut{value: in.Value, version: ver}
				}
				mu.Unlock()
			}
		}()
	}
	writers := make([]*respWriter, respWriters)
	for i := range writers {
		w := &respWriter{id: i, members: members, at: i % len(members)}
		writers[i] = w
		rng := rand.New(rand.NewPCG(seed, uint64(100+i)))
		wg.Add(1)
		go func() {
			// Owned by the test: stops when stopLoad is called.
			defer wg.Done()
			defer func() {
				if w.rdb != nil {
					w.rdb.Close()
				}
			}()
			for seq := 0; ctx.Err() == nil; seq++ {
				w.set(ctx, seq, rng)
			}
		}()
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopLoad()
			wg.Wait()
		}
	}
	defer stop()

	eventually(t, 10*time.Second, "load before the kill", func() error {
		if n := acks.Load(); n < 200 {
			return fmt.Errorf("%d acknowledged checked writes, want 200", n)
		}
		return nil
	})

	// Kill the shard's leader, as it says itself just before; writes must
	// resume through the others.
	var leader *member
	var term uint64
	eventually(t, readyLimit, "leader of the keys' shard", func() error {
		for _, m := range members {
			st, err := m.shardStatus(shard)
			if err != nil {
				return err
			}
			if st.State == "StateLeader" {
				leader, term = m, st.Term
				return nil
			}
		}
		return fmt.Errorf("no member says it leads shard %d", shard)
	})
	killedAt.Store(time.Now().UnixNano())
	leader.kill9()
	t.Logf("killed member %d (leader of shard %d in term %d) with SIGKILL after %d acknowledged checked writes",
		leader.id, shard, term, acks.Load())
	eventually(t, failoverLimit, "writes after the kill", func() error {
		if resumedAt.Load() == 0 {
			return errors.New("no write begun after the kill has been acknowledged")
		}
		return nil
	})
	gap := time.Duration(resumedAt.Load() - killedAt.Load())
	t.Logf("writes resumed %v after the kill", gap.Round(time.Millisecond))
	var others []*member
	for _, m := range members {
		if m != leader {
			others = append(others, m)
		}
	}
	eventually(t, failoverLimit, "a new leader", func() error {
		st, err := others[0].shardStatus(shard)
		if err == nil && (st.Leader == 0 || st.Leader == leader.id || st.Term <= term) {
			err = fmt.Errorf("leader of shard %d is %d in term %d", shard, st.Leader, st.Term)
		}
		return err
	})

	// Restart it on its data; it must catch up under load.
	before := acks.Load()
	eventually(t, 10*time.Second, "load while the member is down", func() error {
		if n := acks.Load() - before; n < 100 {
			return fmt.Errorf("%d acknowledged checked writes since the failover, want 100", n)
		}
		return nil
	})
	leader.restart(t)
	commits := make(map[int]uint64)
	for s := range clusterShards {
		st, err := others[0].shardStatus(s)
		if err != nil {
			t.Fatal(err)
		}
		commits[s] = st.Commit
	}
	restartedAt := time.Now()
	eventually(t, catchUpLimit, "catch-up of the restarted member", func() error {
		for s, c := range commits {
			st, err := leader.shardStatus(s)
			if err != nil {
				return err
			}
			if st.Leader == 0 || st.Applied < c {
				return fmt.Errorf("shard %d: leader %d, applied %d, want >= %d", s, st.Leader, st.Applied, c)
			}
		}
		return nil
	})
	t.Logf("restarted member %d caught up in %v", leader.id, time.Since(restartedAt).Round(time.Millisecond))
	before = acks.Load()
	eventually(t, 10*time.Second, "load after the restart", func() error {
		if n := acks.Load() - before; n < 100 {
			return fmt.Errorf("%d acknowledged checked writes since the restart, want 100", n)
		}
		return nil
	})
	stop()

	// Every acknowledged write is there: the last acknowledged value of
	// each checked key, or a later one, read through the restarted
	// member (and recorded, so the checker sees the reads too).
	final := &regClient{id: regClients, members: []*member{leader}, rec: rec,
		http: &http.Client{Transport: transport, Timeout: 5 * time.Second}, seen: map[string]uint64{}}
	for _, key := range keys {
		in := lincheck.Input{Kind: lincheck.Get, Key: key}
		p := rec.Begin(final.id, in)
		resp, body, _, err := final.do(context.Background(), http.MethodGet, key, "", nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			p.Fail()
			t.Fatalf("final GET %s through member %d: %v %s", key, leader.id, err, body)
		}
		ver, _ := strconv.ParseUint(resp.Header.Get("Fulcrum-Version"), 10, 64)
		p.End(lincheck.Output{Exists: true, Value: string(body), Version: ver})
		last := lastAcked[key]
		if ver < last.version || (ver == last.version && string(body) != last.value) {
			t.Errorf("key %s = %q@%d, want the last acknowledged write %q@%d or a later one", key, body, ver, last.value, last.version)
		}
	}
	var sets, lost int
	rdb := redis.NewClient(&redis.Options{Addr: leader.respAddr, MaxRetries: -1})
	defer rdb.Close()
	for _, w := range writers {
		sets += len(w.acked)
		for chunk := range slices.Chunk(w.acked, 500) {
			ks := make([]string, len(chunk))
			for i, s := range chunk {
				ks[i] = s.key
			}
			got, err := rdb.MGet(context.Background(), ks...).Result()
			if err != nil {
				t.Fatalf("MGET through member %d: %v", leader.id, err)
			}
			for i, s := range chunk {
				if v, ok := got[i].(string); !ok || v != s.value {
					if lost++; lost <= 5 {
						t.Errorf("acknowledged SET %s lost: got %v, want %q", s.key, got[i], s.value)
					}
				}
			}
		}
	}
	t.Logf("verified %d acknowledged RESP SETs (%d lost) and %d checked keys", sets, lost, len(keys))

	res, err := rec.Check(checkLimit)
	t.Logf("linearizability check of %d operations (%d acknowledged checked writes): %v", res.Ops, acks.Load(), res.Outcome)
	if err != nil {
		path := filepath.Join(t.ArtifactDir(), "history.html")
		if verr := rec.WriteVisualization(path); verr == nil {
			t.Logf("history visualization: %s (kept with go test -artifacts)", path)
		}
		t.Fatal(err)
	}
	t.Logf("whole test: %v", time.Since(testStart).Round(time.Millisecond))
}
