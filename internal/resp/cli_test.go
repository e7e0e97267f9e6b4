package resp

import (
	"context"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lookTool finds a Redis tool or skips the test.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found on PATH (install the redis-tools package to run this test): %v", name, err)
	}
	return path
}

func runTool(t *testing.T, stdin string, path string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", path, args, err, out)
	}
	return string(out)
}

func TestRedisCLI(t *testing.T) {
	cli := lookTool(t, "redis-cli")
	ts := startServer(t, nil)
	host, port, _ := net.SplitHostPort(ts.addr)
	run := func(args ...string) string {
		t.Helper()
		return strings.TrimRight(runTool(t, "", cli, append([]string{"-h", host, "-p", port}, args...)...), "\n")
	}
	expect := func(want string, args ...string) {
		t.Helper()
		if got := run(args...); got != want {
			t.Fatalf("redis-cli %v = %q, want %q", args, got, want)
		}
	}
	expect("PONG", "ping")
	expect("OK", "set", "greeting", "hello world")
	expect("hello world", "get", "greeting")
	expect("", "get", "missing")
	expect("1", "expire", "greeting", "100")
	expect("100", "ttl", "greeting")
	ts.clock.Advance(40 * time.Second)
	expect("60", "ttl", "greeting")
	expect("-2", "ttl", "missing")
	expect("ERR unknown command 'nosuch', with args beginning with: 'x' ", "nosuch", "x")

	// Bulk-load with --pipe (inline commands on stdin), then --scan.
	var load strings.Builder
	var want []string
	for i := 0; i < 300; i++ {
		k := "user:" + strconv.Itoa(i)
		want = append(want, k)
		load.WriteString("SET " + k + " " + strconv.Itoa(i) + "\r\n")
	}
	out := runTool(t, load.String(), cli, "-h", host, "-p", port, "--pipe")
	if !strings.Contains(out, "errors: 0, replies: 300") {
		t.Fatalf("redis-cli --pipe: %s", out)
	}
	got := strings.Fields(run("--scan", "--pattern", "user:*"))
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("redis-cli --scan returned %d keys, want %d", len(got), len(want))
	}
	expect("301", "dbsize")

	info := run("info")
	for _, s := range []string{"# Server", "redis_version:", "# Keyspace", "db0:keys=301,expires=1,avg_ttl=0"} {
		if !strings.Contains(info, s) {
			t.Fatalf("redis-cli info lacks %q:\n%s", s, info)
		}
	}
	if ks := run("info", "keyspace"); strings.Contains(ks, "# Server") || !strings.Contains(ks, "db0:") {
		t.Fatalf("redis-cli info keyspace = %q", ks)
	}
	// RESP3 through redis-cli.
	expect("OK", "-3", "set", "r3", "v")
	expect("v", "-3", "get", "r3")
}

func TestRedisBenchmark(t *testing.T) {
	bench := lookTool(t, "redis-benchmark")
	ts := startServer(t, nil)
	host, port, _ := net.SplitHostPort(ts.addr)
	out := runTool(t, "", bench, "-h", host, "-p", port, "-t", "set,get", "-n", "20000", "-r", "1000", "-q")
	// Progress lines end in \r; the summary lines end in \n.
	lines := strings.Split(strings.ReplaceAll(out, "\r", "\n"), "\n")
	summary := regexp.MustCompile(`^(SET|GET): ([0-9.]+) requests per second`)
	found := map[string]bool{}
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if m := summary.FindStringSubmatch(l); m != nil {
			found[m[1]] = true
			t.Log(l)
		}
		if strings.Contains(strings.ToLower(l), "error") || strings.HasPrefix(l, "ERR") {
			t.Fatalf("redis-benchmark reported an error: %q\n%s", l, out)
		}
	}
	if !found["SET"] || !found["GET"] {
		t.Fatalf("redis-benchmark summary missing:\n%s", out)
	}
	rdb := ts.client(t, 2)
	n, err := rdb.DBSize(ctx).Result()
	if err != nil || n < 500 || n > 1000 {
		t.Fatalf("DBSIZE after the benchmark = %d, %v; want the ~1000 random keys", n, err)
	}
}
