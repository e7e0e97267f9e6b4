package node

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/merkle"
	"github.com/fulcrumdb/fulcrum/internal/versionvec"
)

func sampleState() []byte {
	st, _ := versionvec.Siblings{}.Update(nil, 7, []byte("value"), hlc.Timestamp{WallNanos: 42, Logical: 3})
	return st.Encode()
}

func TestRequestRoundTrip(t *testing.T) {
	tests := []request{
		{op: opPut, ns: "ns", key: []byte("k"), state: sampleState()},
		{op: opPut, ns: "ns", key: []byte("k"), hintFor: 9, lww: true, state: sampleState()},
		{op: opPut, ns: "", key: nil, state: nil},
		{op: opGet, ns: "ns", key: []byte("key")},
		{op: opGet, ns: "ns", key: []byte("key"), hintFor: 1 << 60},
		{op: opProbe},
		{op: opTree, ns: "ns", shard: 3, query: merkle.Query{Depth: 10, Level: 4, Nodes: []int{0, 5, 15}}},
		{op: opTree, ns: "ns", query: merkle.Query{Depth: 10}},
		{op: opRange, ns: "ns", shard: 1, rng: merkle.Range{First: 1 << 60, Last: ^uint64(0)}},
		{op: opRanges, ns: "ns"},
		{op: opRanges, ns: "ns", after: []byte{}, spans: []span{{shard: 0, rng: merkle.Range{First: 3, Last: 3}}}},
		{op: opRanges, ns: "ns", after: []byte("k7"), spans: []span{{shard: 2, rng: merkle.Range{Last: 9}}, {shard: 1 << 20, rng: merkle.Range{First: 1 << 63, Last: ^uint64(0)}}}},
	}
	for _, want := range tests {
		got, err := decodeRequest(appendRequest(nil, want))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("round trip of %+v: got %+v, %v", want, got, err)
		}
	}
	for _, want := range []merkle.Answer{{Level: 2, Hashes: []uint64{1, 0, ^uint64(0)}}, {}} {
		got, err := decodeAnswer(appendAnswer(nil, want))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("round trip of %+v: got %+v, %v", want, got, err)
		}
	}
	for _, want := range [][]Entry{nil, {{Key: []byte("k"), Value: sampleState()}, {Key: []byte("l")}}} {
		got, err := decodeEntries(appendEntries(nil, want))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("round trip of %+v: got %+v, %v", want, got, err)
		}
	}
	for _, want := range []rangesPage{{}, {next: []byte{}}, {entries: []Entry{{Key: []byte("k"), Value: sampleState()}}, next: []byte("k")}} {
		got, err := decodeRangesPage(appendRangesPage(nil, want))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("round trip of %+v: got %+v, %v", want, got, err)
		}
	}
	for _, want := range []getReply{{}, {found: true, state: sampleState()}} {
		got, err := decodeGetReply(appendGetReply(nil, want))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("round trip of %+v: got %+v, %v", want, got, err)
		}
	}
}

