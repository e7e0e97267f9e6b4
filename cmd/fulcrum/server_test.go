package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/config"
)

// waitLimit bounds every wait in these tests; reaching it is a failure, not
// a way of letting time pass.
const waitLimit = 10 * time.Second

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func parseServer(t *testing.T, args ...string) (*ServerMain, string, error) {
	t.Helper()
	m, _, stderr := testMain(t)
	sm := m.command("server").(*ServerMain)
	err := sm.ParseFlags(context.Background(), args)
	return sm, stderr.String(), err
}

// TestServerPrecedence checks default < file < flags given, and that a flag
// left out never overrides the file even though its zero value differs.
func TestServerPrecedence(t *testing.T) {
	path := writeFile(t, "f.toml", `
node_id = "from-file"
[data]
dir = "/file/dir"
sync = "interval"
sync_interval = "20ms"
[resp]
addr = "127.0.0.1:9001"
[log]
level = "debug"
format = "json"
`)
	tests := []struct {
		name   string
		args   []string
		modify func(*config.Config)
	}{
		{"defaults", nil, func(c *config.Config) { c.NodeID = "test-host" }},
		{"flags only", []string{"--data-dir", "/flag/dir", "--resp-addr=:7000", "--http-addr", ":7001", "--sync", "none", "--log-level", "warn", "--node-id", "n9"},
			func(c *config.Config) {
				c.NodeID, c.Data.Dir, c.RESP.Addr, c.HTTP.Addr, c.Data.Sync, c.Log.Level = "n9", "/flag/dir", ":7000", ":7001", "none", "warn"
			}},
		{"file only", []string{"--config", path}, func(c *config.Config) {
			c.NodeID, c.Data.Dir, c.Data.Sync, c.Data.SyncInterval = "from-file", "/file/dir", "interval", config.Duration(20*time.Millisecond)
			c.RESP.Addr, c.Log.Level, c.Log.Format = "127.0.0.1:9001", "debug", "json"
		}},
		{"flags over file", []string{"--config", path, "--sync", "always", "--resp-addr", "127.0.0.1:9002", "--node-id", "n2"}, func(c *config.Config) {
			c.NodeID, c.Data.Dir, c.Data.Sync, c.Data.SyncInterval = "n2", "/file/dir", "always", config.Duration(20*time.Millisecond)
			c.RESP.Addr, c.Log.Level, c.Log.Format = "127.0.0.1:9002", "debug", "json"
		}},
		{"flag set to empty still overrides", []string{"--config", path, "--node-id", ""}, func(c *config.Config) {
			// An explicitly empty node id means "the host name", as in a file.
			c.NodeID, c.Data.Dir, c.Data.Sync, c.Data.SyncInterval = "test-host", "/file/dir", "interval", config.Duration(20*time.Millisecond)
			c.RESP.Addr, c.Log.Level, c.Log.Format = "127.0.0.1:9001", "debug", "json"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sm, stderr, err := parseServer(t, tt.args...)
			if err != nil {
				t.Fatalf("ParseFlags = %v\n%s", err, stderr)
			}
			want := config.Default()
			tt.modify(&want)
			if !reflect.DeepEqual(sm.Config, want) {
				t.Errorf("config:\n got %+v\nwant %+v", sm.Config, want)
			}
		})
	}
}

func TestServerBadConfig(t *testing.T) {
	bad := writeFile(t, "bad.toml", "[data]\nsync = \"sometimes\"\n[limits]\nmax_value_size = \"1GiB\"\n")
	unknown := writeFile(t, "unknown.toml", "[data]\nsyncc = \"always\"\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"every problem", []string{"--config", bad, "--http-addr", "127.0.0.1:7379"},
			"fulcrum server: invalid configuration:\n" +
				"  data.sync: \"sometimes\" is not one of always, interval, none\n" +
				"  limits.max_value_size: 1GiB exceeds the hard maximum 512MiB\n" +
				"  resp.addr and http.addr are both 127.0.0.1:7379\n"},
		{"flag value", []string{"--log-level", "loud"},
			"fulcrum server: invalid configuration:\n  log.level: \"loud\" is not one of debug, info, warn, error\n"},
		{"unknown key", []string{"--config", unknown},
			"fulcrum server: cannot load the configuration:\n  " + unknown + ":2: unknown key data.syncc\n"},
		{"missing file", []string{"--config", "/nonexistent/f.toml"},
			"fulcrum server: cannot load the configuration:\n  load config: open /nonexistent/f.toml: no such file or directory\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Through Main.Run: testMain's Serve fails the test if the
			// server is started.
			m, stdout, stderr := testMain(t)
			code := m.Run(context.Background(), append([]string{"server"}, tt.args...))
			if code != 2 {
				t.Errorf("exit code = %d, want 2", code)
			}
			if stderr.String() != tt.want || stdout.String() != "" {
				t.Errorf("stderr = %q\nwant %q (stdout %q)", stderr, tt.want, stdout)
			}
		})
	}
}

