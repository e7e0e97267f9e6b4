package kv

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
)

// The wire codec: how batches travel in Raft log entries, values in
// snapshots, and results and errors between nodes.
//
// Every encoding made by an exported Append function starts with the
// format version byte (codecVersion); a decoder refuses any other version
// with ErrCodecVersion, so a node never misreads bytes written by a newer
// format. After it, integers are varints (zig-zag for signed ones, as
// encoding/binary writes them), floats are their 8 IEEE 754 bits little
// endian (NaN payloads and -0 survive), strings are a length and the bytes,
// and byte slices and slices of records are length+1 with 0 for nil, so nil
// and empty both round-trip. Fields that are usually zero are announced by a
// bit mask and omitted when zero; that keeps a small SET batch small.
//
// The codec carries fields faithfully and does not judge them: an unknown
// OpKind or Cond decodes as is and is refused where it is applied. It only
// refuses bytes it cannot parse, never panics on them, and never allocates
// more than the input could really describe: every length and count is
// checked against the bytes left before anything is allocated.

// codecVersion is the format version written first by every Append function.
const codecVersion byte = 1

// ErrCodecVersion is the cause of a decoding error when the input starts
// with a format version this build does not know (a newer node wrote it).
// The error itself is INVALID; test for this with errors.Is.
var ErrCodecVersion = errors.New("unknown codec format version")

// Masks of the optional fields. Unknown bits are malformed input.
const (
	batchNow = 1 << iota
	batchTimestamp
	batchAllAbsent
	batchRevision
	batchShard
	batchShards
	batchAll = 1<<iota - 1
)

const (
	opCond = 1 << iota
	opIfVersion
	opExpireAt
	opKeepTTL
	opExpireCond
	opDelta
	opDeltaFloat
	opOffset
	opRestored
	opAll = 1<<iota - 1
)

const (
	valueVersion = 1 << iota
	valueCreated
	valueTimestamp
	valueExpireAt
	valueAll = 1<<iota - 1
)

const (
	resultApplied = 1 << iota
	resultPrevExists
	resultExists
	resultPrev
	resultCur
	resultCount
	resultErr
	resultAll = 1<<iota - 1
)

// Minimum encoded sizes of repeated records, which bound how many a count
// may claim for the bytes left.
const (
	minOpSize     = 5 // kind, mask, namespace, key, value
	minMarkSize   = 2 // key, value
	minResultSize = 1 // mask
)

// AppendBatch appends the encoding of b to dst and returns the extended
// buffer. Every field of b and of its ops round-trips through DecodeBatch.
func AppendBatch(dst []byte, b *Batch) []byte {
	dst = append(dst, codecVersion)
	var mask uint64
	if b.Now != 0 {
		mask |= batchNow
	}
	if !b.Timestamp.IsZero() {
		mask |= batchTimestamp
	}
	if b.AllAbsent {
		mask |= batchAllAbsent
	}
	if b.Revision != 0 {
		mask |= batchRevision
	}
	if b.Shard != 0 {
		mask |= batchShard
	}
	if b.Shards != 0 {
		mask |= batchShards
	}
	dst = binary.AppendUvarint(dst, mask)
	if mask&batchNow != 0 {
		dst = binary.AppendVarint(dst, b.Now)
	}
	if mask&batchTimestamp != 0 {
		dst = appendTimestamp(dst, b.Timestamp)
	}
	if mask&batchRevision != 0 {
		dst = binary.AppendUvarint(dst, b.Revision)
	}
	if mask&batchShard != 0 {
		dst = binary.AppendVarint(dst, int64(b.Shard))
	}
	if mask&batchShards != 0 {
		dst = binary.AppendVarint(dst, int64(b.Shards))
	}
	dst = appendCount(dst, len(b.Ops), b.Ops == nil)
	for i := range b.Ops {
		dst = appendOp(dst, &b.Ops[i])
	}
	dst = appendCount(dst, len(b.Marks), b.Marks == nil)
	for _, m := range b.Marks {
		dst = appendBytes(dst, m.Key)
		dst = appendBytes(dst, m.Value)
	}
	return dst
}

