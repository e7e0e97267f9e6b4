package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/raftstore"
	"github.com/fulcrumdb/fulcrum/internal/server"
)

// sampleStatus is node 2's view of a 3-node cluster with 3 shards: it
// leads shard 1, follows in shard 0, and shard 2 is electing.
func sampleStatus() server.ClusterStatus {
	return server.ClusterStatus{
		Node:  2,
		Peers: map[string]string{"1": "127.0.0.1:7381", "2": "127.0.0.1:7391", "3": "127.0.0.1:7401"},
		Shards: []server.ShardStatus{
			{Namespace: "default", Shard: 0, Group: 1, Leader: 1, Term: 4, State: "StateFollower", Commit: 120, Applied: 119, Voters: []uint64{1, 2, 3}},
			{Namespace: "default", Shard: 1, Group: 2, Leader: 2, Term: 3, State: "StateLeader", Commit: 98, Applied: 98, Voters: []uint64{1, 2, 3},
				Lag: map[string]uint64{"1": 0, "2": 0, "3": 17}},
			{Namespace: "default", Shard: 2, Group: 3, Leader: 0, Term: 7, State: "StatePreCandidate", Commit: 50, Applied: 50, Voters: []uint64{1, 2, 3}},
		},
		Engine: raftstore.Stats{Proposals: 10, Applied: 20, LeaderChanges: 3},
	}
}

// statusServer serves GET /v1/cluster with status code and body.
func statusServer(t *testing.T, code int, body []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/cluster" || r.Method != http.MethodGet {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusTeapot)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	m, stdout, stderr := testMain(t)
	code := m.Run(context.Background(), args)
	return code, stdout.String(), stderr.String()
}

func TestClusterStatusTable(t *testing.T) {
	body, err := json.MarshalIndent(sampleStatus(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	addr := statusServer(t, http.StatusOK, body)
	code, stdout, stderr := runMain(t, "cluster", "status", "--addr", addr)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	want := `node 2 of 3

NODE  PEER ADDRESS
1     127.0.0.1:7381
2     127.0.0.1:7391  (this node)
3     127.0.0.1:7401

SHARD  LEADER  TERM  STATE          COMMIT  APPLIED  VOTERS  LAG
0      1       4     follower       120     119      1,2,3   -
1      2       3     leader         98      98       1,2,3   1:0 3:17
2      none    7     pre-candidate  50      50       1,2,3   -

3 shard replicas on node 2; it leads 1; 1 without a known leader.
engine: applied=20 bad_messages=0 compactions=0 dropped_messages=0 inbox_dropped=0 leader_changes=3 lease_reads=0 messages_sent=0 persist_syncs=0 proposals=10 read_index=0 snapshots_applied=0 snapshots_sent=0
`
	if stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}

	// --json prints what the node sent; a URL works as --addr too.
	code, stdout, _ = runMain(t, "cluster", "status", "--json", "--addr", "http://"+addr+"/")
	if code != 0 || stdout != string(body) {
		t.Errorf("--json: exit %d, stdout %q; want 0 and the node's JSON", code, stdout)
	}
}

func TestClusterStatusErrors(t *testing.T) {
	notFound := statusServer(t, http.StatusNotFound, []byte(`{"code":"NOT_FOUND","message":"no route"}`))
	broken := statusServer(t, http.StatusInternalServerError, []byte(`{"code":"INTERNAL","message":"boom"}`))
	garbage := statusServer(t, http.StatusOK, []byte(`<html>`))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string // prefix
	}{
		{"alone", []string{"--addr", notFound}, 1, fmt.Sprintf("error: the node at %s is not a cluster member: it runs alone (no /v1/cluster)\n", notFound)},
		{"server error", []string{"--addr", broken}, 1, fmt.Sprintf("error: the node at %s answered GET /v1/cluster with 500 Internal Server Error: INTERNAL boom\n", broken)},
		{"not JSON", []string{"--addr", garbage}, 1, fmt.Sprintf("error: the node at %s sent a cluster status that is not JSON: ", garbage)},
		{"unreachable", []string{"--addr", closed}, 1, fmt.Sprintf("error: cannot reach the node at %s: Get \"http://%s/v1/cluster\": dial tcp %s: connect: connection refused\n", closed, closed, closed)},
		{"bad addr", []string{"--addr", "ftp://x"}, 2, "fulcrum cluster status: --addr: \"ftp://x\" is not host:port or an http:// or https:// URL\n\nUsage: fulcrum cluster status"},
		{"bad timeout", []string{"--timeout", "0s"}, 2, "fulcrum cluster status: --timeout must be > 0\n"},
		{"extra", []string{"now"}, 2, "fulcrum cluster status: unexpected argument \"now\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runMain(t, append([]string{"cluster", "status"}, tt.args...)...)
			if code != tt.code || !strings.HasPrefix(stderr, tt.stderr) || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q\nwant exit %d, stderr starting %q", code, stdout, stderr, tt.code, tt.stderr)
			}
		})
	}

	for _, tt := range []struct {
		args         []string
		code         int
		stdout, errs string
	}{
		{[]string{"cluster"}, 2, "", "fulcrum cluster: missing subcommand\n\nUsage:\n  fulcrum cluster status"},
		{[]string{"cluster", "stats"}, 2, "", "fulcrum cluster: unknown subcommand \"stats\""},
		{[]string{"cluster", "-h"}, 0, "Usage:\n  fulcrum cluster status", ""},
		{[]string{"help", "cluster", "status"}, 0, "Usage: fulcrum cluster status [--addr HOST:PORT] [--json]", ""},
	} {
		code, stdout, stderr := runMain(t, tt.args...)
		if code != tt.code || !strings.HasPrefix(stdout, tt.stdout) || !strings.HasPrefix(stderr, tt.errs) || (tt.errs == "" && stderr != "") {
			t.Errorf("fulcrum %s: exit %d, stdout %q, stderr %q; want %d, %q, %q", strings.Join(tt.args, " "), code, stdout, stderr, tt.code, tt.stdout, tt.errs)
		}
	}
}

