package storage

import (
	"encoding/binary"
	"fmt"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// Pebble key layout. The first byte separates the key spaces:
//
//	'd' ns 0x00 key              -> value header + data
//	'e' expireAt(8, BE) ns 0x00 key -> empty (expiry index, for the sweeper)
//	'c' ns                       -> keys(8) expires(8) (namespace counters)
//	'm' name                     -> store metadata (revision, last HLC)
//	'x' key                      -> engine marks (kv.Batch.Marks)
//
// Namespace names never contain 0x00 (kv.ValidateNamespace), so the
// separator keeps each namespace's keys contiguous and in key order.
const (
	prefixData    = 'd'
	prefixExpiry  = 'e'
	prefixCounter = 'c'
	prefixMeta    = 'm'
	prefixMark    = 'x'
)

var (
	metaRevision = []byte{prefixMeta, 'r', 'e', 'v'}
	metaHLC      = []byte{prefixMeta, 'h', 'l', 'c'}
)

func dataKey(buf []byte, ns string, key []byte) []byte {
	buf = append(buf[:0], prefixData)
	buf = append(buf, ns...)
	buf = append(buf, 0)
	return append(buf, key...)
}

// nsKeyPrefix is the prefix of every data key of ns.
func nsKeyPrefix(ns string) []byte { return dataKey(nil, ns, nil) }

func expiryKey(buf []byte, expireAt int64, ns string, key []byte) []byte {
	buf = append(buf[:0], prefixExpiry)
	buf = binary.BigEndian.AppendUint64(buf, uint64(expireAt))
	buf = append(buf, ns...)
	buf = append(buf, 0)
	return append(buf, key...)
}

// parseExpiryKey splits an expiry-index key.
func parseExpiryKey(k []byte) (expireAt int64, ns string, key []byte, ok bool) {
	if len(k) < 10 || k[0] != prefixExpiry {
		return 0, "", nil, false
	}
	expireAt = int64(binary.BigEndian.Uint64(k[1:9]))
	rest := k[9:]
	for i, c := range rest {
		if c == 0 {
			return expireAt, string(rest[:i]), rest[i+1:], true
		}
	}
	return 0, "", nil, false
}

func markKey(k []byte) []byte { return append([]byte{prefixMark}, k...) }

func counterKey(ns string) []byte { return append([]byte{prefixCounter}, ns...) }

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

// Value record layout (little endian), format 1:
//
//	format(1) flags(1) version(8) created(8) wall(8) logical(4) expireAt(8) data...
const (
	valueFormat1    = 1
	flagTombstone   = 1 << 0
	valueHeaderSize = 1 + 1 + 8 + 8 + 8 + 4 + 8
)

type record struct {
	kv.Value
	Tombstone bool
}

func encodeValue(buf []byte, r record) []byte {
	buf = append(buf[:0], valueFormat1, 0)
	if r.Tombstone {
		buf[1] |= flagTombstone
	}
	buf = binary.LittleEndian.AppendUint64(buf, r.Version)
	buf = binary.LittleEndian.AppendUint64(buf, r.Created)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(r.Timestamp.WallNanos))
	buf = binary.LittleEndian.AppendUint32(buf, r.Timestamp.Logical)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(r.ExpireAt))
	return append(buf, r.Data...)
}

// decodeValue parses a stored record. Data aliases b unless the caller copies.
func decodeValue(b []byte) (record, error) {
	if len(b) < valueHeaderSize || b[0] != valueFormat1 {
		return record{}, fmt.Errorf("storage: corrupt value record (%d bytes, format %v)", len(b), firstByte(b))
	}
	var r record
	r.Tombstone = b[1]&flagTombstone != 0
	r.Version = binary.LittleEndian.Uint64(b[2:])
	r.Created = binary.LittleEndian.Uint64(b[10:])
	r.Timestamp = hlc.Timestamp{
		WallNanos: int64(binary.LittleEndian.Uint64(b[18:])),
		Logical:   binary.LittleEndian.Uint32(b[26:]),
	}
	r.ExpireAt = int64(binary.LittleEndian.Uint64(b[30:]))
	r.Data = b[valueHeaderSize:]
	return r, nil
}

func firstByte(b []byte) any {
	if len(b) == 0 {
		return "none"
	}
	return b[0]
}