// DecodeBatch decodes a batch encoded by AppendBatch; src must hold exactly
// one encoding. Nil and empty byte slices are told apart.
//
// The batch does not alias src: its byte slices point into one private copy
// of src, made with a single allocation, so the caller may reuse src at
// once. A retained slice keeps that whole copy alive. Each slice's capacity
// equals its length, so appending to one never overwrites its neighbour.
func DecodeBatch(src []byte) (Batch, error) {
	if err := checkVersion(src); err != nil {
		return Batch{}, Errorf(CodeInvalid, "codec: batch: %w", err)
	}
	d := decoder{src: bytes.Clone(src[1:]), alias: true}
	b := d.batch()
	d.end()
	if d.err != nil {
		return Batch{}, Errorf(CodeInvalid, "codec: batch: %w", d.err)
	}
	return b, nil
}

// AppendResults appends the encoding of rs to dst and returns the extended
// buffer. A Result's Err is carried as an error code and message (see
// AppendError).
func AppendResults(dst []byte, rs []Result) []byte {
	dst = append(dst, codecVersion)
	dst = appendCount(dst, len(rs), rs == nil)
	for i := range rs {
		dst = appendResult(dst, &rs[i])
	}
	return dst
}

// DecodeResults decodes results encoded by AppendResults; src must hold
// exactly one encoding. Like DecodeBatch, the results do not alias src but
// share one private copy of it. A non-nil Err decodes as described at
// DecodeError.
func DecodeResults(src []byte) ([]Result, error) {
	if err := checkVersion(src); err != nil {
		return nil, Errorf(CodeInvalid, "codec: results: %w", err)
	}
	d := decoder{src: bytes.Clone(src[1:]), alias: true}
	n, isNil := d.count("result count", minResultSize)
	var rs []Result
	if !isNil {
		rs = make([]Result, n)
	}
	for i := range rs {
		d.result(&rs[i])
		if d.err != nil {
			d.err = fmt.Errorf("result %d: %w", i, d.err)
			break
		}
	}
	d.end()
	if d.err != nil {
		return nil, Errorf(CodeInvalid, "codec: results: %w", d.err)
	}
	return rs, nil
}

// AppendValue appends the encoding of v to dst and returns the extended
// buffer. Encodings may be concatenated (a snapshot is a stream of them)
// and read back one at a time with DecodeValue.
func AppendValue(dst []byte, v Value) []byte {
	dst = append(dst, codecVersion)
	return appendValue(dst, &v)
}

// DecodeValue decodes the value encoded by AppendValue at the start of src
// and returns it with the bytes that follow it. The value's Data is a copy:
// it does not alias src.
func DecodeValue(src []byte) (Value, []byte, error) {
	if err := checkVersion(src); err != nil {
		return Value{}, src, Errorf(CodeInvalid, "codec: value: %w", err)
	}
	d := decoder{src: src[1:]}
	var v Value
	d.value(&v)
	if d.err != nil {
		return Value{}, src, Errorf(CodeInvalid, "codec: value: %w", d.err)
	}
	return v, d.src, nil
}

