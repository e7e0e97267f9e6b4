package resp

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fulcrumdb/fulcrum/internal/fakeclock"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/metrics"
	"github.com/fulcrumdb/fulcrum/internal/storage"
)

var _ Store = (*storage.Store)(nil)

// fakeClock is the one clock a test shares with its store and front end.
type fakeClock = fakeclock.Clock

func newFakeClock() *fakeClock { return fakeclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) }

type testServer struct {
	srv     *Server
	store   *storage.Store
	clock   *fakeClock
	addr    string
	metrics *metrics.Metrics
	done    chan error
}

// startServer runs a Server on 127.0.0.1:0 over a real store on a memory
// filesystem. mod adjusts the options before New. Cleanup shuts it down.
func startServer(t testing.TB, mod func(*Options), storeMod ...func(*storage.Options)) *testServer {
	t.Helper()
	clock := newFakeClock()
	sopts := storage.Options{
		FS: vfs.NewMem(), Dir: "/data", Now: clock.Now, Sync: storage.SyncNone,
		SweepInterval: time.Hour,
	}
	for _, f := range storeMod {
		f(&sopts)
	}
	st, err := storage.Open(sopts)
	if err != nil {
		t.Fatalf("storage.Open: %v", err)
	}
	m := metrics.New()
	opts := Options{Store: st, Now: clock.Now, Metrics: m, Version: "test", Limits: sopts.Limits}
	if mod != nil {
		mod(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		st.Close()
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ts := &testServer{srv: srv, store: st, clock: clock, addr: ln.Addr().String(), metrics: m, done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-ts.done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := st.Close(); err != nil && !errors.Is(err, kv.ErrUnavailable) {
			t.Errorf("store Close: %v", err)
		}
	})
	return ts
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval, not a wait for state
	}
}
