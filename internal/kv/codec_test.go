package kv

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
)

// gen builds seeded random values that reach every field and its edge
// cases: nil and empty slices, negative and extreme integers, -0 and NaN.
type gen struct{ r *rand.Rand }

func newGen(seed uint64) gen { return gen{rand.New(rand.NewPCG(seed, 0x636f646563))} }

func (g gen) bytes() []byte {
	switch g.r.IntN(5) {
	case 0:
		return nil
	case 1:
		return []byte{}
	case 2: // long enough for multi-byte lengths
		b := make([]byte, 120+g.r.IntN(300))
		for i := range b {
			b[i] = byte(g.r.Uint32())
		}
		return b
	}
	b := make([]byte, g.r.IntN(12))
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	return b
}

func (g gen) int64() int64 {
	switch g.r.IntN(6) {
	case 0:
		return 0
	case 1:
		return -1 - g.r.Int64N(1000)
	case 2:
		return math.MinInt64
	case 3:
		return math.MaxInt64
	case 4:
		return g.r.Int64N(1 << 20)
	}
	return int64(g.r.Uint64())
}

func (g gen) uint64() uint64 {
	switch g.r.IntN(4) {
	case 0:
		return 0
	case 1:
		return math.MaxUint64
	case 2:
		return g.r.Uint64N(300)
	}
	return g.r.Uint64()
}

func (g gen) float() float64 {
	switch g.r.IntN(8) {
	case 0:
		return 0
	case 1:
		return math.Copysign(0, -1)
	case 2:
		return math.NaN()
	case 3:
		return math.Inf(-1)
	case 4:
		return math.SmallestNonzeroFloat64
	case 5:
		return math.Float64frombits(0x7ff8_dead_beef_0001) // NaN with a payload
	}
	return (g.r.Float64() - 0.5) * 1e6
}

func (g gen) timestamp() hlc.Timestamp {
	if g.r.IntN(3) == 0 {
		return hlc.Timestamp{}
	}
	return hlc.Timestamp{WallNanos: g.int64(), Logical: g.r.Uint32() >> g.r.IntN(32)}
}

func (g gen) value() Value {
	if g.r.IntN(4) == 0 {
		return Value{}
	}
	return Value{Data: g.bytes(), Version: g.uint64(), Created: g.uint64(), Timestamp: g.timestamp(), ExpireAt: g.int64()}
}

func (g gen) op() Op {
	op := Op{
		Kind:      OpKind(g.r.IntN(14)), // a few unknown kinds too: the codec carries them
		Namespace: []string{"", DefaultNamespace, "ns-ü", strings.Repeat("n", 200)}[g.r.IntN(4)],
		Key:       g.bytes(),
		Value:     g.bytes(),
	}
	if g.r.IntN(2) == 0 { // the rest are usually zero; exercise both
		op.Cond = Cond(g.r.IntN(256))
		op.IfVersion = g.uint64()
		op.ExpireAt = g.int64()
		op.KeepTTL = g.r.IntN(2) == 0
		op.ExpireCond = ExpireCond(g.r.IntN(6))
		op.Delta = g.int64()
		op.DeltaFloat = g.float()
		op.Offset = g.int64()
		op.Restored = g.value()
	}
	return op
}

func (g gen) batch() Batch {
	b := Batch{
		Now:       g.int64(),
		Timestamp: g.timestamp(),
		AllAbsent: g.r.IntN(2) == 0,
		Revision:  g.uint64(),
		Shard:     int(g.int64()),
		Shards:    int(g.int64()),
	}
	switch n := g.r.IntN(6); n {
	case 0: // nil Ops
	case 1:
		b.Ops = []Op{}
	default:
		for range n - 1 {
			b.Ops = append(b.Ops, g.op())
		}
	}
	switch n := g.r.IntN(4); n {
	case 0: // nil Marks
	case 1:
		b.Marks = []Mark{}
	default:
		for range n - 1 {
			b.Marks = append(b.Marks, Mark{Key: g.bytes(), Value: g.bytes()})
		}
	}
	return b
}