// AppendError appends the encoding of err, which may be nil, to dst and
// returns the extended buffer. What travels is what the protocol edge shows:
// the code and message of the first *Error in err's chain, or else
// CodeOf(err) and err.Error(). Context wrapped around an *Error and the
// *Error's own cause are dropped, except that the arithmetic sentinels
// (ErrNotInteger, ErrNotFloat, ErrOverflow, ErrNaN) and the context errors
// (context.DeadlineExceeded, context.Canceled) and ErrNotAdmitted are carried by a tag, so
// errors.Is still finds them after decoding.
func AppendError(dst []byte, err error) []byte {
	dst = append(dst, codecVersion)
	if err == nil {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	return appendErrorBody(dst, err)
}

// DecodeError decodes the error encoded by AppendError at the start of src
// and returns it with the bytes that follow it; the third result is the
// decoding failure, if any. A nil error decodes as nil; any other as an
// *Error with the encoded Code and Message whose Err is the carried
// sentinel, if there was one.
func DecodeError(src []byte) (error, []byte, error) {
	if err := checkVersion(src); err != nil {
		return nil, src, Errorf(CodeInvalid, "codec: error: %w", err)
	}
	d := decoder{src: src[1:]}
	var e error
	switch present := d.u8("presence"); {
	case d.err != nil:
	case present == 1:
		e = d.errorBody()
	case present != 0:
		d.fail("presence: byte %d, want 0 or 1", present)
	}
	if d.err != nil {
		return nil, src, Errorf(CodeInvalid, "codec: error: %w", d.err)
	}
	return e, d.src, nil
}

func checkVersion(src []byte) error {
	if len(src) == 0 {
		return errors.New("empty input")
	}
	if src[0] != codecVersion {
		return fmt.Errorf("version %d, want %d: %w", src[0], codecVersion, ErrCodecVersion)
	}
	return nil
}

func appendOp(dst []byte, op *Op) []byte {
	var mask uint64
	if op.Cond != 0 {
		mask |= opCond
	}
	if op.IfVersion != 0 {
		mask |= opIfVersion
	}
	if op.ExpireAt != 0 {
		mask |= opExpireAt
	}
	if op.KeepTTL {
		mask |= opKeepTTL
	}
	if op.ExpireCond != 0 {
		mask |= opExpireCond
	}
	if op.Delta != 0 {
		mask |= opDelta
	}
	if math.Float64bits(op.DeltaFloat) != 0 { // -0 and NaNs included
		mask |= opDeltaFloat
	}
	if op.Offset != 0 {
		mask |= opOffset
	}
	if !isZeroValue(&op.Restored) {
		mask |= opRestored
	}
	dst = append(dst, byte(op.Kind))
	dst = binary.AppendUvarint(dst, mask)
	dst = appendString(dst, op.Namespace)
	dst = appendBytes(dst, op.Key)
	dst = appendBytes(dst, op.Value)
	if mask&opCond != 0 {
		dst = append(dst, byte(op.Cond))
	}
	if mask&opIfVersion != 0 {
		dst = binary.AppendUvarint(dst, op.IfVersion)
	}
	if mask&opExpireAt != 0 {
		dst = binary.AppendVarint(dst, op.ExpireAt)
	}
	if mask&opExpireCond != 0 {
		dst = append(dst, byte(op.ExpireCond))
	}
	if mask&opDelta != 0 {
		dst = binary.AppendVarint(dst, op.Delta)
	}
	if mask&opDeltaFloat != 0 {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(op.DeltaFloat))
	}
	if mask&opOffset != 0 {
		dst = binary.AppendVarint(dst, op.Offset)
	}
	if mask&opRestored != 0 {
		dst = appendValue(dst, &op.Restored)
	}
	return dst
}

func appendValue(dst []byte, v *Value) []byte {
	var mask uint64
	if v.Version != 0 {
		mask |= valueVersion
	}
	if v.Created != 0 {
		mask |= valueCreated
	}
	if !v.Timestamp.IsZero() {
		mask |= valueTimestamp
	}
	if v.ExpireAt != 0 {
		mask |= valueExpireAt
	}
	dst = binary.AppendUvarint(dst, mask)
	dst = appendBytes(dst, v.Data)
	if mask&valueVersion != 0 {
		dst = binary.AppendUvarint(dst, v.Version)
	}
	if mask&valueCreated != 0 {
		dst = binary.AppendUvarint(dst, v.Created)
	}
	if mask&valueTimestamp != 0 {
		dst = appendTimestamp(dst, v.Timestamp)
	}
	if mask&valueExpireAt != 0 {
		dst = binary.AppendVarint(dst, v.ExpireAt)
	}
	return dst
}

