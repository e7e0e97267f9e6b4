package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/storage"
	"github.com/fulcrumdb/fulcrum/internal/transport"
	"github.com/fulcrumdb/fulcrum/internal/transport/simnet"
	"github.com/fulcrumdb/fulcrum/internal/versionvec"
)

// Both Store implementations behave alike: get/put/delete, and scans that
// page in key order and resume after the last key.
func TestStores(t *testing.T) {
	ps, err := storage.Open(storage.Options{Dir: t.TempDir(), Sync: storage.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	for name, s := range map[string]Store{"mem": NewMemStore(), "pebble": NewStorageStore(ps)} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			for i := range 5 {
				if err := s.Put(ctx, "ns", []byte(fmt.Sprintf("k%d", i)), []byte(fmt.Sprintf("v%d", i))); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Delete(ctx, "ns", []byte("k3")); err != nil {
				t.Fatal(err)
			}
			if v, ok, err := s.Get(ctx, "ns", []byte("k1")); err != nil || !ok || string(v) != "v1" {
				t.Errorf("get k1: got %q %v %v, want \"v1\"", v, ok, err)
			}
			if _, ok, _ := s.Get(ctx, "ns", []byte("k3")); ok {
				t.Errorf("get k3 after delete: got found, want absent")
			}
			var keys []string
			var after []byte
			for {
				page, next, err := s.Scan(ctx, "ns", after, 2)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range page {
					keys = append(keys, string(e.Key))
				}
				if next == nil {
					break
				}
				after = next
			}
			if got, want := fmt.Sprint(keys), "[k0 k1 k2 k4]"; got != want {
				t.Errorf("scan: got %s, want %s", got, want)
			}
		})
	}
}

// Hints are durable: an engine restarted over the same store finds the
// hints its previous incarnation held, and still delivers them.
func TestHintsSurviveRestart(t *testing.T) {
	ps, err := storage.Open(storage.Options{Dir: t.TempDir(), Sync: storage.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	net := simnet.New(21)
	defer net.Close()
	owner := NewMemStore()
	clock := hlc.New(func() int64 { return time.Now().UnixNano() })
	cfg := func(id uint64, s Store) Config {
		return Config{
			Self: id, Endpoint: net.Endpoint(transport.NodeID(id)), Store: s, Clock: clock,
			Preference: fixedPreference([]uint64{2, 1}), HandoffInterval: -1,
		}
	}
	fb, err := New(cfg(1, NewStorageStore(ps)))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := versionvec.Siblings{}.Update(nil, 2, []byte("v"), clock.Now())
	ctx := context.Background()
	if _, err := fb.handle(ctx, request{op: opPut, ns: "ns", key: []byte("k"), hintFor: 2, lww: true, state: st.Encode()}); err != nil {
		t.Fatalf("store hint: %v", err)
	}
	fb.Close()

	fb, err = New(cfg(1, NewStorageStore(ps)))
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	if got := fb.Stats().HintsPending; got != 1 {
		t.Fatalf("hints after restart: got %d, want 1", got)
	}
	ow, err := New(cfg(2, owner))
	if err != nil {
		t.Fatal(err)
	}
	defer ow.Close()
	if n, err := fb.HandoffOnce(ctx); n != 1 || err != nil {
		t.Fatalf("HandoffOnce: got %d, %v; want 1 delivered", n, err)
	}
	if v, ok, _ := owner.Get(ctx, "ns", []byte("k")); !ok {
		t.Errorf("owner after delivery: got %x, want the state", v)
	}
	if got := fb.Stats().HintsPending; got != 0 {
		t.Errorf("hints after delivery: got %d, want 0", got)
	}
}

func TestConfigValidate(t *testing.T) {
	net := simnet.New(22)
	defer net.Close()
	valid := func() Config {
		return Config{
			Self: 1, Endpoint: net.Endpoint(1), Store: NewMemStore(),
			Clock:      hlc.New(func() int64 { return time.Now().UnixNano() }),
			Preference: fixedPreference([]uint64{1}),
		}
	}
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"valid", func(*Config) {}, true},
		{"no self", func(c *Config) { c.Self = 0 }, false},
		{"self is not the endpoint's", func(c *Config) { c.Self = 2 }, false},
		{"no endpoint", func(c *Config) { c.Endpoint = nil }, false},
		{"no store", func(c *Config) { c.Store = nil }, false},
		{"no clock", func(c *Config) { c.Clock = nil }, false},
		{"no preference", func(c *Config) { c.Preference = nil }, false},
		{"shard without shards", func(c *Config) { c.Shard = testShard }, false},
		{"tree too deep", func(c *Config) { c.TreeDepth = 21 }, false},
	}
	for _, tc := range tests {
		cfg := valid()
		tc.mod(&cfg)
		if err := cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: got %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
