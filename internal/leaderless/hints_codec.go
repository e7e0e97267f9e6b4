package leaderless

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
)

// The hint record format, as persisted by the node:
//
//	version byte (hintCodecVersion)
//	owner, namespace, key, value: each a uvarint length and the bytes
//	version: varint wall nanos, uvarint logical, node as length and bytes
//	expiry: varint Unix nanos
//
// and nothing after. Zero-length byte fields decode as nil. DecodeHint
// checks every length against the bytes left before allocating, so a
// corrupt record cannot make it panic or allocate more than its own size.
const hintCodecVersion byte = 1

// AppendHint appends the record of h to dst and returns the extended slice.
func AppendHint(dst []byte, h Hint) []byte {
	dst = append(dst, hintCodecVersion)
	dst = appendBytes(dst, []byte(h.Owner))
	dst = appendBytes(dst, []byte(h.Namespace))
	dst = appendBytes(dst, h.Key)
	dst = appendBytes(dst, h.Value)
	dst = binary.AppendVarint(dst, h.Version.Timestamp.WallNanos)
	dst = binary.AppendUvarint(dst, uint64(h.Version.Timestamp.Logical))
	dst = appendBytes(dst, []byte(h.Version.Node))
	return binary.AppendVarint(dst, h.Expiry)
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// DecodeHint parses a record made by AppendHint. The result does not
// share memory with b. Malformed input fails with an error wrapping
// ErrBadHint.
func DecodeHint(b []byte) (Hint, error) {
	d := hintDecoder{b: b}
	if len(b) == 0 || b[0] != hintCodecVersion {
		return Hint{}, fmt.Errorf("%w: unknown format version", ErrBadHint)
	}
	d.b = b[1:]
	var h Hint
	h.Owner = NodeID(d.bytes("owner"))
	h.Namespace = string(d.bytes("namespace"))
	h.Key = d.bytes("key")
	h.Value = d.bytes("value")
	wall := d.varint("wall time")
	logical := d.uvarint("logical time")
	if d.err == nil && logical > math.MaxUint32 {
		d.fail("logical time")
	}
	h.Version = LWW{Timestamp: hlc.Timestamp{WallNanos: wall, Logical: uint32(logical)}, Node: NodeID(d.bytes("version node"))}
	h.Expiry = d.varint("expiry")
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrBadHint, len(d.b))
	}
	if d.err != nil {
		return Hint{}, d.err
	}
	return h, nil
}

// hintDecoder reads fields until the first error, which it keeps.
type hintDecoder struct {
	b   []byte
	err error
}

func (d *hintDecoder) fail(field string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", ErrBadHint, field)
	}
}

func (d *hintDecoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(field)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *hintDecoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(field)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *hintDecoder) bytes(field string) []byte {
	l := d.uvarint(field)
	if d.err != nil {
		return nil
	}
	if l > uint64(len(d.b)) {
		d.fail(field)
		return nil
	}
	if l == 0 {
		return nil
	}
	out := make([]byte, l)
	copy(out, d.b)
	d.b = d.b[l:]
	return out
}
