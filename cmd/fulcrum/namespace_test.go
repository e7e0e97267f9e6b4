package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/config"
	"github.com/fulcrumdb/fulcrum/internal/server/servertest"
)

func TestNamespaceCommands(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peer := ln.Addr().String()
	ln.Close()
	srv := servertest.Start(t, func(c *config.Config) {
		c.Cluster.ID, c.Cluster.PeerAddr, c.Cluster.Peers = 1, peer, []string{"1=" + peer}
		c.Cluster.Shards = 2
		c.Cluster.Tick = config.Duration(10 * time.Millisecond)
	})
	run := func(args ...string) (int, string, string) {
		m, stdout, stderr := testMain(t)
		code := m.Run(context.Background(), append([]string{"namespace"}, append(args, "--addr", srv.HTTPAddr())...))
		return code, stdout.String(), stderr.String()
	}
	// The single-member cluster bootstraps its default namespace.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, _ := run("list")
		if code == 0 && strings.Contains(out, "default") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list never showed default: %d %q", code, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, out, errOut := run("create", "orders", "--replicas", "1", "--shards", "3")
	if code != 0 || !strings.Contains(out, "namespace orders: consistency=strong replicas=1 shards=3") || strings.Count(out, "\n") != 6 {
		t.Fatalf("create: %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := run("describe", "orders"); code != 0 || !strings.Contains(out, "SHARD  GROUP  REPLICAS  LEADER") {
		t.Fatalf("describe: %d\n%s", code, out)
	}
	if code, out, _ := run("list"); code != 0 || !strings.Contains(out, "orders") || !strings.Contains(out, "strong") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	if code, _, errOut := run("create", "orders"); code != 1 || !strings.Contains(errOut, "CONFLICT") {
		t.Fatalf("second create: %d %s", code, errOut)
	}
	if code, _, errOut := run("create", "x", "--consistency", "eventual", "--replicas", "1", "--w", "2"); code != 1 || !strings.Contains(errOut, "INVALID w 2: want 1 to replicas (1)") {
		t.Fatalf("eventual with w > replicas: %d %s", code, errOut)
	}
	// A primary namespace with its own failover timeout, sent in ms.
	code, out, errOut = run("create", "jobs", "--replication", "primary", "--replicas", "1", "--shards", "1", "--failover-timeout", "1.5s")
	if code != 0 || !strings.Contains(out, "namespace jobs: replication=primary") || !strings.Contains(out, " failover_timeout=1.5s\n") {
		t.Fatalf("create with --failover-timeout: %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := run("describe", "jobs", "--json"); code != 0 || !strings.Contains(out, `"failover_timeout_ms":1500`) {
		t.Fatalf("describe jobs --json: %d\n%s", code, out)
	}
	if code, _, errOut := run("create", "x", "--replication", "primary", "--replicas", "1", "--failover-timeout", "50ms"); code != 1 || !strings.Contains(errOut, "INVALID failover_timeout 50 ms") {
		t.Fatalf("create with a 50ms failover timeout: %d %s", code, errOut)
	}
	if code, out, _ := run("drop", "orders"); code != 0 || out != "dropped orders\n" {
		t.Fatalf("drop: %d %q", code, out)
	}
	if code, _, errOut := run("describe", "orders"); code != 1 || !strings.Contains(errOut, "NOT_FOUND") {
		t.Fatalf("describe after drop: %d %s", code, errOut)
	}
	for _, args := range [][]string{{}, {"rename", "a"}, {"create"}, {"list", "x"}, {"drop", "a", "b"},
		{"create", "a", "--failover-timeout", "1500us"}, {"create", "a", "--failover-timeout", "-1s"}} {
		if code, _, _ := run(args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	// A lone node has nothing to manage.
	lone := servertest.Start(t)
	m, _, stderr := testMain(t)
	if code := m.Run(context.Background(), []string{"namespace", "list", "--addr", lone.HTTPAddr(), "--json"}); code != 0 {
		t.Fatalf("list on a lone node: %d %s", code, stderr)
	}
	m, _, stderr = testMain(t)
	if code := m.Run(context.Background(), []string{"namespace", "create", "x", "--addr", lone.HTTPAddr()}); code != 1 || !strings.Contains(stderr.String(), "DISABLED") {
		t.Fatalf("create on a lone node: %d %s", code, stderr)
	}
}