// errPair returns an error and what it decodes to.
func (g gen) errPair() (err, want error) {
	switch g.r.IntN(7) {
	case 0, 1:
		return nil, nil
	case 2:
		e := Errorf(CodeTooLarge, "value is %d bytes", g.r.IntN(1e6))
		return e, &Error{Code: e.Code, Message: e.Message}
	case 3: // an *Error wrapped in context travels as the *Error
		return fmt.Errorf("apply: %w", Errorf(CodeConflict, "version")), &Error{Code: CodeConflict, Message: "version"}
	case 4:
		return ErrNotInteger, &Error{Code: CodeInvalid, Message: ErrNotInteger.Error(), Err: ErrNotInteger}
	case 5:
		return ErrNaN, &Error{Code: CodeInvalid, Message: ErrNaN.Error(), Err: ErrNaN}
	}
	// A code this build does not know (a newer node's) travels as is.
	code := Code(fmt.Sprint("FUTURE_", g.r.IntN(9)))
	return &Error{Code: code}, &Error{Code: code}
}

// results returns results and what they decode to.
func (g gen) results() (rs, want []Result) {
	switch n := g.r.IntN(5); n {
	case 0:
		return nil, nil
	case 1:
		return []Result{}, []Result{}
	default:
		for range n - 1 {
			r := Result{
				Applied:    g.r.IntN(2) == 0,
				Prev:       g.value(),
				PrevExists: g.r.IntN(2) == 0,
				Cur:        g.value(),
				Exists:     g.r.IntN(2) == 0,
				Count:      g.int64(),
			}
			w := r
			r.Err, w.Err = g.errPair()
			rs, want = append(rs, r), append(want, w)
		}
	}
	return rs, want
}

// sameBatch reports how got differs from want. Floats are compared by
// their bits, since reflect.DeepEqual finds NaN unequal to itself. Nil and
// empty slices must match: the codec preserves the difference.
func sameBatch(got, want Batch) error {
	got.Ops, want.Ops = slices.Clone(got.Ops), slices.Clone(want.Ops)
	if len(got.Ops) == len(want.Ops) {
		for i := range got.Ops {
			g, w := math.Float64bits(got.Ops[i].DeltaFloat), math.Float64bits(want.Ops[i].DeltaFloat)
			if g != w {
				return fmt.Errorf("op %d: got DeltaFloat bits %#x, want %#x", i, g, w)
			}
			got.Ops[i].DeltaFloat, want.Ops[i].DeltaFloat = 0, 0
		}
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("got %+v, want %+v", got, want)
	}
	return nil
}

func TestCodecBatchRoundTrip(t *testing.T) {
	const seed = 20240601
	g := newGen(seed)
	for i := range 2000 {
		want := g.batch()
		enc := AppendBatch([]byte("prefix"), &want)
		if string(enc[:6]) != "prefix" {
			t.Fatalf("AppendBatch overwrote dst")
		}
		got, err := DecodeBatch(enc[6:])
		if err != nil {
			t.Fatalf("seed %d, batch %d: DecodeBatch: %v", seed, i, err)
		}
		if err := sameBatch(got, want); err != nil {
			t.Fatalf("seed %d, batch %d: %v", seed, i, err)
		}
	}
}

func TestCodecResultsRoundTrip(t *testing.T) {
	const seed = 7
	g := newGen(seed)
	for i := range 2000 {
		rs, want := g.results()
		got, err := DecodeResults(AppendResults(nil, rs))
		if err != nil {
			t.Fatalf("seed %d, results %d: DecodeResults: %v", seed, i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d, results %d: got %+v, want %+v", seed, i, got, want)
		}
	}
}

func TestCodecValueStream(t *testing.T) {
	g := newGen(3)
	var want []Value
	var stream []byte
	for range 500 {
		v := g.value()
		want = append(want, v)
		stream = AppendValue(stream, v)
	}
	rest := stream
	for i, w := range want {
		var v Value
		var err error
		v, rest, err = DecodeValue(rest)
		if err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("value %d: got %+v, want %+v", i, v, w)
		}
	}
	if len(rest) != 0 {
		t.Fatalf("got %d bytes left over, want 0", len(rest))
	}
}

func TestCodecErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		code     Code
		msg      string
		sentinel error // must still match errors.Is after decoding
	}{
		{"nil", nil, "", "", nil},
		{"coded", Errorf(CodeUnavailable, "no quorum for shard %d", 3), CodeUnavailable, "no quorum for shard 3", ErrUnavailable},
		{"coded without message", ErrNotLeader, CodeNotLeader, "", ErrNotLeader},
		{"wrapped coded", fmt.Errorf("forward: %w", Errorf(CodeTooLarge, "big")), CodeTooLarge, "big", ErrTooLarge},
		{"not integer", ErrNotInteger, CodeInvalid, ErrNotInteger.Error(), ErrNotInteger},
		{"wrapped overflow", fmt.Errorf("incr: %w", ErrOverflow), CodeInvalid, "incr: " + ErrOverflow.Error(), ErrOverflow},
		{"deadline", context.DeadlineExceeded, CodeTimeout, "context deadline exceeded", context.DeadlineExceeded},
		{"plain", errors.New("disk on fire"), CodeInternal, "disk on fire", ErrInternal},
		{"not admitted", NotAdmitted(Errorf(CodeUnavailable, "shard 2: not enough in-sync replicas")), CodeUnavailable, "shard 2: not enough in-sync replicas", ErrNotAdmitted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := AppendError(nil, tc.err)
			got, rest, err := DecodeError(append(enc, 0xAB))
			if err != nil {
				t.Fatalf("DecodeError: %v", err)
			}
			if !bytes.Equal(rest, []byte{0xAB}) {
				t.Fatalf("rest = %x, want ab", rest)
			}
			if tc.err == nil {
				if got != nil {
					t.Fatalf("got %v, want nil", got)
				}
				return
			}
			var e *Error
			if !errors.As(got, &e) || e.Code != tc.code || e.Message != tc.msg {
				t.Fatalf("got %#v, want *Error{Code: %s, Message: %q}", got, tc.code, tc.msg)
			}
			if !errors.Is(got, tc.sentinel) {
				t.Fatalf("errors.Is(%v, %v) = false, want true", got, tc.sentinel)
			}
			if CodeOf(got) != CodeOf(tc.err) {
				t.Fatalf("CodeOf = %s, want %s", CodeOf(got), CodeOf(tc.err))
			}
		})
	}
}

func TestCodecDoesNotAliasInput(t *testing.T) {
	want := Batch{Ops: []Op{{Kind: OpSet, Namespace: "ns", Key: []byte("key"), Value: []byte("value")}}, Marks: []Mark{{Key: []byte("m"), Value: []byte("1")}}}
	src := AppendBatch(nil, &want)
	got, err := DecodeBatch(src)
	if err != nil {
		t.Fatal(err)
	}
	for i := range src {
		src[i] = 0xFF
	}
	// Appending to a decoded slice must not write over the next field.
	_ = append(got.Ops[0].Key, "XXXXX"...)
	if err := sameBatch(got, want); err != nil {
		t.Fatal(err)
	}

	vsrc := AppendValue(nil, Value{Data: []byte("data"), Version: 9})
	v, _, err := DecodeValue(vsrc)
	if err != nil {
		t.Fatal(err)
	}
	clear(vsrc)
	if string(v.Data) != "data" {
		t.Fatalf("got Data %q after clearing src, want %q", v.Data, "data")
	}
}

// samples returns encodings of every kind, for the malformed-input tests
// and the fuzz corpus.
func samples() (batches, results, values, errs [][]byte) {
	g := newGen(11)
	for range 40 {
		b := g.batch()
		batches = append(batches, AppendBatch(nil, &b))
		rs, _ := g.results()
		results = append(results, AppendResults(nil, rs))
		values = append(values, AppendValue(nil, g.value()))
		err, _ := g.errPair()
		errs = append(errs, AppendError(nil, err))
	}
	set := setBatch()
	batches = append(batches, AppendBatch(nil, &set))
	return batches, results, values, errs
}

func setBatch() Batch {
	return Batch{Ops: []Op{{Kind: OpSet, Namespace: DefaultNamespace, Key: []byte("user:1000"), Value: bytes.Repeat([]byte("v"), 256)}}, Now: 1_700_000_000_000, Revision: 42}
}

// TestCodecTruncated feeds every proper prefix of every sample: each must be
// refused with an INVALID error, never decoded and never a panic.
func TestCodecTruncated(t *testing.T) {
	batches, results, values, errs := samples()
	decoders := []struct {
		name    string
		samples [][]byte
		decode  func([]byte) error
	}{
		{"batch", batches, func(b []byte) error { _, err := DecodeBatch(b); return err }},
		{"results", results, func(b []byte) error { _, err := DecodeResults(b); return err }},
		{"value", values, func(b []byte) error { _, _, err := DecodeValue(b); return err }},
		{"error", errs, func(b []byte) error { _, _, err := DecodeError(b); return err }},
	}
	for _, dec := range decoders {
		for i, full := range dec.samples {
			if err := dec.decode(full); err != nil {
				t.Fatalf("%s sample %d: full input: %v", dec.name, i, err)
			}
			for n := range len(full) {
				err := dec.decode(bytes.Clone(full[:n]))
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("%s sample %d cut to %d of %d bytes: got %v, want an INVALID error", dec.name, i, n, len(full), err)
				}
			}
		}
	}
}

