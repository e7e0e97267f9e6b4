package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fulcrumdb/fulcrum/internal/config"
)

func testConfig(t *testing.T) config.Config {
	cfg := config.Default()
	cfg.Data.Dir = t.TempDir()
	cfg.RESP.Addr = "127.0.0.1:0"
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.ShutdownTimeout = config.Duration(5 * time.Second)
	return cfg
}

// startNode runs a node until the test ends and returns it once ready,
// with a function that stops it and returns Run's error (idempotent).
func startNode(t *testing.T, cfg config.Config) (*Server, func() error) {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = s.Run(ctx)
	}()
	select {
	case <-s.Ready():
	case <-done:
		t.Fatalf("node stopped before ready: %v", runErr)
	}
	stop := func() error {
		cancel()
		<-done
		return runErr
	}
	t.Cleanup(func() { stop() })
	return s, stop
}

func TestNodeServesRESPAndHTTPOneStore(t *testing.T) {
	cfg := testConfig(t)
	s, _ := startNode(t, cfg)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: s.RESPAddr()})
	defer rdb.Close()
	if err := rdb.Set(ctx, "greeting", "hello", 0).Err(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.HTTPAddr() + "/v1/namespaces/default/keys/greeting")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello" {
		t.Fatalf("HTTP read of a RESP write: got %d %q, want 200 hello", resp.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodPut, "http://"+s.HTTPAddr()+"/v1/namespaces/default/keys/fromhttp", strings.NewReader("v"))
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, err := rdb.Get(ctx, "fromhttp").Result(); err != nil || got != "v" {
		t.Fatalf("RESP read of an HTTP write: got %q %v", got, err)
	}
	// Persistence section from storage reaches INFO.
	info, err := rdb.Info(ctx, "persistence").Result()
	if err != nil || !strings.Contains(info, "fulcrum_sync:always") {
		t.Fatalf("INFO persistence: %q %v", info, err)
	}
	// Storage metrics reach /metrics.
	resp, err = http.Get("http://" + s.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"fulcrum_storage_keys{namespace=\"default\"} 2", "fulcrum_connections_total{proto=\"http\"}", "fulcrum_storage_wal_fsync_duration_seconds_count", "fulcrum_requests_total"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
}

// Cancelling Run drains: writes in flight complete (and are acknowledged)
// or fail cleanly, and every acknowledged write is there after a restart.
func TestGracefulShutdownKeepsAcknowledgedWrites(t *testing.T) {
	cfg := testConfig(t)
	s, stop := startNode(t, cfg)
	ctx := context.Background()
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rdb := redis.NewClient(&redis.Options{Addr: s.RESPAddr(), MaxRetries: -1})
			defer rdb.Close()
			for i := 0; i < 100_000; i++ {
				k := fmt.Sprintf("c%d-%d", c, i)
				if err := rdb.Set(ctx, k, k, 0).Err(); err != nil {
					return
				}
				mu.Lock()
				acked = append(acked, k)
				mu.Unlock()
			}
		}(c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 500 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	wg.Wait()
	s2, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, k := range acked {
		if _, ok, err := s2.store.Get(ctx, "default", []byte(k)); err != nil || !ok {
			t.Fatalf("acknowledged write %q missing after graceful restart (%v)", k, err)
		}
	}
	t.Logf("%d acknowledged writes all present after restart", len(acked))
}

func TestBadConfigStartsNothing(t *testing.T) {
	cfg := testConfig(t)
	cfg.Data.Sync = "sometimes"
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "data.sync") {
		t.Fatalf("got %v, want an error naming data.sync", err)
	}
}

func TestPortInUseFailsRun(t *testing.T) {
	cfg := testConfig(t)
	s, _ := startNode(t, cfg)
	cfg2 := testConfig(t)
	cfg2.RESP.Addr = s.RESPAddr()
	s2, err := New(cfg2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "resp listener") {
		t.Fatalf("got %v, want a resp listener error", err)
	}
	if _, err := s2.store.Apply(context.Background(), kvBatchForTest()); !errors.Is(err, errClosedForTest) {
		t.Fatalf("storage left open after failed Run: %v", err)
	}
}