func TestRequestDecodeRejects(t *testing.T) {
	put := appendRequest(nil, request{op: opPut, ns: "ns", key: []byte("k"), state: sampleState()})
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown format", []byte{9, byte(opProbe)}},
		{"unknown op", []byte{wireFormat, 77}},
		{"truncated", put[:len(put)-1]},
		{"trailing byte", append(bytes.Clone(put), 0)},
		{"length past the end", []byte{wireFormat, byte(opGet), 200, 1}},
		{"unknown flag", []byte{wireFormat, byte(opPut), 0, 0, 0, 0x80, 0}},
		{"overlong uvarint", []byte{wireFormat, byte(opGet), 0x80, 0x00, 0, 0}},
		{"node count past the end", []byte{wireFormat, byte(opTree), 0, 0, 1, 1, 100, 1}},
		{"short range", []byte{wireFormat, byte(opRange), 0, 0, 1, 2, 3}},
		{"bad resume flag", []byte{wireFormat, byte(opRanges), 0, 2, 0}},
		{"span count past the end", []byte{wireFormat, byte(opRanges), 0, 0, 1, 0}},
		{"inverted span", appendRequest(nil, request{op: opRanges, spans: []span{{rng: merkle.Range{First: 2, Last: 1}}}})},
	}
	for _, tc := range tests {
		if _, err := decodeRequest(tc.b); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: got %v, want ErrBadMessage", tc.name, err)
		}
	}
	if _, err := decodeAnswer([]byte{0, 200, 1}); !errors.Is(err, ErrBadMessage) {
		t.Errorf("answer with a count past the end: got %v, want ErrBadMessage", err)
	}
	if _, err := decodeEntries([]byte{1, 1}); !errors.Is(err, ErrBadMessage) {
		t.Errorf("truncated entries: got %v, want ErrBadMessage", err)
	}
	if _, err := decodeRangesPage([]byte{0}); !errors.Is(err, ErrBadMessage) {
		t.Errorf("ranges page without its resume key: got %v, want ErrBadMessage", err)
	}
	if _, err := decodeGetReply([]byte{2}); !errors.Is(err, ErrBadMessage) {
		t.Errorf("get reply with found=2: got %v, want ErrBadMessage", err)
	}
}

// Decoding never panics, and whatever decodes re-encodes to the same bytes
// (the format has one encoding per message).
func FuzzDecodeRequest(f *testing.F) {
	f.Add(appendRequest(nil, request{op: opPut, ns: "ns", key: []byte("k"), hintFor: 3, lww: true, state: sampleState()}))
	f.Add(appendRequest(nil, request{op: opGet, ns: "ns", key: []byte("k")}))
	f.Add(appendRequest(nil, request{op: opProbe}))
	f.Add(appendGetReply(nil, getReply{found: true, state: sampleState()}))
	f.Add(appendRequest(nil, request{op: opTree, ns: "ns", shard: 2, query: merkle.Query{Depth: 8, Level: 3, Nodes: []int{1, 2}}}))
	f.Add(appendRequest(nil, request{op: opRange, ns: "ns", shard: 2, rng: merkle.Range{First: 5, Last: 9}}))
	f.Add(appendRequest(nil, request{op: opRanges, ns: "ns", after: []byte("k"), spans: []span{{shard: 1, rng: merkle.Range{First: 5, Last: 9}}}}))
	f.Add(appendRangesPage(nil, rangesPage{entries: []Entry{{Key: []byte("k"), Value: []byte("v")}}, next: []byte("k")}))
	f.Add(appendAnswer(nil, merkle.Answer{Level: 1, Hashes: []uint64{7, 8}}))
	f.Add(appendEntries(nil, []Entry{{Key: []byte("k"), Value: []byte("v")}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeRequest(b); err == nil {
			if again := appendRequest(nil, r); !bytes.Equal(again, b) {
				t.Fatalf("decoded %+v re-encodes to %x, want %x", r, again, b)
			}
		}
		if a, err := decodeAnswer(b); err == nil {
			if again := appendAnswer(nil, a); !bytes.Equal(again, b) {
				t.Fatalf("decoded %+v re-encodes to %x, want %x", a, again, b)
			}
		}
		if es, err := decodeEntries(b); err == nil {
			if again := appendEntries(nil, es); !bytes.Equal(again, b) {
				t.Fatalf("decoded %+v re-encodes to %x, want %x", es, again, b)
			}
		}
		if p, err := decodeRangesPage(b); err == nil {
			if again := appendRangesPage(nil, p); !bytes.Equal(again, b) {
				t.Fatalf("decoded %+v re-encodes to %x, want %x", p, again, b)
			}
		}
		if g, err := decodeGetReply(b); err == nil {
			if again := appendGetReply(nil, g); !bytes.Equal(again, b) {
				t.Fatalf("decoded %+v re-encodes to %x, want %x", g, again, b)
			}
		}
	})
}
