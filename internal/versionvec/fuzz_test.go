package versionvec

import (
	"bytes"
	"errors"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
)

// Decode never panics, fails only with ErrMalformed, and accepts exactly the
// canonical encodings: whatever it accepts re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	for _, v := range []Vector{nil, {1: 1}, {0: 9, 300: 1, 1 << 63: 1 << 40}, {1: 1_780_000_000_000_000, 2: 1<<56 - 1}} {
		f.Add(v.Encode())
	}
	f.Add([]byte{2, 2, 1, 1, 1})
	f.Add([]byte{0x80, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode(%x) error %v, want ErrMalformed", b, err)
			}
			return
		}
		if got := v.Encode(); !bytes.Equal(got, b) {
			t.Fatalf("Decode(%x) = %v, which encodes to %x, want the input", b, v, got)
		}
	})
}

// DecodeSiblings has the same contract, and what it accepts satisfies the
// state invariants that Sync relies on.
func FuzzDecodeSiblings(f *testing.F) {
	s, _ := Siblings{}.Update(nil, 1, []byte("hi"), hlc.Timestamp{WallNanos: -1, Logical: 2})
	s, _ = s.Delete(nil, 2, hlc.Timestamp{WallNanos: 3})
	f.Add(s.Encode())
	// Counters from a present-day clock (CounterFloor): 8-byte uvarints.
	big, _ := Siblings{}.Update(nil, 1, []byte("v"), hlc.Timestamp{WallNanos: 1_780_000_000_000_000_000})
	big, _ = big.Delete(big.Context(), 3, hlc.Timestamp{WallNanos: 1_780_000_000_000_001_000, Logical: 1})
	f.Add(big.Encode())
	f.Add(Siblings{}.Encode())
	f.Add([]byte{1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSiblings(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeSiblings(%x) error %v, want ErrMalformed", b, err)
			}
			return
		}
		if got := s.Encode(); !bytes.Equal(got, b) {
			t.Fatalf("DecodeSiblings(%x) = %v, which encodes to %x, want the input", b, s, got)
		}
		ctx := s.Context()
		for _, x := range s.Values() {
			if !ctx.Covers(x.Dot) {
				t.Fatalf("decoded sibling %v not covered by %v", x.Dot, ctx)
			}
		}
		if !Sync(s, s).Equal(s) {
			t.Fatalf("Sync(s, s) = %v, want %v", Sync(s, s), s)
		}
	})
}
