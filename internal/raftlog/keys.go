package raftlog

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Key layout. A prefix byte names the kind of record; the group id and the
// log index follow big-endian, so one group's log is one contiguous key range
// in index order and can be cut with a single DeleteRange.
//
//	prefixLog       | group | index -> raftpb.Entry (protobuf)
//	prefixHardState | group         -> raftpb.HardState (protobuf)
//	prefixTrunc     | group         -> truncated index | truncated term (16 bytes)
//	prefixConf      | group         -> raftpb.ConfState (protobuf)
const (
	prefixLog       byte = 0x01
	prefixHardState byte = 0x02
	prefixTrunc     byte = 0x03
	prefixConf      byte = 0x04
)

const (
	groupKeyLen = 1 + 8
	logKeyLen   = groupKeyLen + 8
)

// appendLogKey appends the key of entry index of group to dst.
func appendLogKey(dst []byte, group, index uint64) []byte {
	dst = append(dst, prefixLog)
	dst = binary.BigEndian.AppendUint64(dst, group)
	return binary.BigEndian.AppendUint64(dst, index)
}

func logKey(group, index uint64) []byte {
	return appendLogKey(make([]byte, 0, logKeyLen), group, index)
}

// logEnd is the exclusive upper bound of group's whole log.
func logEnd(group uint64) []byte {
	if group == ^uint64(0) {
		return []byte{prefixLog + 1}
	}
	return logKey(group+1, 0)
}

func groupKey(prefix byte, group uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, groupKeyLen), prefix), group)
}

func parseLogKey(k []byte) (group, index uint64, ok bool) {
	if len(k) != logKeyLen || k[0] != prefixLog {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), binary.BigEndian.Uint64(k[9:]), true
}

func parseGroupKey(k []byte) (prefix byte, group uint64, ok bool) {
	if len(k) != groupKeyLen {
		return 0, 0, false
	}
	return k[0], binary.BigEndian.Uint64(k[1:]), true
}

func encodeTrunc(index, term uint64) []byte {
	b := make([]byte, 0, 16)
	b = binary.BigEndian.AppendUint64(b, index)
	return binary.BigEndian.AppendUint64(b, term)
}

func decodeTrunc(v []byte) (index, term uint64, err error) {
	if len(v) != 16 {
		return 0, 0, fmt.Errorf("truncated state is %d bytes, want 16", len(v))
	}
	return binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]), nil
}

// Field numbers of raftpb.Entry (raft.proto).
const (
	entryFieldTerm  protowire.Number = 2
	entryFieldIndex protowire.Number = 3
)

// entryHeader reads the term and index of an encoded raftpb.Entry without
// decoding (or copying) its data; recovery reads every stored entry this way.
func entryHeader(v []byte) (term, index uint64, err error) {
	for len(v) > 0 {
		num, typ, n := protowire.ConsumeTag(v)
		if n < 0 {
			return 0, 0, protowire.ParseError(n)
		}
		v = v[n:]
		if typ == protowire.VarintType && (num == entryFieldTerm || num == entryFieldIndex) {
			x, m := protowire.ConsumeVarint(v)
			if m < 0 {
				return 0, 0, protowire.ParseError(m)
			}
			if num == entryFieldTerm {
				term = x
			} else {
				index = x
			}
			v = v[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, v)
		if m < 0 {
			return 0, 0, protowire.ParseError(m)
		}
		v = v[m:]
	}
	return term, index, nil
}
