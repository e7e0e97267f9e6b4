//go:build unix

package main_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// These tests start the real fulcrum binary (see process_helpers_test.go)
// and check what only a process can show: durability across kill -9 and
// SIGTERM, exit codes, the CLI, and stock Redis tools. go test -short skips
// them.

const (
	// loadWriters is how many clients write at once.
	loadWriters = 8
	// loadAcks is how many acknowledged operations the load aims for
	// before the node is stopped; loadLimit caps the wait if the disk is
	// slow. Either way the node is stopped with writers still running.
	loadAcks  = 5000
	loadLimit = 2 * time.Second
)

// ackedSet is a SET the node acknowledged.
type ackedSet struct{ key, value string }

// writerLog is what one writer of the load was told by the node.
type writerLog struct {
	sets    []ackedSet
	counter string // the writer's INCR key
	// last is the counter's last acknowledged value (0: none).
	last int64
	// incrInFlight: the operation that stopped the writer was an INCR whose
	// reply never came, so it may or may not have been applied.
	incrInFlight bool
	// err stopped the writer; stoppedEarly says it came before the node was
	// told to stop, which is a failure.
	err          error
	stoppedEarly bool
}

// load is a set of writers hammering one node until it goes away.
type load struct {
	logs    []*writerLog
	acks    atomic.Int64
	reached chan struct{} // closed when acks reaches loadAcks
	// stopping is set just before the node is signalled, so that errors
	// after it are expected.
	stopping atomic.Bool
	wg       sync.WaitGroup
	client   *redis.Client
}

// startLoad starts loadWriters writers against addr. Each loops SET of a
// fresh key (three times in four) and INCR of its own counter, recording
// every acknowledgement, and stops at its first error.
func startLoad(t *testing.T, addr string, seed uint64) *load {
	t.Helper()
	l := &load{reached: make(chan struct{})}
	l.client = redis.NewClient(&redis.Options{
		Addr:     addr,
		PoolSize: loadWriters,
		// A retried INCR could apply twice; every error must surface.
		MaxRetries: -1,
		// Once the node is gone, fail at once rather than redialling.
		DialerRetries: 1,
	})
	t.Cleanup(func() { l.client.Close() })
	for w := range loadWriters {
		log := &writerLog{counter: fmt.Sprintf("ctr:%02d", w)}
		l.logs = append(l.logs, log)
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		l.wg.Add(1)
		go func() {
			// Owned by the load: ends at the first error, which the test
			// causes by stopping the node, and is waited for by wait.
			defer l.wg.Done()
			ctx := context.Background()
			for i := 0; ; i++ {
				var err error
				if i%4 == 3 {
					var v int64
					if v, err = l.client.Incr(ctx, log.counter).Result(); err == nil {
						log.last = v
					} else {
						log.incrInFlight = true
					}
				} else {
					s := ackedSet{key: fmt.Sprintf("w%02d:%07d", w, i)}
					s.value = fmt.Sprintf("%s=%x", s.key, rng.Uint64()) + strings.Repeat("v", rng.IntN(200))
					if err = l.client.Set(ctx, s.key, s.value, 0).Err(); err == nil {
						log.sets = append(log.sets, s)
					}
				}
				if err != nil {
					log.err, log.stoppedEarly = err, !l.stopping.Load()
					return
				}
				if l.acks.Add(1) == loadAcks { // true for exactly one writer
					close(l.reached)
				}
			}
		}()
	}
	return l
}

// waitBusy returns once the load has loadAcks acknowledgements or loadLimit
// has passed, whichever is first.
func (l *load) waitBusy() {
	select {
	case <-l.reached:
	case <-time.After(loadLimit):
	}
}

// wait waits for every writer to stop (the node must be gone or going) and
// fails the test if one stopped before it was expected to.
func (l *load) wait(t *testing.T) {
	t.Helper()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(exitLimit):
		t.Fatalf("writers still running %v after the node stopped", exitLimit)
	}
	for i, log := range l.logs {
		if log.stoppedEarly {
			t.Errorf("writer %d failed while the node was up: %v", i, log.err)
		}
	}
}

