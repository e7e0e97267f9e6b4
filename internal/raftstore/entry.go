package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// Log entry payload: what a replica needs to apply a write and, on the
// node that proposed it, to answer the waiting client.
//
//	byte      entryWrite
//	uvarint   proposer node id
//	uvarint   proposer incarnation (random per run of the node)
//	uvarint   proposal id (unique within the incarnation)
//	...       kv.AppendBatch encoding
//
// The incarnation keeps a restarted node from taking an entry proposed by
// its previous run, replayed from the log, for a new proposal that happens
// to reuse the id.
//
// An empty payload is raft's own no-op entry (a new leader's first entry).
const entryWrite = 1

// proposer identifies who proposed an entry and which of its proposals.
type proposer struct {
	node, incarnation, id uint64
}

func encodeEntry(dst []byte, p proposer, b *kv.Batch) []byte {
	dst = append(dst, entryWrite)
	dst = binary.AppendUvarint(dst, p.node)
	dst = binary.AppendUvarint(dst, p.incarnation)
	dst = binary.AppendUvarint(dst, p.id)
	return kv.AppendBatch(dst, b)
}

// appendProposer encodes p alone: the Context of a conf change.
func appendProposer(dst []byte, p proposer) []byte {
	dst = binary.AppendUvarint(dst, p.node)
	dst = binary.AppendUvarint(dst, p.incarnation)
	return binary.AppendUvarint(dst, p.id)
}

func decodeProposer(src []byte) (p proposer, ok bool) {
	for _, f := range []*uint64{&p.node, &p.incarnation, &p.id} {
		v, n := binary.Uvarint(src)
		if n <= 0 {
			return p, false
		}
		*f, src = v, src[n:]
	}
	return p, true
}

func decodeEntry(data []byte) (p proposer, b kv.Batch, err error) {
	if len(data) == 0 || data[0] != entryWrite {
		return p, b, fmt.Errorf("raftstore: unknown entry kind %v", firstByte(data))
	}
	rest := data[1:]
	for _, f := range []*uint64{&p.node, &p.incarnation, &p.id} {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			return p, b, errors.New("raftstore: corrupt entry header")
		}
		*f, rest = v, rest[n:]
	}
	b, err = kv.DecodeBatch(rest)
	return p, b, err
}

func firstByte(b []byte) any {
	if len(b) == 0 {
		return "none"
	}
	return b[0]
}

// Marks the engine keeps in the state machine, written atomically with the
// entries they describe.
func appliedMarkKey(group uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte("raft/applied/"), group)
}

func confMarkKey(group uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte("raft/conf/"), group)
}

// appliedMark records that a group's state machine reflects its log up to
// index (whose term is term); a restart resumes applying after it.
func appliedMark(group, index, term uint64) kv.Mark {
	v := binary.BigEndian.AppendUint64(nil, index)
	return kv.Mark{Key: appliedMarkKey(group), Value: binary.BigEndian.AppendUint64(v, term)}
}

func parseAppliedMark(v []byte) (index, term uint64, err error) {
	if len(v) != 16 {
		return 0, 0, fmt.Errorf("raftstore: corrupt applied mark (%d bytes)", len(v))
	}
	return binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]), nil
}

func tombMarkKey(group uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte("raft/tomb/"), group)
}

// tombstone is what a deleted replica of a group leaves behind: enough of
// its Raft state to keep a replica recreated in its place (the shard moved
// away and back) from undoing the old one's promises. A fresh replica
// would otherwise start at term 0 with an empty log, accept a stale leader
// and vote for any candidate, and a node with an outdated membership could
// then win an election or commit with it in place of the old replica.
type tombstone struct {
	term                uint64 // the old replica's term: older leaders are refused
	lastIndex, lastTerm uint64 // its log's end: candidates behind it get no vote
}

func (t tombstone) mark(group uint64) kv.Mark {
	v := binary.BigEndian.AppendUint64(nil, t.term)
	v = binary.BigEndian.AppendUint64(v, t.lastIndex)
	return kv.Mark{Key: tombMarkKey(group), Value: binary.BigEndian.AppendUint64(v, t.lastTerm)}
}

func parseTombstone(v []byte) (tombstone, error) {
	if len(v) != 24 {
		return tombstone{}, fmt.Errorf("raftstore: corrupt tombstone (%d bytes)", len(v))
	}
	return tombstone{binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]), binary.BigEndian.Uint64(v[16:])}, nil
}

// admits says whether a candidate whose log ends at (lastTerm, index)
// could have had the old replica's vote: its log must be at least as up
// to date as the old replica's was.
func (t tombstone) admits(lastTerm, index uint64) bool {
	return lastTerm > t.lastTerm || (lastTerm == t.lastTerm && index >= t.lastIndex)
}

func confMark(group uint64, cs *pb.ConfState) (kv.Mark, error) {
	v, err := proto.Marshal(cs)
	return kv.Mark{Key: confMarkKey(group), Value: v}, err
}

// Raft message batches between nodes: the messages of all groups for one
// destination go as one transport message.
//
//	repeated: uvarint group, uvarint length, raftpb.Message (protobuf)
func appendMessage(dst []byte, group uint64, m *pb.Message) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return dst, err
	}
	dst = binary.AppendUvarint(dst, group)
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...), nil
}

// nextMessage splits the first message off a batch.
func nextMessage(src []byte) (group uint64, m *pb.Message, rest []byte, err error) {
	group, n := binary.Uvarint(src)
	if n <= 0 {
		return 0, nil, nil, errors.New("raftstore: corrupt message batch")
	}
	src = src[n:]
	l, n := binary.Uvarint(src)
	if n <= 0 || l > uint64(len(src)-n) {
		return 0, nil, nil, errors.New("raftstore: corrupt message batch")
	}
	m = new(pb.Message)
	if err := proto.Unmarshal(src[n:n+int(l)], m); err != nil {
		return 0, nil, nil, fmt.Errorf("raftstore: decode raft message: %w", err)
	}
	return group, m, src[n+int(l):], nil
}

// Snapshot data: one shard's rows.
//
//	byte snapshotFormat, then repeated: uvarint key length, key, kv.AppendValue
const snapshotFormat = 1

func appendRow(dst, key []byte, v kv.Value) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	return kv.AppendValue(dst, v)
}

// decodeRows calls fn for each row of snapshot data.
func decodeRows(data []byte, fn func(key []byte, v kv.Value)) error {
	if len(data) == 0 || data[0] != snapshotFormat {
		return fmt.Errorf("raftstore: unknown snapshot format %v", firstByte(data))
	}
	data = data[1:]
	for len(data) > 0 {
		l, n := binary.Uvarint(data)
		if n <= 0 || l > uint64(len(data)-n) {
			return errors.New("raftstore: corrupt snapshot row")
		}
		key := data[n : n+int(l)]
		v, rest, err := kv.DecodeValue(data[n+int(l):])
		if err != nil {
			return fmt.Errorf("raftstore: snapshot row: %w", err)
		}
		fn(key, v)
		data = rest
	}
	return nil
}