func appendResult(dst []byte, r *Result) []byte {
	var mask uint64
	if r.Applied {
		mask |= resultApplied
	}
	if r.PrevExists {
		mask |= resultPrevExists
	}
	if r.Exists {
		mask |= resultExists
	}
	if !isZeroValue(&r.Prev) {
		mask |= resultPrev
	}
	if !isZeroValue(&r.Cur) {
		mask |= resultCur
	}
	if r.Count != 0 {
		mask |= resultCount
	}
	if r.Err != nil {
		mask |= resultErr
	}
	dst = binary.AppendUvarint(dst, mask)
	if mask&resultPrev != 0 {
		dst = appendValue(dst, &r.Prev)
	}
	if mask&resultCur != 0 {
		dst = appendValue(dst, &r.Cur)
	}
	if mask&resultCount != 0 {
		dst = binary.AppendVarint(dst, r.Count)
	}
	if mask&resultErr != 0 {
		dst = appendErrorBody(dst, r.Err)
	}
	return dst
}

// appendErrorBody writes code, message and sentinel tag of a non-nil err.
func appendErrorBody(dst []byte, err error) []byte {
	code, msg := CodeOf(err), err.Error()
	var e *Error
	if errors.As(err, &e) {
		code, msg = e.Code, e.Message
	}
	dst = appendString(dst, string(code))
	dst = appendString(dst, msg)
	return append(dst, sentinelTag(err))
}

// sentinelTag names the well-known error in err's chain that callers test
// with errors.Is across a node boundary; 0 for none. Tags are part of the
// format: never renumber one.
func sentinelTag(err error) byte {
	switch {
	case errors.Is(err, ErrNotInteger):
		return 1
	case errors.Is(err, ErrNotFloat):
		return 2
	case errors.Is(err, ErrOverflow):
		return 3
	case errors.Is(err, ErrNaN):
		return 4
	case errors.Is(err, context.DeadlineExceeded):
		return 5
	case errors.Is(err, context.Canceled):
		return 6
	case errors.Is(err, ErrNotAdmitted):
		return 7
	}
	return 0
}

// sentinelOf is the inverse of sentinelTag; ok is false for unknown tags.
func sentinelOf(tag byte) (err error, ok bool) {
	switch tag {
	case 0:
		return nil, true
	case 1:
		return ErrNotInteger, true
	case 2:
		return ErrNotFloat, true
	case 3:
		return ErrOverflow, true
	case 4:
		return ErrNaN, true
	case 5:
		return context.DeadlineExceeded, true
	case 6:
		return context.Canceled, true
	case 7:
		return ErrNotAdmitted, true
	}
	return nil, false
}

func appendTimestamp(dst []byte, ts hlc.Timestamp) []byte {
	dst = binary.AppendVarint(dst, ts.WallNanos)
	return binary.AppendUvarint(dst, uint64(ts.Logical))
}

// appendBytes writes len(b)+1 and b, or 0 for a nil b.
func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b))+1)
	return append(dst, b...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// appendCount writes the length of a slice as n+1, or 0 for a nil slice.
func appendCount(dst []byte, n int, isNil bool) []byte {
	if isNil {
		return append(dst, 0)
	}
	return binary.AppendUvarint(dst, uint64(n)+1)
}

func isZeroValue(v *Value) bool {
	return v.Data == nil && v.Version == 0 && v.Created == 0 && v.Timestamp.IsZero() && v.ExpireAt == 0
}

// decoder reads fields from src, consuming it. The first failure is kept in
// err; after it every read returns a zero value, so decoding code reads
// straight through and checks err where it loops or returns.
type decoder struct {
	src []byte
	// alias says src is the decoder's private copy, so byte fields may
	// point into it instead of being copied one by one.
	alias bool
	err   error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
	d.src = nil
}

// end fails if input is left over: an encoding is exactly its bytes.
func (d *decoder) end() {
	if d.err == nil && len(d.src) > 0 {
		d.fail("%d trailing bytes", len(d.src))
	}
}

func (d *decoder) u8(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.src) == 0 {
		d.fail("%s: truncated", what)
		return 0
	}
	c := d.src[0]
	d.src = d.src[1:]
	return c
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.src)
	switch {
	case n == 0:
		d.fail("%s: truncated", what)
		return 0
	case n < 0:
		d.fail("%s: varint overflows 64 bits", what)
		return 0
	}
	d.src = d.src[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.src)
	switch {
	case n == 0:
		d.fail("%s: truncated", what)
		return 0
	case n < 0:
		d.fail("%s: varint overflows 64 bits", what)
		return 0
	}
	d.src = d.src[n:]
	return v
}