func TestCodecMalformed(t *testing.T) {
	set := setBatch()
	good := AppendBatch(nil, &set)
	for _, tc := range []struct {
		name string
		src  []byte
		want string // in the message
	}{
		{"empty", nil, "empty input"},
		{"unknown version", append([]byte{codecVersion + 1}, good[1:]...), "version 2, want 1"},
		{"trailing bytes", append(bytes.Clone(good), 0), "1 trailing bytes"},
		{"unknown batch mask bit", []byte{codecVersion, 0x40, 0, 0}, "unknown bits 0x40"},
		{"varint overflow", []byte{codecVersion, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, "overflows 64 bits"},
		{"forged op count", []byte{codecVersion, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0, 0, 0, 0, 0}, "cannot fit"},
		{"forged key length", []byte{codecVersion, 0, 2, byte(OpSet), 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0, 0}, "op 0: key: length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeBatch(tc.src)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "INVALID codec: batch: ") {
				t.Fatalf("got %v, want INVALID codec: batch: ...%s...", err, tc.want)
			}
		})
	}
	if _, err := DecodeResults([]byte{9}); !errors.Is(err, ErrCodecVersion) {
		t.Fatalf("got %v, want ErrCodecVersion", err)
	}
	if _, _, err := DecodeError([]byte{codecVersion, 2}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want INVALID for presence byte 2", err)
	}
	if _, _, err := DecodeError([]byte{codecVersion, 1, 0, 0, 200}); err == nil || !strings.Contains(err.Error(), "unknown tag 200") {
		t.Fatalf("got %v, want unknown sentinel tag error", err)
	}
}

// TestCodecForgedCountsDoNotAllocate checks that counts claiming far more
// records than the input holds are refused before the slice is made.
func TestCodecForgedCountsDoNotAllocate(t *testing.T) {
	forged := [][]byte{
		binary.AppendUvarint([]byte{codecVersion, 0}, 1<<20+1), // a million ops in a few bytes
		binary.AppendUvarint([]byte{codecVersion}, 1<<20+1),    // a million results
	}
	for i := range forged {
		forged[i] = append(forged[i], make([]byte, 64)...)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := DecodeBatch(forged[0]); err == nil {
			t.Fatal("forged op count decoded")
		}
		if _, err := DecodeResults(forged[1]); err == nil {
			t.Fatal("forged result count decoded")
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Fatalf("decoding forged counts allocated %d bytes, want < 1 MiB", got)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	batches, _, _, _ := samples()
	for _, s := range batches {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Add([]byte{codecVersion})
	f.Fuzz(func(t *testing.T, src []byte) {
		b, err := DecodeBatch(src)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want an INVALID error", err)
			}
			return
		}
		enc := AppendBatch(nil, &b)
		b2, err := DecodeBatch(enc)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if err := sameBatch(b2, b); err != nil {
			t.Fatalf("re-encoded batch: %v", err)
		}
		if enc2 := AppendBatch(nil, &b2); !bytes.Equal(enc2, enc) {
			t.Fatalf("encoding is not stable: %x then %x", enc, enc2)
		}
	})
}

func FuzzDecodeResults(f *testing.F) {
	_, results, _, _ := samples()
	for _, s := range results {
		f.Add(s)
	}
	f.Add([]byte{codecVersion, 0})
	f.Fuzz(func(t *testing.T, src []byte) {
		rs, err := DecodeResults(src)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want an INVALID error", err)
			}
			return
		}
		enc := AppendResults(nil, rs)
		rs2, err := DecodeResults(enc)
		if err != nil {
			t.Fatalf("re-encoded results do not decode: %v", err)
		}
		if !reflect.DeepEqual(rs2, rs) {
			t.Fatalf("re-encoded results: got %+v, want %+v", rs2, rs)
		}
	})
}

// BenchmarkCodecSetBatch measures the common Raft entry: one SET of a
// 256-byte value.
func BenchmarkCodecSetBatch(b *testing.B) {
	batch := setBatch()
	enc := AppendBatch(nil, &batch)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		buf := make([]byte, 0, len(enc))
		for b.Loop() {
			buf = AppendBatch(buf[:0], &batch)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			if _, err := DecodeBatch(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
