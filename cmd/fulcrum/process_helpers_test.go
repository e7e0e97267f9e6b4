//go:build unix

package main_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The process tests run the real fulcrum binary as a child process. These
// helpers build it once per test run, start nodes on free ports, wait for
// readiness and make sure no child outlives its test.

const (
	// readyLimit bounds how long a node may take to answer /readyz.
	readyLimit = 20 * time.Second
	// exitLimit bounds how long a signalled or killed node may take to exit
	// when the test does not expect a graceful drain.
	exitLimit = 10 * time.Second
	// buildLimit bounds the one "go build" of the binary.
	buildLimit = 5 * time.Minute
	// startAttempts is how often startNode retries when the ports it picked
	// were taken by someone else between picking and binding.
	startAttempts = 5
)

// fulcrumBinary is the binary under test, built at most once per test
// process into a directory TestMain owns and removes.
var fulcrumBinary struct {
	dir  string
	once sync.Once
	path string
	err  error
}

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "fulcrum-process-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "process tests:", err)
		os.Exit(1)
	}
	fulcrumBinary.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binary skips the test under -short, and otherwise returns the path of the
// fulcrum binary, building it on first use. The child is built without
// -race: the race detector is for the test process.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("process test: starts the fulcrum binary (skipped with -short)")
	}
	fulcrumBinary.once.Do(func() {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), buildLimit)
		defer cancel()
		path := filepath.Join(fulcrumBinary.dir, "fulcrum")
		// The test's working directory is the package directory.
		out, err := exec.CommandContext(ctx, goTool(), "build", "-o", path, ".").CombinedOutput()
		if err != nil {
			fulcrumBinary.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		fulcrumBinary.path = path
		t.Logf("built %s in %v", path, time.Since(start).Round(time.Millisecond))
	})
	if fulcrumBinary.err != nil {
		t.Fatal(fulcrumBinary.err)
	}
	return fulcrumBinary.path
}

// goTool is the go command of the toolchain running the tests, so the child
// is built by the same Go as the test binary.
func goTool() string {
	//lint:ignore SA1019 the test binary's own GOROOT is exactly what is wanted
	if root := runtime.GOROOT(); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// freeAddrs returns n distinct loopback addresses that were free a moment
// ago. They are held open together so that they differ, then released for
// the child to bind; another process may take one in between, which
// startNode detects and retries.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	lns := make([]net.Listener, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i], addrs[i] = ln, ln.Addr().String()
	}
	for _, ln := range lns {
		ln.Close()
	}
	return addrs
}

// syncBuf is a bytes.Buffer safe for the child's output copier and the test
// to use at once.
type syncBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// node is one running "fulcrum server" child process.
type node struct {
	t        *testing.T
	dataDir  string
	respAddr string
	httpAddr string
	cmd      *exec.Cmd
	output   *syncBuf // stdout and stderr

	exited chan struct{} // closed once cmd.Wait has returned
	// state is the exit status, written before exited is closed and read
	// only after.
	state *os.ProcessState
}

// startNode starts "fulcrum server" on dataDir with free ports and the extra
// arguments, and returns once /readyz answers 200. The node is killed, if
// still running, when the test ends; its output is logged if the test
// failed.
func startNode(t *testing.T, dataDir string, extra ...string) *node {
	t.Helper()
	bin := binary(t)
	for attempt := 1; ; attempt++ {
		addrs := freeAddrs(t, 2)
		args := append([]string{"server",
			"--data-dir", dataDir, "--resp-addr", addrs[0], "--http-addr", addrs[1],
			"--node-id", "process-test", "--log-level", "info"}, extra...)
		n := launchNode(t, bin, dataDir, addrs[0], addrs[1], args)
		err := n.waitReady()
		if err == nil {
			return n
		}
		if n.hasExited() && strings.Contains(n.output.String(), "address already in use") && attempt < startAttempts {
			t.Logf("ports %v were taken; retrying", addrs)
			continue
		}
		t.Fatalf("node did not become ready: %v\noutput:\n%s", err, n.output)
	}
}

