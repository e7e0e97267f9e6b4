package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backend answers every line with its name and the line.
func backend(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s %s\n", name, sc.Text())
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// view serves the two documents the proxy reads, with the primary given
// by primary (0: none).
func view(t *testing.T, primary *atomic.Uint64, addrs map[uint64]string) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/namespaces/orders", func(w http.ResponseWriter, r *http.Request) {
		p := primary.Load()
		fmt.Fprintf(w, `{"name":"orders","policy":{"replication":"primary"},"shards":[{"shard":0,"leader":%d},{"shard":1,"leader":%d}]}`, p, p)
	})
	mux.HandleFunc("/v1/namespaces/plain", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"name":"plain","policy":{"consistency":"strong"},"shards":[{"shard":0,"leader":1}]}`)
	})
	mux.HandleFunc("/v1/cluster", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"members":[`)
		sep := ""
		for id, a := range addrs {
			_, port, _ := net.SplitHostPort(a)
			// Members listen on every address: the proxy dials the peer host.
			fmt.Fprintf(w, `%s{"id":%d,"peer_addr":"127.0.0.1:1","resp_addr":"0.0.0.0:%s"}`, sep, id, port)
			sep = ","
		}
		fmt.Fprint(w, `]}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func roundTrip(c net.Conn, line string) (string, error) {
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintln(c, line); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	s, err := r.ReadString('\n')
	return s, err
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling the proxy's view, under a deadline
	}
}

func TestProxyFollowsTheActive(t *testing.T) {
	a, b := backend(t, "A"), backend(t, "B")
	var primary atomic.Uint64
	viewURL := view(t, &primary, map[uint64]string{1: a, 2: b})
	// The first node is down: the proxy asks the next.
	p, err := New(Config{Listen: "127.0.0.1:0", Nodes: []string{"http://127.0.0.1:1", viewURL}, Namespace: "orders", Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// No primary yet: connections are closed at once.
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(c, "hello"); err == nil {
		t.Fatalf("with no active node, got %q", got)
	}
	c.Close()

	primary.Store(1)
	waitFor(t, "target node 1", func() bool { return p.Target().Node == 1 })
	c, err = net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, "x"); err != nil || got != "A x\n" {
		t.Fatalf("through the proxy: %q %v, want from A", got, err)
	}
	// Failover: node 2 becomes primary; the open pipe is closed and a new
	// connection reaches B.
	primary.Store(2)
	waitFor(t, "target node 2", func() bool { return p.Target().Node == 2 })
	if got, err := roundTrip(c, "y"); err == nil {
		t.Fatalf("the pipe to the old active stayed open: %q", got)
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, err := roundTrip(c2, "z"); err != nil || got != "B z\n" {
		t.Fatalf("after the failover: %q %v, want from B", got, err)
	}
	// The view losing its primary (a failover under way) keeps the target.
	primary.Store(0)
	time.Sleep(50 * time.Millisecond) // several polls: nothing may change
	if got := p.Target().Node; got != 2 {
		t.Fatalf("target moved to %d with no primary in the view", got)
	}
}

func TestProxyConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Nodes: []string{"http://a:1"}, Namespace: "x"},
		{Listen: "127.0.0.1:0", Namespace: "x"},
		{Listen: "127.0.0.1:0", Nodes: []string{"http://a:1"}},
		{Listen: "127.0.0.1:0", Nodes: []string{"a:1"}, Namespace: "x"},
		{Listen: "127.0.0.1:0", Nodes: []string{"http://a:1"}, Namespace: "x", Poll: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v): no error", cfg)
		}
	}
}

func TestResolveRefusesOtherNamespaces(t *testing.T) {
	var primary atomic.Uint64
	u := view(t, &primary, map[uint64]string{1: "127.0.0.1:9"})
	p, err := New(Config{Listen: "127.0.0.1:0", Nodes: []string{u}, Namespace: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.ln.Close()
	if _, err := p.resolve(context.Background(), u); err == nil {
		t.Fatal("a strong namespace was followed")
	}
}

func TestDialable(t *testing.T) {
	for _, tc := range []struct{ listen, peer, want string }{
		{"10.0.0.1:6379", "10.0.0.1:7000", "10.0.0.1:6379"},
		{"0.0.0.0:6379", "10.0.0.2:7000", "10.0.0.2:6379"},
		{":6379", "10.0.0.3:7000", "10.0.0.3:6379"},
		{"[::]:6379", "[fd00::1]:7000", "[fd00::1]:6379"},
	} {
		if got, err := dialable(tc.listen, tc.peer); err != nil || got != tc.want {
			t.Errorf("dialable(%q, %q) = %q %v, want %q", tc.listen, tc.peer, got, err, tc.want)
		}
	}
	if _, err := dialable("nonsense", "x"); err == nil {
		t.Error("dialable(nonsense): no error")
	}
}