func TestServerNodeIDFromHostname(t *testing.T) {
	tests := []struct {
		host string
		err  error
		want string
	}{
		{"db1.example.com", nil, "db1.example.com"},
		{"weird host/name", nil, "weird-host-name"},
		{strings.Repeat("h", 70), nil, strings.Repeat("h", 64)},
		{"", errors.New("no hostname"), "fulcrum"},
	}
	for _, tt := range tests {
		m, _, _ := testMain(t)
		m.Hostname = func() (string, error) { return tt.host, tt.err }
		sm := m.command("server").(*ServerMain)
		if err := sm.ParseFlags(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		if sm.Config.NodeID != tt.want {
			t.Errorf("host %q: NodeID = %q, want %q", tt.host, sm.Config.NodeID, tt.want)
		}
	}
}

// fakeNode stands in for the server: it reports its addresses, serves until
// its context is cancelled, then waits for release before returning, which
// lets a test hold it "shutting down".
type fakeNode struct {
	ctxs    chan context.Context
	cfgs    chan config.Config
	release chan struct{}
	err     error
}

func newFakeNode() *fakeNode {
	return &fakeNode{ctxs: make(chan context.Context, 1), cfgs: make(chan config.Config, 1), release: make(chan struct{})}
}

func (f *fakeNode) serve(ctx context.Context, cfg config.Config, logger *slog.Logger, started func(string, string)) error {
	f.cfgs <- cfg
	if f.err != nil {
		return f.err
	}
	started("127.0.0.1:41000", "127.0.0.1:41001")
	logger.Debug("fake node serving")
	f.ctxs <- ctx
	<-ctx.Done()
	<-f.release
	return nil
}

// startServer runs "fulcrum server args..." in the background with a fake
// node and fake signals. It returns the signal channel the command
// subscribed, the exit codes passed to Exit, and Run's exit code.
func startServer(t *testing.T, node *fakeNode, args ...string) (m *Main, stderr *syncBuffer, sigs chan chan<- os.Signal, exits chan int, code chan int) {
	t.Helper()
	m, _, stderr = testMain(t)
	sigs, exits, code = make(chan chan<- os.Signal, 1), make(chan int, 1), make(chan int, 1)
	m.Notify = func(c chan<- os.Signal) { sigs <- c }
	m.Exit = func(c int) { exits <- c }
	m.Serve = node.serve
	go func() { code <- m.Run(context.Background(), append([]string{"server"}, args...)) }()
	return m, stderr, sigs, exits, code
}

func recv[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("no %s within %s", what, waitLimit)
		panic("unreachable")
	}
}

func TestServerGracefulSignal(t *testing.T) {
	node := newFakeNode()
	close(node.release) // return as soon as the context is cancelled
	_, stderr, sigs, _, code := startServer(t, node, "--node-id", "n1", "--data-dir", "/d")
	sig := recv(t, sigs, "signal subscription")
	ctx := recv(t, node.ctxs, "node start")
	if ctx.Err() != nil {
		t.Fatalf("node context cancelled before any signal: %v", ctx.Err())
	}
	sig <- syscall.SIGTERM
	if got := recv(t, code, "exit"); got != 0 {
		t.Errorf("exit code = %d, want 0\n%s", got, stderr)
	}
	if ctx.Err() == nil {
		t.Errorf("node context not cancelled by SIGTERM")
	}
	logs := stderr.String()
	for _, want := range []string{
		`level=INFO msg="fulcrum started" node=n1 version=dev resp=127.0.0.1:41000 http=127.0.0.1:41001 data_dir=/d sync=always config=""`,
		`level=INFO msg="shutting down; signal again to exit at once" node=n1 signal=terminated timeout=10s`,
		`level=INFO msg="fulcrum stopped" node=n1`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "fake node serving") {
		t.Errorf("debug record logged at level info:\n%s", logs)
	}
}

func TestServerSecondSignalExits130(t *testing.T) {
	node := newFakeNode()
	_, stderr, sigs, exits, code := startServer(t, node)
	sig := recv(t, sigs, "signal subscription")
	recv(t, node.ctxs, "node start")
	sig <- os.Interrupt
	sig <- os.Interrupt
	if got := recv(t, exits, "Exit call"); got != 130 {
		t.Errorf("Exit(%d), want Exit(130)", got)
	}
	if !strings.Contains(stderr.String(), `level=ERROR msg="second signal: exiting without a graceful shutdown" node=test-host signal=interrupt`) {
		t.Errorf("second signal not logged:\n%s", stderr)
	}
	close(node.release) // the fake Exit returned; let Run finish
	recv(t, code, "exit")
}

func TestServerContextCancelStops(t *testing.T) {
	node := newFakeNode()
	close(node.release)
	m, _, stderr := testMain(t)
	m.Serve = node.serve
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() { code <- m.Run(ctx, []string{"server", "--log-level", "debug"}) }()
	recv(t, node.ctxs, "node start")
	cancel()
	if got := recv(t, code, "exit"); got != 0 {
		t.Errorf("exit code = %d, want 0\n%s", got, stderr)
	}
	if !strings.Contains(stderr.String(), "fake node serving") {
		t.Errorf("debug record missing at level debug:\n%s", stderr)
	}
}

func TestServerJSONLogAndServeError(t *testing.T) {
	node := newFakeNode()
	node.err = errors.New("open storage: disk on fire")
	path := writeFile(t, "f.toml", "[log]\nformat = \"json\"\n")
	_, stderr, _, _, code := startServer(t, node, "--config", path)
	if got := recv(t, code, "exit"); got != 1 {
		t.Errorf("exit code = %d, want 1", got)
	}
	if cfg := recv(t, node.cfgs, "config"); cfg.Log.Format != "json" {
		t.Errorf("served config log.format = %q, want json", cfg.Log.Format)
	}
	if want := "error: open storage: disk on fire\n"; stderr.String() != want {
		t.Errorf("stderr = %q, want %q", stderr, want)
	}

	node = newFakeNode()
	close(node.release)
	m, _, stderr2 := testMain(t)
	m.Serve = node.serve
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- m.Run(ctx, []string{"server", "--config", path}) }()
	recv(t, node.ctxs, "node start")
	cancel()
	recv(t, done, "exit")
	for _, line := range strings.Split(strings.TrimSpace(stderr2.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		if rec["node"] != "test-host" {
			t.Errorf("log record node = %v, want test-host", rec["node"])
		}
	}
}
