package main

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/config"
)

// TestServerClusterFlags checks that the cluster flags override [cluster]
// only when given.
func TestServerClusterFlags(t *testing.T) {
	path := writeFile(t, "member.toml", `
[cluster]
id = 1
peer_addr = "10.0.0.1:7381"
peers = ["1=10.0.0.1:7381", "2=10.0.0.2:7381", "3=10.0.0.3:7381"]
name = "prod"
shards = 32
replicas = 3
`)
	fromFile := func(c *config.Config) {
		c.Cluster.ID, c.Cluster.PeerAddr, c.Cluster.Name, c.Cluster.Shards, c.Cluster.Replicas = 1, "10.0.0.1:7381", "prod", 32, 3
		c.Cluster.Peers = []string{"1=10.0.0.1:7381", "2=10.0.0.2:7381", "3=10.0.0.3:7381"}
	}
	tests := []struct {
		name   string
		args   []string
		modify func(*config.Config)
	}{
		{"flags only", []string{"--cluster-id", "2", "--peer-addr", "0.0.0.0:7391",
			"--peers", " 1=h1:7381, 2=h2:7381 ,3=h3:7381,", "--cluster-name", "lab", "--shards", "8", "--replicas", "5"},
			func(c *config.Config) {
				c.Cluster.ID, c.Cluster.PeerAddr, c.Cluster.Name, c.Cluster.Shards, c.Cluster.Replicas = 2, "0.0.0.0:7391", "lab", 8, 5
				c.Cluster.Peers = []string{"1=h1:7381", "2=h2:7381", "3=h3:7381"}
			}},
		{"file only", []string{"--config", path}, fromFile},
		{"flags over file", []string{"--config", path, "--cluster-id=3", "--shards", "4"}, func(c *config.Config) {
			fromFile(c)
			c.Cluster.ID, c.Cluster.Shards = 3, 4
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sm, stderr, err := parseServer(t, tt.args...)
			if err != nil {
				t.Fatalf("ParseFlags = %v\n%s", err, stderr)
			}
			want := config.Default()
			want.NodeID = "test-host"
			tt.modify(&want)
			if !reflect.DeepEqual(sm.Config, want) {
				t.Errorf("config:\n got %+v\nwant %+v", sm.Config.Cluster, want.Cluster)
			}
		})
	}
}

func TestServerClusterFlagErrors(t *testing.T) {
	path := writeFile(t, "member.toml", "[cluster]\nid = 1\npeers = [\"1=10.0.0.1:7381\", \"2=10.0.0.2:7381\"]\n")
	const head = "fulcrum server: invalid configuration:\n"
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"peers without this node", []string{"--cluster-id", "4", "--peers", "1=a:7381,2=b:7381,3=c:7381"},
			head + "  cluster.peers must list this node (cluster.id = 4)\n"},
		{"file peers without the flag's id", []string{"--config", path, "--cluster-id", "3"},
			head + "  cluster.peers must list this node (cluster.id = 3)\n"},
		{"id without peers", []string{"--cluster-id", "1"},
			head + "  cluster.peers: no peers listed\n"},
		{"empty peers", []string{"--config", path, "--peers", ""},
			head + "  cluster.peers: no peers listed\n"},
		{"malformed peer", []string{"--cluster-id", "1", "--peers", "1=a:7381,two=b:7381"},
			head + "  cluster.peers: \"two=b:7381\" is not ID=host:port with ID a number from 1\n"},
		{"peer without port", []string{"--cluster-id", "1", "--peers", "1=a"},
			head + "  cluster.peers: \"1=a\": \"a\" is not host:port\n"},
		{"duplicate peer", []string{"--cluster-id", "1", "--peers", "1=a:1,1=b:1"},
			head + "  cluster.peers: node 1 is listed twice\n"},
		{"every problem", []string{"--cluster-id", "1", "--peers", "1=a:1", "--peer-addr", "127.0.0.1:7379", "--cluster-name", "", "--shards", "0", "--replicas", "9"},
			head +
				"  cluster.peer_addr and resp.addr are both 127.0.0.1:7379\n" +
				"  cluster.name must not be empty\n" +
				"  cluster.shards: 0 is not between 1 and 1024\n" +
				"  cluster.replicas: 9 is not between 1 and 7\n"},
		{"cluster flags on a lone node", []string{"--peers", "1=a:1", "--shards", "4"},
			head + "  --peers, --shards given, but cluster.id is 0 (the node would run alone): set --cluster-id or [cluster] id, or --join\n"},
		{"cluster id 0 with a file", []string{"--config", path, "--cluster-id", "0", "--replicas", "1"},
			head + "  --replicas given, but cluster.id is 0 (the node would run alone): set --cluster-id or [cluster] id, or --join\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
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
	m, _, stderr := testMain(t)
	if code := m.Run(context.Background(), []string{"server", "--cluster-id", "x"}); code != 2 ||
		!strings.HasPrefix(stderr.String(), "fulcrum server: invalid value \"x\" for flag -cluster-id: parse error\n\nUsage: fulcrum server") {
		t.Errorf("--cluster-id x: exit %d, stderr %q", code, stderr)
	}
}

// TestServerClusterStartedLog checks that a member says which cluster it
// joined in its start record.
func TestServerClusterStartedLog(t *testing.T) {
	node := newFakeNode()
	close(node.release)
	_, stderr, sigs, _, code := startServer(t, node, "--node-id", "n2", "--cluster-id", "2",
		"--peer-addr", "127.0.0.1:7391", "--peers", "1=127.0.0.1:7381,2=127.0.0.1:7391")
	sig := recv(t, sigs, "signal subscription")
	recv(t, node.ctxs, "node start")
	sig <- os.Interrupt
	if got := recv(t, code, "exit"); got != 0 {
		t.Fatalf("exit code = %d, want 0\n%s", got, stderr)
	}
	want := `config="" cluster=fulcrum cluster_id=2 peer_addr=127.0.0.1:7391 peers=2`
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("start record lacks %q:\n%s", want, stderr)
	}
}