// verify checks against a restarted node that every acknowledged SET is
// there with its value, and every counter holds its last acknowledged value,
// or one more if an INCR was in flight when the node stopped.
func (l *load) verify(t *testing.T, addr string) {
	t.Helper()
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	var sets, lost, inFlight, landed int
	for w, log := range l.logs {
		sets += len(log.sets)
		for chunk := range slices.Chunk(log.sets, 500) {
			keys := make([]string, len(chunk))
			for i, s := range chunk {
				keys[i] = s.key
			}
			got, err := rdb.MGet(ctx, keys...).Result()
			if err != nil {
				t.Fatalf("MGET after restart: %v", err)
			}
			for i, s := range chunk {
				if v, ok := got[i].(string); !ok || v != s.value {
					if lost++; lost <= 5 {
						t.Errorf("acknowledged SET %s lost: got %v, want %q", s.key, got[i], s.value)
					}
				}
			}
		}
		want := []int64{log.last}
		if log.incrInFlight {
			want = append(want, log.last+1)
			inFlight++
		}
		v, err := rdb.Get(ctx, log.counter).Int64()
		if errors.Is(err, redis.Nil) {
			v, err = 0, nil
		}
		if err != nil {
			t.Fatalf("GET %s after restart: %v", log.counter, err)
		}
		if log.incrInFlight && v == log.last+1 {
			landed++
		}
		if !slices.Contains(want, v) {
			t.Errorf("writer %d: %s = %d after restart, want one of %v (last acknowledged %d, INCR in flight %v)",
				w, log.counter, v, want, log.last, log.incrInFlight)
		}
	}
	t.Logf("verified %d acknowledged SETs and %d counters (%d with an INCR in flight at the stop, %d of which landed); lost %d",
		sets, len(l.logs), inFlight, landed, lost)
	if lost > 0 {
		t.Errorf("%d of %d acknowledged SETs lost", lost, sets)
	}
}

func newSeed(t *testing.T) uint64 {
	s := uint64(time.Now().UnixNano())
	t.Logf("seed %d", s)
	return s
}

// TestProcessKill9KeepsAcknowledgedWrites kills a node with SIGKILL under
// concurrent writes with sync=always, restarts it on the same directory and
// checks that no acknowledged write was lost.
func TestProcessKill9KeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	n := startNode(t, dir, "--sync", "always")
	l := startLoad(t, n.respAddr, newSeed(t))
	start := time.Now()
	l.waitBusy()
	l.stopping.Store(true)
	n.kill9()
	l.wait(t)
	t.Logf("killed after %v with %d acknowledged operations (%.0f/s)",
		time.Since(start).Round(time.Millisecond), l.acks.Load(), float64(l.acks.Load())/time.Since(start).Seconds())
	if l.acks.Load() == 0 {
		t.Fatal("no write was acknowledged before the kill")
	}

	n2 := startNode(t, dir, "--sync", "always")
	l.verify(t, n2.respAddr)
}

// TestProcessSIGTERMDrainsAndKeepsWrites stops a node with SIGTERM under
// load: it must exit 0 within its shutdown timeout, and a restart must have
// every acknowledged write.
func TestProcessSIGTERMDrainsAndKeepsWrites(t *testing.T) {
	t.Parallel()
	const shutdownTimeout = 10 * time.Second // the default
	dir := filepath.Join(t.TempDir(), "data")
	n := startNode(t, dir, "--sync", "always")
	l := startLoad(t, n.respAddr, newSeed(t))
	l.waitBusy()
	l.stopping.Store(true)
	start := time.Now()
	n.signal(syscall.SIGTERM)
	st := n.wait(shutdownTimeout + 5*time.Second) // storage close may take a moment past the drain
	elapsed := time.Since(start)
	l.wait(t)
	if st.ExitCode() != 0 {
		t.Fatalf("exit after SIGTERM: %v, want status 0", st)
	}
	if elapsed > shutdownTimeout {
		t.Errorf("graceful shutdown took %v, more than shutdown_timeout %v", elapsed, shutdownTimeout)
	}
	for _, want := range []string{"shutting down", "fulcrum stopped"} {
		if !strings.Contains(n.output.String(), want) {
			t.Errorf("node log lacks %q", want)
		}
	}
	t.Logf("SIGTERM with %d acknowledged operations: exit 0 after %v", l.acks.Load(), elapsed.Round(time.Millisecond))

	n2 := startNode(t, dir, "--sync", "always")
	l.verify(t, n2.respAddr)
}

