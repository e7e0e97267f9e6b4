package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestParseEtcdTarget(t *testing.T) {
	for _, tc := range []struct {
		spec      string
		endpoints string
		conns     int
		ok        bool
	}{
		{"e=etcd://127.0.0.1:2379", "127.0.0.1:2379", 0, true},
		{"e=etcd://127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379", "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379", 0, true},
		{"e=etcd://127.0.0.1:2379,127.0.0.1:22379?conns=8", "127.0.0.1:2379,127.0.0.1:22379", 8, true},
		{"e=etcd://127.0.0.1:2379?conns=0", "", 0, false},
		{"e=etcd://127.0.0.1:2379?conns=x", "", 0, false},
		{"e=etcd://127.0.0.1:2379?balance=1", "", 0, false},
		{"e=etcd://127.0.0.1:2379,localhost", "", 0, false},
		{"e=etcd://", "", 0, false},
	} {
		tg, err := ParseTarget(tc.spec)
		if (err == nil) != tc.ok {
			t.Errorf("%q: got error %v, want ok=%v", tc.spec, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		et, isEtcd := tg.(*EtcdTarget)
		if !isEtcd {
			t.Errorf("%q: got %T, want *EtcdTarget", tc.spec, tg)
			continue
		}
		if et.Kind() != "etcd" || et.Addr() != tc.endpoints || et.Conns() != tc.conns {
			t.Errorf("%q: got %s %s conns=%d, want etcd %s conns=%d", tc.spec, et.Kind(), et.Addr(), et.Conns(), tc.endpoints, tc.conns)
		}
	}
}

func TestEtcdRefusesPipeline(t *testing.T) {
	tg, err := ParseTarget("e=etcd://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	w := Presets["A"]
	w.Keys = 10
	// Refused before connecting: nothing listens on port 1.
	_, err = Run(context.Background(), Config{Targets: []Target{tg}, Workload: w, Pipeline: 4, Ops: 10})
	if err == nil || !strings.Contains(err.Error(), "cannot pipeline") {
		t.Fatalf("got %v, want a refusal to pipeline", err)
	}
}

func TestEtcdErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{context.DeadlineExceeded, "TIMEOUT"},
		{context.Canceled, "CANCELED"},
		{rpctypes.ErrNoLeader, "UNAVAILABLE"},
		{rpctypes.ErrRequestTooLarge, "INVALID_ARGUMENT"},
		{rpctypes.ErrNoSpace, "RESOURCE_EXHAUSTED"},
		{status.Error(codes.Unavailable, "connection refused"), "UNAVAILABLE"},
		{status.Error(codes.DeadlineExceeded, "slow"), "TIMEOUT"},
		{status.Error(codes.FailedPrecondition, "x"), "FAILED_PRECONDITION"},
		{errors.New("connection reset"), "IO"},
	} {
		if got := ErrorCode(etcdError(tc.err)); got != tc.want {
			t.Errorf("ErrorCode(etcdError(%v)): got %q, want %q", tc.err, got, tc.want)
		}
	}
}

// startEtcd runs a one-member etcd on free loopback ports with extra
// flags, or skips the test when etcd is not on PATH. It returns the
// client endpoint.
func startEtcd(t *testing.T, extra ...string) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd not on PATH: skipping the etcd end-to-end run")
	}
	ports := freePorts(t, 2)
	client, peer := "http://"+ports[0], "http://"+ports[1]
	args := append([]string{
		"--name", "bench", "--data-dir", t.TempDir(),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "bench=" + peer, "--initial-cluster-state", "new",
		"--heartbeat-interval", "10", "--election-timeout", "100",
		"--logger", "zap", "--log-level", "error",
	}, extra...)
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{ports[0]}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := c.Get(ctx, "ready")
		cancel()
		if err == nil {
			return ports[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd on %s not answering after 20s: %v", ports[0], err)
		}
		time.Sleep(20 * time.Millisecond) // polling for readiness, with a deadline
	}
}

// freePorts reserves n loopback ports by binding and releasing them; etcd
// needs its peer address before it starts.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

func freeAddr(t *testing.T) string { return freePorts(t, 1)[0] }

func TestEndToEndEtcd(t *testing.T) {
	// Requests above --max-request-bytes are refused by the server, which
	// the error subtest relies on.
	ep := startEtcd(t, "--max-request-bytes", "4096")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	ctx := context.Background()
	own, err := ParseTarget("etcd-own=etcd://" + ep + "," + ep)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := ParseTarget("etcd-shared=etcd://" + ep + "?conns=2")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("closed", func(t *testing.T) {
		w := Presets["A"]
		w.Keys, w.ValueSize, w.Namespace, w.DeleteRatio, w.ReadRatio = 200, 256, "benchns", 0.05, 0.45
		runs, err := Run(ctx, Config{
			Targets: []Target{own, shared}, Workload: w, Clients: 3,
			Duration: time.Second, Rounds: 2, Interval: 250 * time.Millisecond, Preload: true, Seed: seed,
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 2 {
			t.Fatalf("got %d results, want 2", len(runs))
		}
		for _, r := range runs {
			checkRun(t, r, "read", "write", "delete")
			if !strings.HasPrefix(r.ServerVersion, "etcd 3.") {
				t.Errorf("%s: server version %q, want etcd 3.x", r.Target, r.ServerVersion)
			}
			if r.Kind != "etcd" {
				t.Errorf("%s: kind %q, want etcd", r.Target, r.Kind)
			}
		}
		// The shared clients were closed with the last connection.
		st := shared.(*EtcdTarget)
		st.mu.Lock()
		left := len(st.mu.shared)
		st.mu.Unlock()
		if left != 0 {
			t.Errorf("got %d shared clients open after the run, want 0", left)
		}
		// The keys went under the namespace's prefix, with the values
		// written.
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		resp, err := c.Get(ctx, "benchns/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count < 100 || resp.Count > 200 {
			t.Errorf("got %d keys under benchns/, want most of 200", resp.Count)
		}
		for _, kv := range resp.Kvs {
			if len(kv.Value) != 256 {
				t.Fatalf("key %q: got a %d-byte value, want 256", kv.Key, len(kv.Value))
			}
		}
	})

	t.Run("errors-counted", func(t *testing.T) {
		w := Workload{ReadRatio: 0, Keys: 10, ValueSize: 8192}
		runs, err := Run(ctx, Config{Targets: []Target{own}, Workload: w, Clients: 1, Ops: 20, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if got := runs[0].Errors["INVALID_ARGUMENT"]; got != 20 {
			t.Errorf("INVALID_ARGUMENT errors: got %d (all: %v), want 20", got, runs[0].Errors)
		}
	})

	t.Run("down", func(t *testing.T) {
		dead, err := ParseTarget(fmt.Sprintf("dead=etcd://%s", freeAddr(t)))
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		if _, err := dead.Connect(cctx, ConnOptions{}, 0); err == nil {
			t.Fatal("connect to a closed port: got nil error")
		}
	})
}
