//go:build unix

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeNodeScript stands in for the fulcrum binary under "fulcrum dev". It
// is called as "server --config DIR/nodeN.toml"; node 2 dies at once with
// status 3, the others run until SIGTERM, which they obey unless the file
// DIR/ignore-term exists.
const fakeNodeScript = `#!/bin/sh
cfg=$3
dir=$(dirname "$cfg")
name=$(basename "$cfg" .toml)
echo "$name starting" >&2
if [ "$name" = node2 ]; then
	echo "$name: disk on fire" >&2
	printf 'no newline at the end' >&2
	exit 3
fi
if [ -e "$dir/ignore-term" ]; then
	trap '' TERM
else
	trap 'echo "$name got SIGTERM" >&2; exit 0' TERM
fi
echo "$name trapped" >&2
while :; do sleep 0.02; done
`

// freeBase returns a base port whose next n ports were free a moment ago,
// from a range below the usual ephemeral ports.
func freeBase(t *testing.T, n int) int {
	t.Helper()
	for base := 15000 + os.Getpid()%1000*10; base < 32000; base += n {
		var lns []net.Listener
		ok := true
		for p := base; p < base+n && ok; p++ {
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free range of ports")
	return 0
}

// startFakeDev runs "fulcrum dev" in-process over fakeNodeScript and
// returns its signal channel, outputs and exit code.
func startFakeDev(t *testing.T, ignoreTerm bool) (sigs chan<- os.Signal, stdout, stderr *syncBuffer, code <-chan int, dir string) {
	t.Helper()
	tmp := t.TempDir()
	script := filepath.Join(tmp, "fake-fulcrum")
	if err := os.WriteFile(script, []byte(fakeNodeScript), 0o755); err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(tmp, "dev")
	if ignoreTerm {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "ignore-term"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, stdout, stderr := testMain(t)
	subscribed := make(chan chan<- os.Signal, 1)
	m.Notify = func(c chan<- os.Signal) { subscribed <- c }
	m.Executable = func() (string, error) { return script, nil }
	dm := m.command("dev").(*DevMain)
	args := []string{"--base-port", strconv.Itoa(freeBase(t, 30)), "--data-dir", dir}
	if err := dm.ParseFlags(context.Background(), args); err != nil {
		t.Fatalf("ParseFlags: %v\n%s", err, stderr)
	}
	dm.stopLimit = 300 * time.Millisecond
	c := make(chan int, 1)
	go func() {
		err := dm.Run(context.Background())
		if err != nil {
			fmt.Fprintf(stderr, "error: %v\n", err)
			c <- 1
			return
		}
		c <- 0
	}()
	return recv(t, subscribed, "signal subscription"), stdout, stderr, c, dir
}

// waitFor polls s until it contains want.
func waitFor(t *testing.T, what string, s fmt.Stringer, want string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(s.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s lacks %q after %v:\n%s", what, want, waitLimit, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitTrapped waits until nodes 1 and 3 have set up their SIGTERM
// handling.
func waitTrapped(t *testing.T, stderr *syncBuffer) {
	t.Helper()
	waitFor(t, "stderr", stderr, "[node 1] node1 trapped\n")
	waitFor(t, "stderr", stderr, "[node 3] node3 trapped\n")
}

var pidLine = regexp.MustCompile(`(?m)^([0-9])\s+\S+\s+\S+\s+\S+\s+\S+\s+([0-9]+)$`)

// tablePIDs reads the node pids from dev's table.
func tablePIDs(t *testing.T, stdout string) map[int]int {
	t.Helper()
	pids := make(map[int]int)
	for _, m := range pidLine.FindAllStringSubmatch(stdout, -1) {
		id, _ := strconv.Atoi(m[1])
		pid, _ := strconv.Atoi(m[2])
		pids[id] = pid
	}
	return pids
}

// TestDevSupervises checks the table, the prefixed output, the report of a
// node that dies, and that a signal stops the others gracefully.
func TestDevSupervises(t *testing.T) {
	sigs, stdout, stderr, code, dir := startFakeDev(t, false)
	waitFor(t, "stdout", stdout, "Stop with Ctrl-C")
	pids := tablePIDs(t, stdout.String())
	if len(pids) != 3 {
		t.Fatalf("pids in the table: %v, want 3\n%s", pids, stdout)
	}
	waitFor(t, "stderr", stderr, "start it again with: fulcrum server --config "+filepath.Join(dir, "node2.toml"))
	want := fmt.Sprintf("fulcrum dev: node 2 (pid %d) exited unexpectedly: exit status 3\n"+
		"fulcrum dev: its last output:\n"+
		"  [node 2] node2 starting\n"+
		"  [node 2] node2: disk on fire\n"+
		"  [node 2] no newline at the end\n", pids[2])
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks the death report %q:\n%s", want, stderr)
	}
	waitTrapped(t, stderr)

	sigs <- syscall.SIGINT
	if got := recv(t, code, "exit"); got != 0 {
		t.Errorf("exit code = %d, want 0\nstderr:\n%s", got, stderr)
	}
	for _, want := range []string{"[node 1] node1 got SIGTERM\n", "[node 3] node3 got SIGTERM\n"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if !strings.HasSuffix(stdout.String(), "stopping the nodes (signal again to kill them at once)...\nstopped\n") {
		t.Errorf("stdout does not end with the stop messages:\n%s", stdout)
	}
	if strings.Contains(stdout.String(), "cluster ready") {
		t.Errorf("fake nodes serve no HTTP, yet the cluster was reported ready:\n%s", stdout)
	}
	assertGone(t, pids)
}

// TestDevKillsStubbornNodes checks that nodes ignoring SIGTERM are killed
// at a second signal, and otherwise after the stop limit.
func TestDevKillsStubbornNodes(t *testing.T) {
	t.Run("second signal", func(t *testing.T) {
		sigs, stdout, stderr, code, _ := startFakeDev(t, true)
		waitTrapped(t, stderr)
		pids := tablePIDs(t, stdout.String())
		sigs <- syscall.SIGINT
		waitFor(t, "stdout", stdout, "stopping the nodes")
		sigs <- syscall.SIGINT
		if got := recv(t, code, "exit"); got != 0 {
			t.Errorf("exit code = %d, want 0", got)
		}
		for _, id := range []int{1, 3} {
			if want := fmt.Sprintf("fulcrum dev: killing node %d (pid %d): second signal\n", id, pids[id]); !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
		assertGone(t, pids)
	})
	t.Run("stop limit", func(t *testing.T) {
		sigs, stdout, stderr, code, _ := startFakeDev(t, true)
		waitTrapped(t, stderr)
		pids := tablePIDs(t, stdout.String())
		sigs <- syscall.SIGTERM
		if got := recv(t, code, "exit"); got != 0 {
			t.Errorf("exit code = %d, want 0", got)
		}
		if want := fmt.Sprintf("fulcrum dev: killing node 1 (pid %d): still running 300ms after SIGTERM\n", pids[1]); !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
		assertGone(t, pids)
	})
}

// assertGone checks that no process has one of pids: dev reaped them all.
func assertGone(t *testing.T, pids map[int]int) {
	t.Helper()
	for id, pid := range pids {
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			t.Errorf("node %d (pid %d) still exists after dev returned: kill(pid, 0) = %v", id, pid, err)
		}
	}
}