func (d *decoder) intField(what string) int {
	v := d.varint(what)
	if int64(int(v)) != v {
		d.fail("%s: %d overflows int", what, v)
		return 0
	}
	return int(v)
}

func (d *decoder) mask(what string, all uint64) uint64 {
	m := d.uvarint(what)
	if m&^all != 0 {
		d.fail("%s: unknown bits %#x", what, m&^all)
		return 0
	}
	return m
}

// take returns the next n bytes, checked against what is left.
func (d *decoder) take(what string, n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.src)) {
		d.fail("%s: length %d exceeds the %d bytes left", what, n, len(d.src))
		return nil
	}
	b := d.src[:n:n]
	d.src = d.src[n:]
	return b
}

// byteSlice reads a byte slice written by appendBytes.
func (d *decoder) byteSlice(what string) []byte {
	n := d.uvarint(what)
	if n == 0 {
		return nil
	}
	b := d.take(what, n-1)
	if d.err != nil {
		return nil
	}
	if !d.alias {
		b = bytes.Clone(b) // never nil: Clone keeps empty non-nil slices
	}
	return b
}

func (d *decoder) str(what string) string {
	return string(d.take(what, d.uvarint(what)))
}

// count reads a slice length written by appendCount and checks that the
// bytes left can hold that many records of at least minSize bytes, so a
// forged count cannot make the caller allocate.
func (d *decoder) count(what string, minSize int) (n int, isNil bool) {
	c := d.uvarint(what)
	if d.err != nil {
		return 0, false
	}
	if c == 0 {
		return 0, true
	}
	c--
	if c > uint64(len(d.src)/minSize) {
		d.fail("%s: %d records cannot fit in the %d bytes left", what, c, len(d.src))
		return 0, false
	}
	return int(c), false
}

func (d *decoder) timestamp(what string) hlc.Timestamp {
	wall := d.varint(what)
	logical := d.uvarint(what)
	if logical > math.MaxUint32 {
		d.fail("%s: logical %d overflows uint32", what, logical)
		return hlc.Timestamp{}
	}
	return hlc.Timestamp{WallNanos: wall, Logical: uint32(logical)}
}

func (d *decoder) batch() Batch {
	var b Batch
	mask := d.mask("batch mask", batchAll)
	if mask&batchNow != 0 {
		b.Now = d.varint("now")
	}
	if mask&batchTimestamp != 0 {
		b.Timestamp = d.timestamp("timestamp")
	}
	b.AllAbsent = mask&batchAllAbsent != 0
	if mask&batchRevision != 0 {
		b.Revision = d.uvarint("revision")
	}
	if mask&batchShard != 0 {
		b.Shard = d.intField("shard")
	}
	if mask&batchShards != 0 {
		b.Shards = d.intField("shards")
	}
	n, isNil := d.count("op count", minOpSize)
	if !isNil && d.err == nil {
		b.Ops = make([]Op, n)
	}
	for i := range b.Ops {
		var prevNS string
		if i > 0 {
			prevNS = b.Ops[i-1].Namespace
		}
		d.op(&b.Ops[i], prevNS)
		if d.err != nil {
			d.err = fmt.Errorf("op %d: %w", i, d.err)
			return Batch{}
		}
	}
	n, isNil = d.count("mark count", minMarkSize)
	if !isNil && d.err == nil {
		b.Marks = make([]Mark, n)
	}
	for i := range b.Marks {
		b.Marks[i].Key = d.byteSlice("mark key")
		b.Marks[i].Value = d.byteSlice("mark value")
		if d.err != nil {
			d.err = fmt.Errorf("mark %d: %w", i, d.err)
			return Batch{}
		}
	}
	return b
}

