package primary

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/kv"
)

func randBytes(r *rand.Rand, n int) []byte {
	if n == 0 {
		return nil
	}
	b := make([]byte, r.IntN(n)+1)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

func randHistory(r *rand.Rand) []failover.EpochStart {
	var h []failover.EpochStart
	for i := range r.IntN(4) {
		h = append(h, failover.EpochStart{Epoch: failover.Epoch(i + 1), Start: failover.LSN(r.Uint64N(1 << 40))})
	}
	return h
}

// TestWireRoundTrip encodes random messages and records and checks that
// decoding gives them back, and that every truncation fails cleanly.
func TestWireRoundTrip(t *testing.T) {
	const seed = 42
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range 300 {
		var ents []entry
		for range r.IntN(4) {
			ents = append(ents, entry{LSN: failover.LSN(r.Uint64()), Epoch: failover.Epoch(r.Uint64N(9)), Data: randBytes(r, 40)})
		}
		am := appendMsg{Shard: r.IntN(1000), Epoch: failover.Epoch(r.Uint64()), PrimaryLast: failover.LSN(r.Uint64()),
			TailStart: failover.LSN(r.Uint64()), History: randHistory(r), Entries: ents}
		ack := ackMsg{Shard: r.IntN(9), Epoch: failover.Epoch(r.Uint64()), Applied: failover.LSN(r.Uint64()), Reset: r.IntN(2) == 0}
		sm := staleMsg{Shard: r.IntN(9), Epoch: failover.Epoch(r.Uint64())}
		sr := snapshotReq{Shard: r.IntN(9), Epoch: failover.Epoch(r.Uint64())}
		var rows []row
		for range r.IntN(4) {
			rows = append(rows, row{NS: "ns", Key: randBytes(r, 10), Value: kv.Value{Data: randBytes(r, 20), Version: r.Uint64N(1 << 50),
				Created: r.Uint64N(99), Timestamp: hlc.Timestamp{WallNanos: r.Int64N(1 << 60), Logical: r.Uint32N(9)}, ExpireAt: r.Int64N(1 << 40)}})
		}
		snap := snapshot{Epoch: failover.Epoch(r.Uint64()), Last: failover.LSN(r.Uint64()), LastEpoch: 3, History: randHistory(r), Rows: rows}
		st := state{Epoch: 4, Primary: 2, Last: failover.LSN(r.Uint64()), LastEpoch: 3, TailStart: 9, NeedSnapshot: r.IntN(2) == 0,
			Lost: r.Uint64(), LostUnrecorded: r.Uint64(), History: randHistory(r)}
		en := entry{LSN: 77, Epoch: 5, Data: randBytes(r, 30)}

		cases := []struct {
			name   string
			enc    []byte
			want   any
			decode func([]byte) (any, error)
		}{
			{"append", encodeAppend(&am)[1:], am, func(b []byte) (any, error) { return decodeAppend(b) }},
			{"ack", encodeAck(ack)[1:], ack, func(b []byte) (any, error) { return decodeAck(b) }},
			{"stale", encodeStale(sm)[1:], sm, func(b []byte) (any, error) { return decodeStale(b) }},
			{"snapshot request", encodeSnapshotReq(sr)[1:], sr, func(b []byte) (any, error) { return decodeSnapshotReq(b) }},
			{"snapshot", encodeSnapshot(&snap), snap, func(b []byte) (any, error) { return decodeSnapshot(b) }},
			{"state", encodeState(&st), st, func(b []byte) (any, error) { return decodeState(b) }},
			{"log mark", encodeLogMark(en), en, func(b []byte) (any, error) { return decodeLogMark(77, b) }},
		}
		for _, tc := range cases {
			got, err := tc.decode(tc.enc)
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("seed %d, case %d, %s: got %+v, %v; want %+v", seed, i, tc.name, got, err, tc.want)
			}
			for cut := range len(tc.enc) {
				if _, err := tc.decode(tc.enc[:cut]); !errors.Is(err, ErrCorrupt) && !(tc.name == "snapshot" && err != nil) {
					t.Fatalf("seed %d, case %d, %s cut at %d of %d: got %v, want %v", seed, i, tc.name, cut, len(tc.enc), err, ErrCorrupt)
				}
			}
		}
	}
}

// TestDivergence compares the first diverging LSN of two histories with
// an entry-by-entry oracle.
func TestDivergence(t *testing.T) {
	const seed = 5
	r := rand.New(rand.NewPCG(seed, 2))
	hist := func() []failover.EpochStart {
		h := []failover.EpochStart{{Epoch: 1, Start: 1}}
		for e := failover.Epoch(2); e < 6; e++ {
			if r.IntN(2) == 0 {
				h = append(h, failover.EpochStart{Epoch: e, Start: h[len(h)-1].Start + failover.LSN(r.IntN(5))})
			}
		}
		return h
	}
	for i := range 2000 {
		own, theirs := hist(), hist()
		if r.IntN(3) == 0 {
			theirs = append(append([]failover.EpochStart(nil), own...), failover.EpochStart{Epoch: 9, Start: own[len(own)-1].Start + failover.LSN(r.IntN(4))})
		}
		last := failover.LSN(r.IntN(20))
		var want failover.LSN
		for l := failover.LSN(1); l <= last; l++ {
			if epochAt(own, l) != epochAt(theirs, l) {
				want = l
				break
			}
		}
		got, ok := divergence(own, theirs, last)
		if ok != (want != 0) || got != want {
			t.Fatalf("seed %d, case %d: divergence(%v, %v, %d) = %d, %v; want %d", seed, i, own, theirs, last, got, ok, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.NodeID = 1
	tests := []struct {
		name   string
		mutate func(*Config)
		valid  bool
	}{
		{"default", func(*Config) {}, true},
		{"no node", func(c *Config) { c.NodeID = 0 }, false},
		{"no shards", func(c *Config) { c.Shards = 0 }, false},
		{"heartbeat as slow as max lag", func(c *Config) { c.HeartbeatInterval = c.Failover.MaxLagTime }, false},
		{"batch above inflight", func(c *Config) { c.MaxBatchEntries = c.MaxInflight + 1 }, false},
		{"tail below inflight", func(c *Config) { c.TailEntries = c.MaxInflight - 1 }, false},
		{"bad failover", func(c *Config) { c.Failover.LeaseDuration = 0 }, false},
		{"no rpc timeout", func(c *Config) { c.RPCTimeout = 0 }, false},
		{"no write batch", func(c *Config) { c.MaxWriteBatch = 0 }, false},
	}
	for _, tc := range tests {
		c := ok
		tc.mutate(&c)
		err := c.Validate()
		if (err == nil) != tc.valid || (err != nil && !errors.Is(err, ErrInvalidConfig)) {
			t.Errorf("%s: got %v, want valid=%v", tc.name, err, tc.valid)
		}
	}
}