// TestProcessSecondSignalExits130 holds the graceful shutdown open with an
// HTTP request whose body never arrives, then sends a second SIGTERM: the
// node must exit at once with status 130, and acknowledged writes survive.
func TestProcessSecondSignalExits130(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "data")
	cfg := filepath.Join(tmp, "slow-shutdown.toml")
	const shutdownTimeout = time.Minute
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("shutdown_timeout = %q\n", shutdownTimeout)), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, dir, "--config", cfg, "--sync", "always")
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: n.respAddr, MaxRetries: -1})
	defer rdb.Close()
	if err := rdb.Set(ctx, "before", "signal", 0).Err(); err != nil {
		t.Fatal(err)
	}

	// An in-flight request: a PUT whose handler is reading a body we
	// withhold. "100 Continue" is sent only when the handler starts reading,
	// so once it arrives the request is certainly in flight, and the
	// graceful shutdown must wait for it until shutdown_timeout.
	conn, err := net.Dial("tcp", n.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /v1/namespaces/default/keys/slow HTTP/1.1\r\nHost: fulcrum\r\n"+
		"Content-Type: application/octet-stream\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(exitLimit))
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 100 ") {
		t.Fatalf("PUT with Expect: 100-continue: got %q, %v; want HTTP/1.1 100 Continue", status, err)
	}

	start := time.Now()
	n.signal(syscall.SIGTERM)
	// Two signals sent back to back can merge into one pending signal, so
	// the second is sent only once the first has been handled.
	n.waitOutput("signal again to exit at once", exitLimit)
	if n.hasExited() {
		t.Fatalf("node exited after one SIGTERM with a request in flight: %v", n.state)
	}
	n.signal(syscall.SIGTERM)
	st := n.wait(exitLimit)
	elapsed := time.Since(start)
	if st.ExitCode() != 130 {
		t.Fatalf("exit after a second SIGTERM: %v, want status 130", st)
	}
	if elapsed >= shutdownTimeout {
		t.Errorf("second signal exit took %v; it should not wait for shutdown_timeout %v", elapsed, shutdownTimeout)
	}
	if !strings.Contains(n.output.String(), "second signal") {
		t.Errorf("node log lacks the second-signal message")
	}
	t.Logf("second SIGTERM: exit 130 after %v", elapsed.Round(time.Millisecond))

	n2 := startNode(t, dir, "--sync", "always")
	rdb2 := redis.NewClient(&redis.Options{Addr: n2.respAddr, MaxRetries: -1})
	defer rdb2.Close()
	if v, err := rdb2.Get(ctx, "before").Result(); err != nil || v != "signal" {
		t.Errorf("GET before after restart = %q, %v; want \"signal\"", v, err)
	}
	if err := rdb2.Get(ctx, "slow").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET slow after restart: %v, want nil: its body never arrived", err)
	}
}