// op decodes one op. prevNS is the previous op's namespace: batches rarely
// mix namespaces, so sharing its string saves an allocation per op.
func (d *decoder) op(op *Op, prevNS string) {
	op.Kind = OpKind(d.u8("kind"))
	mask := d.mask("op mask", opAll)
	if ns := d.take("namespace", d.uvarint("namespace")); string(ns) == prevNS {
		op.Namespace = prevNS
	} else {
		op.Namespace = string(ns)
	}
	op.Key = d.byteSlice("key")
	op.Value = d.byteSlice("value")
	if mask&opCond != 0 {
		op.Cond = Cond(d.u8("cond"))
	}
	if mask&opIfVersion != 0 {
		op.IfVersion = d.uvarint("if-version")
	}
	if mask&opExpireAt != 0 {
		op.ExpireAt = d.varint("expire-at")
	}
	op.KeepTTL = mask&opKeepTTL != 0
	if mask&opExpireCond != 0 {
		op.ExpireCond = ExpireCond(d.u8("expire cond"))
	}
	if mask&opDelta != 0 {
		op.Delta = d.varint("delta")
	}
	if mask&opDeltaFloat != 0 {
		if b := d.take("float delta", 8); d.err == nil {
			op.DeltaFloat = math.Float64frombits(binary.LittleEndian.Uint64(b))
		}
	}
	if mask&opOffset != 0 {
		op.Offset = d.varint("offset")
	}
	if mask&opRestored != 0 {
		d.value(&op.Restored)
		if d.err != nil {
			d.err = fmt.Errorf("restored: %w", d.err)
		}
	}
}

func (d *decoder) value(v *Value) {
	mask := d.mask("value mask", valueAll)
	v.Data = d.byteSlice("data")
	if mask&valueVersion != 0 {
		v.Version = d.uvarint("version")
	}
	if mask&valueCreated != 0 {
		v.Created = d.uvarint("created")
	}
	if mask&valueTimestamp != 0 {
		v.Timestamp = d.timestamp("timestamp")
	}
	if mask&valueExpireAt != 0 {
		v.ExpireAt = d.varint("expire-at")
	}
}

func (d *decoder) result(r *Result) {
	mask := d.mask("result mask", resultAll)
	r.Applied = mask&resultApplied != 0
	r.PrevExists = mask&resultPrevExists != 0
	r.Exists = mask&resultExists != 0
	if mask&resultPrev != 0 {
		d.value(&r.Prev)
		if d.err != nil {
			d.err = fmt.Errorf("prev: %w", d.err)
		}
	}
	if mask&resultCur != 0 {
		d.value(&r.Cur)
		if d.err != nil {
			d.err = fmt.Errorf("cur: %w", d.err)
		}
	}
	if mask&resultCount != 0 {
		r.Count = d.varint("count")
	}
	if mask&resultErr != 0 {
		if err := d.errorBody(); d.err == nil {
			r.Err = err
		}
	}
}

func (d *decoder) errorBody() error {
	code := d.str("error code")
	msg := d.str("error message")
	tag := d.u8("error sentinel")
	if d.err != nil {
		return nil
	}
	cause, ok := sentinelOf(tag)
	if !ok {
		d.fail("error sentinel: unknown tag %d", tag)
		return nil
	}
	return &Error{Code: Code(code), Message: msg, Err: cause}
}