// launchNode starts bin with args, which must make it listen on respAddr
// and httpAddr, and returns at once. The child is killed, if still running,
// when the test ends; its output is logged if the test failed.
func launchNode(t *testing.T, bin, dataDir, respAddr, httpAddr string, args []string) *node {
	t.Helper()
	n := &node{t: t, dataDir: dataDir, respAddr: respAddr, httpAddr: httpAddr, output: &syncBuf{}, exited: make(chan struct{})}
	n.cmd = exec.Command(bin, args...)
	n.cmd.Stdout, n.cmd.Stderr = n.output, n.output
	// Wait must not hang on the output pipes once the child is gone.
	n.cmd.WaitDelay = 5 * time.Second
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		// Owned by n: ends when the child exits, which cleanup ensures.
		n.cmd.Wait()
		n.state = n.cmd.ProcessState
		close(n.exited)
	}()
	t.Cleanup(n.cleanup)
	return n
}

// waitReady polls /readyz until it answers 200, the child exits or
// readyLimit passes.
func (n *node) waitReady() error {
	client := &http.Client{Timeout: time.Second}
	url := "http://" + n.httpAddr + "/readyz"
	deadline := time.NewTimer(readyLimit)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-n.exited:
			return fmt.Errorf("exited with %v", n.state)
		case <-deadline.C:
			return fmt.Errorf("no 200 from %s within %v", url, readyLimit)
		case <-tick.C:
		}
	}
}

func (n *node) hasExited() bool {
	select {
	case <-n.exited:
		return true
	default:
		return false
	}
}

// signal sends sig to the child.
func (n *node) signal(sig os.Signal) {
	n.t.Helper()
	if err := n.cmd.Process.Signal(sig); err != nil {
		n.t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits up to limit for the child to exit and returns its status.
func (n *node) wait(limit time.Duration) *os.ProcessState {
	n.t.Helper()
	select {
	case <-n.exited:
		return n.state
	case <-time.After(limit):
		n.t.Fatalf("node still running %v later\noutput:\n%s", limit, n.output)
		return nil
	}
}

// kill9 kills the child with SIGKILL and waits for it.
func (n *node) kill9() {
	n.t.Helper()
	n.signal(syscall.SIGKILL)
	st := n.wait(exitLimit)
	if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		n.t.Fatalf("node ended with %v, want killed by SIGKILL", st)
	}
}

// waitOutput polls the child's output until it contains s.
func (n *node) waitOutput(s string, limit time.Duration) {
	n.t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(n.output.String(), s) {
		select {
		case <-deadline.C:
			n.t.Fatalf("node output lacks %q after %v:\n%s", s, limit, n.output)
		case <-tick.C:
		}
	}
}

func (n *node) cleanup() {
	if !n.hasExited() {
		n.cmd.Process.Kill()
		select {
		case <-n.exited:
		case <-time.After(exitLimit):
			n.t.Errorf("node pid %d did not exit %v after SIGKILL", n.cmd.Process.Pid, exitLimit)
		}
	}
	if n.t.Failed() {
		n.t.Logf("output of node pid %d (%s):\n%s", n.cmd.Process.Pid, n.dataDir, n.output)
	}
}

// run runs the binary with args (a client subcommand) and returns its exit
// code, stdout and stderr.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runTool(t, "", binary(t), args...)
}

// runTool runs an external program with stdin and returns its exit code,
// stdout and stderr; failing to start it, or it running past a minute,
// fails the test.
func runTool(t *testing.T, stdin, path string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		code = ee.ExitCode()
	default:
		t.Fatalf("%s %s: %v\nstderr: %s", filepath.Base(path), strings.Join(args, " "), err, errOut.String())
	}
	return code, out.String(), errOut.String()
}

// lookTool returns the path of an external program or skips the test.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not on PATH; install redis-tools to run this test", name)
	}
	return p
}

// atoi parses s (trimmed) as an int64 or fails the test.
func atoi(t *testing.T, what, s string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		t.Fatalf("%s = %q, want an integer", what, s)
	}
	return v
}