func TestRaftState(t *testing.T) {
	for in, want := range map[string]string{
		"StateLeader": "leader", "StateFollower": "follower", "StateCandidate": "candidate",
		"StatePreCandidate": "pre-candidate", "": "?",
	} {
		if got := raftState(in); got != want {
			t.Errorf("raftState(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClusterRemove(t *testing.T) {
	var gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.Method + " " + r.URL.Path
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/3") {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"code":"INVALID","message":"cannot remove node 3: namespace \"default\" keeps 3 replicas and only 2 node(s) would remain"}`))
			return
		}
		w.Write([]byte(`{"node":2,"state":"leaving"}`))
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	code, stdout, stderr := runMain(t, "cluster", "remove", "--addr", addr, "2")
	if code != 0 || stderr != "" || gotPath != "DELETE /v1/cluster/members/2" || !strings.HasPrefix(stdout, "node 2 is leaving") {
		t.Fatalf("exit %d, request %q, stdout %q, stderr %q", code, gotPath, stdout, stderr)
	}
	code, _, stderr = runMain(t, "cluster", "remove", "--addr", addr, "3")
	if want := "error: remove node 3: INVALID cannot remove node 3: namespace \"default\" keeps 3 replicas and only 2 node(s) would remain\n"; code != 1 || stderr != want {
		t.Fatalf("refused removal: exit %d, stderr %q, want 1 and %q", code, stderr, want)
	}
	for _, args := range [][]string{{}, {"x"}, {"0"}, {"1", "2"}} {
		code, _, stderr = runMain(t, append([]string{"cluster", "remove", "--addr", addr}, args...)...)
		if code != 2 || !strings.HasPrefix(stderr, "fulcrum cluster remove: ") {
			t.Fatalf("args %q: exit %d, stderr %q; want 2 and a usage error", args, code, stderr)
		}
	}
}
