package leaderless

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
)

func TestHintCodecRoundTrip(t *testing.T) {
	for _, h := range []Hint{
		{Owner: "b"},
		{Owner: "node-7", Namespace: "users", Key: []byte("k\x00ey"), Value: []byte{0, 1, 2, 255},
			Version: LWW{Timestamp: hlc.Timestamp{WallNanos: 1_700_000_000_000_000_000, Logical: 7}, Node: "a"}, Expiry: 1_700_000_003_000_000_000},
		{Owner: "x", Version: LWW{Timestamp: hlc.Timestamp{WallNanos: math.MinInt64, Logical: math.MaxUint32}}, Expiry: math.MaxInt64},
		{Owner: "x", Expiry: -1},
	} {
		b := AppendHint([]byte("prefix"), h)
		got, err := DecodeHint(b[len("prefix"):])
		if err != nil {
			t.Fatalf("DecodeHint(AppendHint(%+v)): %v", h, err)
		}
		if !reflect.DeepEqual(got, h) {
			t.Errorf("round trip: got %+v, want %+v", got, h)
		}
	}
}

// The record format must never change silently: a record written by an
// older node must decode on a newer one.
func TestHintCodecGolden(t *testing.T) {
	h := Hint{Owner: "b", Namespace: "n", Key: []byte("k"), Value: []byte("v"),
		Version: LWW{Timestamp: hlc.Timestamp{WallNanos: 3, Logical: 1}, Node: "a"}, Expiry: 10}
	want := []byte{1, 1, 'b', 1, 'n', 1, 'k', 1, 'v', 6, 1, 1, 'a', 20}
	if got := AppendHint(nil, h); !bytes.Equal(got, want) {
		t.Errorf("AppendHint: got %v, want %v", got, want)
	}
}

func TestDecodeHintRejects(t *testing.T) {
	good := AppendHint(nil, Hint{Owner: "b", Key: []byte("k"), Value: []byte("v"), Expiry: 5})
	overLogical := append([]byte{1, 1, 'b', 0, 0, 0, 0}, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{2}, good[1:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(append([]byte(nil), good...), 0)},
		{"length past the end", []byte{1, 200, 'b'}},
		{"huge length", []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
		{"varint overflow", []byte{1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}},
		{"logical over 32 bits", overLogical},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeHint(tc.b); !errors.Is(err, ErrBadHint) {
				t.Errorf("DecodeHint(%v): got %v, want ErrBadHint", tc.b, err)
			}
		})
	}
}

// DecodeHint never panics, and whatever it accepts survives a round trip.
func FuzzDecodeHint(f *testing.F) {
	f.Add(AppendHint(nil, Hint{Owner: "b", Namespace: "n", Key: []byte("k"), Value: []byte("v"), Expiry: 5}))
	f.Add(AppendHint(nil, Hint{}))
	f.Add([]byte{1, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHint(b)
		if err != nil {
			if !errors.Is(err, ErrBadHint) {
				t.Fatalf("error %v does not wrap ErrBadHint", err)
			}
			return
		}
		again, err := DecodeHint(AppendHint(nil, h))
		if err != nil {
			t.Fatalf("re-decoding %+v: %v", h, err)
		}
		if !reflect.DeepEqual(again, h) {
			t.Fatalf("round trip: got %+v, want %+v", again, h)
		}
	})
}
