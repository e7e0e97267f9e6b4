package router

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/primary"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

func TestPrimaryGetCodec(t *testing.T) {
	for _, m := range []kv.ReadMeta{
		{Role: "replica", Epoch: 3, LagEntries: 7, Lag: -1},
		{Found: true, Value: []byte("v"), Version: 9, ExpireAt: 1234, Timestamp: 5e18, Logical: 2, Role: "primary", Epoch: 4, Lag: 250 * time.Millisecond},
	} {
		got, err := decodePrimaryGet(appendPrimaryGet(nil, m))
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Errorf("round trip of %+v: %+v %v", m, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {1}, {0}, {0, 1, 'x'}} {
		if _, err := decodePrimaryGet(bad); err == nil {
			t.Errorf("decodePrimaryGet(%v): no error", bad)
		}
	}
}

// refusingPrimaries is a primary engine that refuses the first refusals
// writes as not admitted (too few in-sync replicas), then takes them.
type refusingPrimaries struct {
	mu       sync.Mutex
	refusals int
	calls    int
}

func (p *refusingPrimaries) Write(ctx context.Context, shard int, b kv.Batch) ([]kv.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.calls <= p.refusals {
		return nil, kv.NotAdmitted(kv.Errorf(kv.CodeUnavailable, "shard %d: not enough in-sync replicas: have 0, need 1", shard))
	}
	return make([]kv.Result, len(b.Ops)), nil
}

func (p *refusingPrimaries) Read(ctx context.Context, shard int, ns string, key []byte, maxStaleness time.Duration) (primary.ReadResult, error) {
	return primary.ReadResult{}, nil
}

func (p *refusingPrimaries) Status(shard int) (primary.Status, error) {
	return primary.Status{Shard: shard, Role: primary.Primary, Primary: 2, Epoch: 1}, nil
}

// A write refused before entering any log for want of in-sync replicas
// (as right after a promotion) is retried, also across a forward, for
// admitPatience; a refusal that persists is answered with its own error.
func TestWritePrimaryRetriesNotAdmitted(t *testing.T) {
	ns := Namespace{Name: "orders", Shards: 1, Groups: []uint64{7}, Replicas: [][]uint64{{2, 3}}, Primaries: []uint64{2},
		Policy: kv.Policy{Replication: kv.ReplicationPrimary, Ack: kv.AckSync, Availability: kv.AvailabilityActivePassive, Replicas: 2, Shards: 1}}
	for _, tc := range []struct {
		name     string
		refusals int
		wantErr  bool
	}{
		{"brief", 3, false},
		{"persistent", 1 << 30, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng := &refusingPrimaries{refusals: tc.refusals}
			caller := &loopCaller{routers: map[transport.NodeID]*Router{}}
			for _, id := range []uint64{1, 2} {
				cfg := Config{Self: id, Engine: newFakeEngine(), Store: fakeStore{}, Transport: caller, Namespaces: []Namespace{ns}, Timeout: 3 * time.Second}
				if id == 2 {
					cfg.Primaries = eng
				} else {
					cfg.Primaries = &refusingPrimaries{} // holds no replica of the shard
				}
				r, err := New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				caller.routers[transport.NodeID(id)] = r
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			start := time.Now()
			_, err := caller.routers[1].Apply(ctx, kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "orders", Key: []byte("k"), Value: []byte("v")}}})
			switch {
			case tc.wantErr && (kv.CodeOf(err) != kv.CodeUnavailable || !strings.Contains(err.Error(), "not enough in-sync")):
				t.Fatalf("persistent refusal: got %v, want UNAVAILABLE not enough in-sync replicas", err)
			case tc.wantErr && time.Since(start) >= 3*time.Second:
				t.Fatalf("persistent refusal answered only at the deadline (%v)", time.Since(start))
			case !tc.wantErr && err != nil:
				t.Fatalf("brief refusal: %v (after %d calls)", err, eng.calls)
			case !tc.wantErr && eng.calls != tc.refusals+1:
				t.Fatalf("%d calls to the primary, want %d", eng.calls, tc.refusals+1)
			}
		})
	}
}

// An older node forwards primary writes as opPrimaryWrite and expects the
// results alone, with errors as the transport's error frame: still served.
func TestServeLegacyPrimaryWrite(t *testing.T) {
	ns := Namespace{Name: "orders", Shards: 1, Groups: []uint64{7}, Replicas: [][]uint64{{2, 3}}, Primaries: []uint64{2},
		Policy: kv.Policy{Replication: kv.ReplicationPrimary, Ack: kv.AckSync, Availability: kv.AvailabilityActivePassive, Replicas: 2, Shards: 1}}
	eng := &refusingPrimaries{refusals: 1}
	r, err := New(Config{Self: 2, Engine: newFakeEngine(), Store: fakeStore{}, Transport: &loopCaller{}, Namespaces: []Namespace{ns}, Primaries: eng})
	if err != nil {
		t.Fatal(err)
	}
	b := kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "orders", Key: []byte("k"), Value: []byte("v")}}}
	req := kv.AppendBatch(appendHeader(nil, opPrimaryWrite, 7), &b)
	if _, err := r.Serve(context.Background(), 1, transport.KindForward, req); !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("refused legacy write: got %v, want the engine's UNAVAILABLE", err)
	}
	reply, err := r.Serve(context.Background(), 1, transport.KindForward, req)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := kv.DecodeResults(reply); err != nil || len(res) != 1 {
		t.Fatalf("legacy reply: %v %v, want one result", res, err)
	}
}
