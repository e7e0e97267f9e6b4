package node

import (
	"context"
	"fmt"
	"hash/fnv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/transport"
	"github.com/fulcrumdb/fulcrum/internal/transport/simnet"
	"github.com/fulcrumdb/fulcrum/internal/versionvec"
)

const testNS = "ns"

// cluster is a set of engines over one simnet network, each with a
// MemStore, run inside a synctest bubble (virtual time).
type cluster struct {
	t       *testing.T
	net     *simnet.Network
	ids     []uint64
	engines map[uint64]*Engine
	stores  map[uint64]*MemStore
}

// rotatingPreference spreads keys over the nodes: the list starts at a
// node chosen by the key's hash and wraps around.
func rotatingPreference(ids []uint64) func(string, []byte) []uint64 {
	return func(ns string, key []byte) []uint64 {
		h := fnv.New32a()
		h.Write(key)
		start := int(h.Sum32() % uint32(len(ids)))
		out := make([]uint64, 0, len(ids))
		for i := range ids {
			out = append(out, ids[(start+i)%len(ids)])
		}
		return out
	}
}

// fixedPreference gives every key the preference list ids.
func fixedPreference(ids []uint64) func(string, []byte) []uint64 {
	return func(string, []byte) []uint64 { return append([]uint64(nil), ids...) }
}

// inBubble runs f with a cluster of nodes 1..n in a synctest bubble and
// closes everything at the end (synctest fails the test if a goroutine
// survives).
func inBubble(t *testing.T, seed int64, n int, mod func(*Config), f func(t *testing.T, c *cluster)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		c := &cluster{t: t, net: simnet.New(seed), engines: map[uint64]*Engine{}, stores: map[uint64]*MemStore{}}
		for i := 1; i <= n; i++ {
			c.ids = append(c.ids, uint64(i))
		}
		for _, id := range c.ids {
			st := NewMemStore()
			cfg := Config{
				Self:            id,
				Endpoint:        c.net.Endpoint(transport.NodeID(id)),
				Store:           st,
				Clock:           hlc.New(func() int64 { return time.Now().UnixNano() }),
				Preference:      rotatingPreference(c.ids),
				HandoffInterval: 50 * time.Millisecond,
			}
			if mod != nil {
				mod(&cfg)
			}
			e, err := New(cfg)
			if err != nil {
				t.Fatalf("New(%d): %v", id, err)
			}
			c.engines[id], c.stores[id] = e, st
		}
		defer func() {
			for _, e := range c.engines {
				e.Close()
			}
			c.net.Close()
			if t.Failed() {
				t.Logf("seed %d", seed)
			}
		}()
		f(t, c)
	})
}

// state returns node id's stored state of key.
func (c *cluster) state(id uint64, key string) (versionvec.Siblings, bool) {
	c.t.Helper()
	raw, ok, err := c.stores[id].Get(context.Background(), testNS, []byte(key))
	if err != nil {
		c.t.Fatalf("node %d get %q: %v", id, key, err)
	}
	if !ok {
		return versionvec.Siblings{}, false
	}
	st, err := versionvec.DecodeSiblings(raw)
	if err != nil {
		c.t.Fatalf("node %d state of %q: %v", id, key, err)
	}
	return st, true
}

// waitFor polls cond until it holds or timeout (virtual) passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // virtual time inside the bubble
	}
}

func put(e *Engine, key, value string, opts WriteOptions) (WriteResult, error) {
	return e.Put(context.Background(), testNS, []byte(key), []byte(value), opts)
}

func get(e *Engine, key string, opts ReadOptions) (ReadResult, error) {
	return e.Get(context.Background(), testNS, []byte(key), opts)
}

func describe(r ReadResult) string {
	if !r.Found {
		return "absent"
	}
	return fmt.Sprintf("%q", r.Value)
}