// TestProcessCLI drives the client subcommands against a running node.
func TestProcessCLI(t *testing.T) {
	t.Parallel()
	n := startNode(t, filepath.Join(t.TempDir(), "data"))
	addr := "http://" + n.httpAddr
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: n.respAddr, MaxRetries: -1})
	defer rdb.Close()

	tests := []struct {
		args                 []string
		code                 int
		stdout, stderrPrefix string
	}{
		{[]string{"set", "greeting", "hello world", "--ttl", "10s", "--addr", addr}, 0, "OK\n", ""},
		{[]string{"get", "greeting", "--addr", addr}, 0, "hello world", ""},
		// --addr without a scheme is what people type.
		{[]string{"set", "--addr", n.httpAddr, "other/key", "v2"}, 0, "OK\n", ""},
		{[]string{"set", "--nx", "--addr", addr, "other/key", "v3"}, 1, "", "error: CONFLICT"},
		{[]string{"scan", "--addr", addr}, 0, "greeting\nother/key\n", ""},
		{[]string{"scan", "--prefix", "oth", "--addr", addr}, 0, "other/key\n", ""},
		{[]string{"del", "greeting", "--addr", addr}, 0, "1\n", ""},
		{[]string{"get", "greeting", "--addr", addr}, 1, "", "(nil)\n"},
		{[]string{"del", "greeting", "--addr", addr}, 0, "0\n", ""},
		{[]string{"scan", "--addr", addr}, 0, "other/key\n", ""},
	}
	for i, tt := range tests {
		code, stdout, stderr := run(t, tt.args...)
		if code != tt.code || stdout != tt.stdout || !strings.HasPrefix(stderr, tt.stderrPrefix) {
			t.Errorf("fulcrum %s = exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr starting %q",
				strings.Join(tt.args, " "), code, stdout, stderr, tt.code, tt.stdout, tt.stderrPrefix)
		}
		if i == 0 {
			// The TTL set through the CLI is visible through RESP.
			ttl, err := rdb.PTTL(ctx, "greeting").Result()
			if err != nil || ttl <= 0 || ttl > 10*time.Second {
				t.Errorf("PTTL greeting after set --ttl 10s = %v, %v; want within (0, 10s]", ttl, err)
			}
		}
	}
}

