package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/config"
)

func parseDev(t *testing.T, args ...string) (*DevMain, string, error) {
	t.Helper()
	m, _, stderr := testMain(t)
	dm := m.command("dev").(*DevMain)
	err := dm.ParseFlags(context.Background(), args)
	return dm, stderr.String(), err
}

func TestDevFlags(t *testing.T) {
	dm, stderr, err := parseDev(t)
	if err != nil {
		t.Fatalf("ParseFlags() = %v\n%s", err, stderr)
	}
	if dm.BasePort != 7379 || dm.Nodes != 3 || dm.DataDir != "./fulcrum-dev" || dm.Shards != 16 || dm.LogLevel != "warn" {
		t.Errorf("defaults: base %d nodes %d dir %q shards %d log %q; want 7379 3 ./fulcrum-dev 16 warn",
			dm.BasePort, dm.Nodes, dm.DataDir, dm.Shards, dm.LogLevel)
	}
	dm, stderr, err = parseDev(t, "--base-port", "20000", "--nodes", "5", "--data-dir", "/tmp/x", "--shards", "4", "--log-level", "debug")
	if err != nil {
		t.Fatalf("ParseFlags = %v\n%s", err, stderr)
	}
	if dm.BasePort != 20000 || dm.Nodes != 5 || dm.DataDir != "/tmp/x" || dm.Shards != 4 || dm.LogLevel != "debug" {
		t.Errorf("flags: got %+v", dm)
	}

	bad := []struct {
		args []string
		want string
	}{
		{[]string{"--nodes", "0"}, "fulcrum dev: --nodes 0 is not between 1 and 9\n"},
		{[]string{"--nodes", "10"}, "fulcrum dev: --nodes 10 is not between 1 and 9\n"},
		{[]string{"--shards", "0"}, "fulcrum dev: --shards 0 is not between 1 and 1024\n"},
		{[]string{"--log-level", "loud"}, "fulcrum dev: --log-level \"loud\" is not one of debug, info, warn, error\n"},
		{[]string{"--base-port", "65520"}, "fulcrum dev: --base-port 65520: the ports of 3 nodes would be 65520 to 65542, outside 1 to 65535\n"},
		{[]string{"--base-port", "0"}, "fulcrum dev: --base-port 0: the ports of 3 nodes would be 0 to 22, outside 1 to 65535\n"},
		{[]string{"--data-dir", ""}, "fulcrum dev: --data-dir must not be empty\n"},
		{[]string{"now"}, "fulcrum dev: unexpected argument \"now\"\n"},
	}
	for _, tt := range bad {
		m, stdout, stderr := testMain(t)
		code := m.Run(context.Background(), append([]string{"dev"}, tt.args...))
		if code != 2 || !strings.HasPrefix(stderr.String(), tt.want+"\nUsage: fulcrum dev") || stdout.String() != "" {
			t.Errorf("fulcrum dev %s: exit %d, stderr %q; want exit 2, stderr starting %q and the usage", strings.Join(tt.args, " "), code, stderr, tt.want)
		}
	}
}