// TestProcessRedisCLI drives a node with redis-cli and redis-benchmark.
func TestProcessRedisCLI(t *testing.T) {
	t.Parallel()
	binary(t)
	cli := lookTool(t, "redis-cli")
	tmp := t.TempDir()
	cfg := filepath.Join(tmp, "small-values.toml")
	if err := os.WriteFile(cfg, []byte("[limits]\nmax_value_size = \"1KiB\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, filepath.Join(tmp, "data"), "--config", cfg)
	host, port, _ := net.SplitHostPort(n.respAddr)
	rc := func(stdin string, args ...string) string {
		t.Helper()
		code, stdout, stderr := runTool(t, stdin, cli, append([]string{"-h", host, "-p", port}, args...)...)
		if code != 0 {
			t.Fatalf("redis-cli %s: exit %d, stderr %q", strings.Join(args, " "), code, stderr)
		}
		return stdout
	}
	expect := func(want string, args ...string) {
		t.Helper()
		if got := rc("", args...); got != want {
			t.Errorf("redis-cli %s = %q, want %q", strings.Join(args, " "), got, want)
		}
	}

	expect("OK\n", "SET", "foo", "bar")
	expect("bar\n", "GET", "foo")
	expect("1\n", "EXPIRE", "foo", "100")
	if ttl := atoi(t, "TTL foo", rc("", "TTL", "foo")); ttl <= 0 || ttl > 100 {
		t.Errorf("TTL foo = %d, want within (0, 100]", ttl)
	}
	want := []string{"foo"}
	for i := range 5 {
		k := fmt.Sprintf("k%d", i)
		expect("OK\n", "SET", k, strconv.Itoa(i))
		want = append(want, k)
	}
	scanned := strings.Fields(rc("", "--scan"))
	slices.Sort(scanned)
	if !slices.Equal(scanned, want) {
		t.Errorf("redis-cli --scan = %v, want %v", scanned, want)
	}
	scanned = strings.Fields(rc("", "--scan", "--pattern", "k*"))
	slices.Sort(scanned)
	if !slices.Equal(scanned, want[1:]) {
		t.Errorf("redis-cli --scan --pattern k* = %v, want %v", scanned, want[1:])
	}
	expect("6\n", "DBSIZE")

	// An oversized value is refused with TOO_LARGE, and the connection it
	// came on goes on working: redis-cli sends its stdin's lines as
	// commands on one connection.
	big := strings.Repeat("x", 2000)
	replies := strings.Fields(rc("SET big " + big + "\nPING\nGET foo\n"))
	if len(replies) < 3 || replies[0] != "TOO_LARGE" || replies[len(replies)-2] != "PONG" || replies[len(replies)-1] != "bar" {
		t.Errorf("SET of a 2000-byte value, PING, GET on one connection: replies %q; want TOO_LARGE ..., PONG, bar", replies)
	}
	if got := rc("", "SET", "big", big); !strings.HasPrefix(got, "TOO_LARGE") {
		t.Errorf("redis-cli SET big <2000 bytes> = %q, want TOO_LARGE ...", got)
	}
	expect("PONG\n", "PING")
	expect("0\n", "EXISTS", "big")
	expect("6\n", "DBSIZE")

	t.Run("redis-benchmark", func(t *testing.T) {
		bench := lookTool(t, "redis-benchmark")
		start := time.Now()
		code, stdout, stderr := runTool(t, "", bench, "-h", host, "-p", port, "-t", "set,get", "-n", "20000", "-r", "1000", "-q")
		// -q still prints progress lines ending in \r; the last of each
		// test is its summary.
		out := strings.ReplaceAll(stdout+stderr, "\r", "\n")
		if code != 0 || strings.Contains(strings.ToLower(out), "err") {
			t.Fatalf("redis-benchmark: exit %d, output:\n%s", code, out)
		}
		var summary []string
		for line := range strings.Lines(out) {
			if strings.Contains(line, "requests per second") && !strings.Contains(line, "rps=") {
				summary = append(summary, strings.TrimSpace(line))
			}
		}
		if len(summary) != 2 || !strings.HasPrefix(summary[0], "SET:") || !strings.HasPrefix(summary[1], "GET:") {
			t.Fatalf("redis-benchmark summaries = %q, want a SET and a GET line; output:\n%s", summary, out)
		}
		t.Logf("redis-benchmark in %v (sync=always): %s", time.Since(start).Round(time.Millisecond), strings.Join(summary, "; "))
		if got := atoi(t, "DBSIZE", rc("", "DBSIZE")); got < 6 || got > 6+1000 {
			t.Errorf("DBSIZE after redis-benchmark -r 1000 = %d, want 6..1006", got)
		}
	})
}

// TestProcessBadConfig checks that a node refuses a bad configuration file
// with status 2, naming every problem, and that "config check" reports the
// same with status 1.
func TestProcessBadConfig(t *testing.T) {
	t.Parallel()
	binary(t)
	tmp := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, file string
		want       []string // each must appear in stderr
	}{
		{"unknown key", write("unknown.toml", "[data]\nbogus_key = 1\n"),
			[]string{"unknown.toml:2: unknown key data.bogus_key"}},
		{"invalid sync", write("sync.toml", "[data]\nsync = \"sometimes\"\n"),
			[]string{`data.sync: "sometimes" is not one of always, interval, none`}},
		{"unknown key and invalid sync", write("both.toml", "[data]\nsync = \"sometimes\"\nbogus_key = 1\n"),
			[]string{"both.toml:3: unknown key data.bogus_key", `data.sync: "sometimes" is not one of always, interval, none`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Ports that are certainly not used, as the node must not start.
			code, stdout, stderr := run(t, "server", "--config", tt.file, "--data-dir", filepath.Join(tmp, "never"),
				"--resp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
			if code != 2 {
				t.Errorf("fulcrum server --config %s: exit %d, want 2", filepath.Base(tt.file), code)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("fulcrum server stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "fulcrum started") || stdout != "" {
				t.Errorf("fulcrum server started or printed to stdout: stdout %q, stderr %q", stdout, stderr)
			}
			if _, err := os.Stat(filepath.Join(tmp, "never")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("refused configuration still touched the data directory: %v", err)
			}

			code, stdout, stderr = run(t, "config", "check", tt.file)
			if code != 1 || stdout != "" {
				t.Errorf("fulcrum config check %s: exit %d, stdout %q; want 1, nothing", filepath.Base(tt.file), code, stdout)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("fulcrum config check stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}