func TestDevLayout(t *testing.T) {
	dm, _, err := parseDev(t, "--data-dir", "dd")
	if err != nil {
		t.Fatal(err)
	}
	type addrs struct{ resp, http, peer, dir, cfg string }
	var got []addrs
	for _, n := range dm.layout() {
		got = append(got, addrs{n.respAddr, n.httpAddr, n.peerAddr, n.dir, n.configPath})
	}
	want := []addrs{
		{"127.0.0.1:7379", "127.0.0.1:7380", "127.0.0.1:7381", "dd/node1", "dd/node1.toml"},
		{"127.0.0.1:7389", "127.0.0.1:7390", "127.0.0.1:7391", "dd/node2", "dd/node2.toml"},
		{"127.0.0.1:7399", "127.0.0.1:7400", "127.0.0.1:7401", "dd/node3", "dd/node3.toml"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("layout:\n got %v\nwant %v", got, want)
	}
}

// TestDevPrepare checks the generated configuration files: each loads
// back to a valid member configuration, and a directory holding another
// layout is refused.
func TestDevPrepare(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	dm, _, err := parseDev(t, "--data-dir", dir, "--base-port", "21000", "--shards", "4", "--log-level", "info")
	if err != nil {
		t.Fatal(err)
	}
	nodes := dm.layout()
	if err := dm.prepare(nodes); err != nil {
		t.Fatal(err)
	}
	peers := []string{"1=127.0.0.1:21002", "2=127.0.0.1:21012", "3=127.0.0.1:21022"}
	for _, n := range nodes {
		cfg, err := config.Load(n.configPath)
		if err != nil {
			t.Fatalf("node %d: %v", n.id, err)
		}
		want := config.Default()
		want.NodeID = fmt.Sprintf("node%d", n.id)
		want.Data.Dir = filepath.Join(dir, fmt.Sprintf("node%d", n.id))
		want.RESP.Addr, want.HTTP.Addr = n.respAddr, n.httpAddr
		want.Log.Level = "info"
		want.ShutdownTimeout = config.Duration(3 * time.Second)
		want.Cluster.ID = uint64(n.id)
		want.Cluster.PeerAddr = n.peerAddr
		want.Cluster.Peers = peers
		want.Cluster.Name = "fulcrum-dev"
		want.Cluster.Shards = 4
		if !reflect.DeepEqual(cfg, want) {
			t.Errorf("node %d config:\n got %+v\nwant %+v", n.id, cfg, want)
		}
	}
	// The same layout again is fine (the files are rewritten) ...
	if err := dm.prepare(nodes); err != nil {
		t.Errorf("second prepare: %v", err)
	}
	// ... another one is not.
	dm.Nodes = 5
	err = dm.prepare(dm.layout())
	want := dir + " holds a cluster of 3 nodes and 4 shards from an earlier fulcrum dev; run with --nodes 3 --shards 4, or remove it, or pick another --data-dir"
	if err == nil || err.Error() != want {
		t.Errorf("prepare over another layout = %v, want %q", err, want)
	}
}

// TestDevPortsInUse checks that a taken port is named and nothing starts.
func TestDevPortsInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if port > 65535-30 {
		t.Skipf("port %d too high for a 3-node layout", port)
	}
	// The taken port is node 2's HTTP port.
	base := port - 11
	dir := filepath.Join(t.TempDir(), "dev")
	m, stdout, stderr := testMain(t)
	m.Executable = func() (string, error) { t.Error("a node was started"); return "", os.ErrNotExist }
	code := m.Run(context.Background(), []string{"dev", "--base-port", fmt.Sprint(base), "--data-dir", dir})
	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	want := fmt.Sprintf("port %d (HTTP of node 2): listen tcp 127.0.0.1:%d: bind: address already in use", port, port)
	if !strings.HasPrefix(stderr.String(), "error: cannot start the cluster, ports in use") || !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr = %q, want the ports-in-use error naming %q", stderr, want)
	}
	if stdout.String() != "" {
		t.Errorf("stdout = %q, want nothing", stdout)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("data directory created before the port check failed: %v", err)
	}
}

func TestPrefixWriter(t *testing.T) {
	var out syncBuffer
	w := &prefixWriter{out: &lockedWriter{w: &out}, prefix: "[node 2] ", keep: 2}
	for _, chunk := range []string{"one\ntw", "o\n", "", "three\nfour", "\n\nlast"} {
		if n, err := w.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", chunk, n, err)
		}
	}
	if got, want := out.String(), "[node 2] one\n[node 2] two\n[node 2] three\n[node 2] four\n[node 2] \n"; got != want {
		t.Errorf("before flush: %q, want %q", got, want)
	}
	w.flush()
	if got, want := out.String(), "[node 2] one\n[node 2] two\n[node 2] three\n[node 2] four\n[node 2] \n[node 2] last\n"; got != want {
		t.Errorf("after flush: %q, want %q", got, want)
	}
	if got, want := w.lastLines(), []string{"[node 2] ", "[node 2] last"}; !reflect.DeepEqual(got, want) {
		t.Errorf("lastLines = %q, want %q", got, want)
	}
}
