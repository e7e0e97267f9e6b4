package primary

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/fulcrumdb/fulcrum/internal/failover"
	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// ErrCorrupt is wrapped by the errors of decoding a message or a persisted
// record that does not parse.
var ErrCorrupt = errors.New("primary: corrupt encoding")

// Message types, the first byte of every KindPrimary payload. Values are
// part of the wire format: never renumber one.
const (
	msgAppend   byte = 1 // primary -> replica, one-way
	msgAck      byte = 2 // replica -> primary, one-way
	msgStale    byte = 3 // either way, one-way: "your epoch is old"
	msgSnapshot byte = 4 // replica -> primary, Call
)

// entry is one replication log entry: the write's batch, encoded with its
// Revision (= LSN), Now and Timestamp filled in by the primary and no
// Marks, so every replica applies it to the same result.
type entry struct {
	LSN   failover.LSN
	Epoch failover.Epoch
	Data  []byte // kv.AppendBatch encoding
}

// appendMsg carries entries (possibly none: a heartbeat) and what the
// replica needs to reconcile and measure its lag.
type appendMsg struct {
	Shard       int
	Epoch       failover.Epoch
	PrimaryLast failover.LSN // the primary's last LSN when sent
	TailStart   failover.LSN // the primary's first retained LSN
	History     []failover.EpochStart
	Entries     []entry
}

// ackMsg reports a replica's applied LSN. Reset asks the primary to resend
// from Applied+1: the replica could not use what it got (a gap).
type ackMsg struct {
	Shard   int
	Epoch   failover.Epoch
	Applied failover.LSN
	Reset   bool
}

// staleMsg answers a message of an older epoch with the receiver's epoch.
type staleMsg struct {
	Shard int
	Epoch failover.Epoch
}

// snapshotReq asks the primary of Epoch for a snapshot of Shard.
type snapshotReq struct {
	Shard int
	Epoch failover.Epoch
}

// row is one stored value of a snapshot.
type row struct {
	NS    string
	Key   []byte
	Value kv.Value
}

// snapshot is a consistent copy of a shard at log position Last.
type snapshot struct {
	Epoch     failover.Epoch // the serving primary's epoch
	Last      failover.LSN
	LastEpoch failover.Epoch
	History   []failover.EpochStart
	Rows      []row
}

// enc appends varints and byte strings.
type enc []byte

func (e enc) u(v uint64) enc     { return binary.AppendUvarint(e, v) }
func (e enc) bytes(b []byte) enc { return append(e.u(uint64(len(b))), b...) }
func (e enc) str(s string) enc   { return append(e.u(uint64(len(s))), s...) }
func (e enc) boolean(b bool) enc { return e.u(b2u(b)) }
func (e enc) hist(h []failover.EpochStart) enc {
	e = e.u(uint64(len(h)))
	for _, s := range h {
		e = e.u(uint64(s.Epoch)).u(uint64(s.Start))
	}
	return e
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// dec reads what enc wrote; the first failure sticks in err.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, what)
	}
}

func (d *dec) u(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) bytes(what string) []byte {
	n := d.u(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	out := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	return out
}

// count reads a length that must fit in the rest of the input at minSize
// bytes per element, so corrupt input cannot allocate without bound.
func (d *dec) count(what string, minSize int) int {
	n := d.u(what)
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.fail(what)
		return 0
	}
	return int(n)
}

func (d *dec) hist() []failover.EpochStart {
	n := d.count("history length", 2)
	var h []failover.EpochStart
	for range n {
		h = append(h, failover.EpochStart{Epoch: failover.Epoch(d.u("epoch")), Start: failover.LSN(d.u("start"))})
	}
	return h
}

func (d *dec) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
	return d.err
}

func encodeAppend(m *appendMsg) []byte {
	e := enc{msgAppend}.u(uint64(m.Shard)).u(uint64(m.Epoch)).u(uint64(m.PrimaryLast)).u(uint64(m.TailStart)).hist(m.History)
	e = e.u(uint64(len(m.Entries)))
	for _, en := range m.Entries {
		e = e.u(uint64(en.LSN)).u(uint64(en.Epoch)).bytes(en.Data)
	}
	return e
}

func decodeAppend(b []byte) (appendMsg, error) {
	d := dec{b: b}
	m := appendMsg{Shard: int(d.u("shard")), Epoch: failover.Epoch(d.u("epoch")),
		PrimaryLast: failover.LSN(d.u("primary last")), TailStart: failover.LSN(d.u("tail start"))}
	m.History = d.hist()
	n := d.count("entries", 3)
	for range n {
		m.Entries = append(m.Entries, entry{LSN: failover.LSN(d.u("lsn")), Epoch: failover.Epoch(d.u("entry epoch")), Data: d.bytes("entry data")})
	}
	return m, d.end()
}

func encodeAck(m ackMsg) []byte {
	return enc{msgAck}.u(uint64(m.Shard)).u(uint64(m.Epoch)).u(uint64(m.Applied)).boolean(m.Reset)
}

func decodeAck(b []byte) (ackMsg, error) {
	d := dec{b: b}
	m := ackMsg{Shard: int(d.u("shard")), Epoch: failover.Epoch(d.u("epoch")), Applied: failover.LSN(d.u("applied")), Reset: d.u("reset") != 0}
	return m, d.end()
}

func encodeStale(m staleMsg) []byte {
	return enc{msgStale}.u(uint64(m.Shard)).u(uint64(m.Epoch))
}

func decodeStale(b []byte) (staleMsg, error) {
	d := dec{b: b}
	m := staleMsg{Shard: int(d.u("shard")), Epoch: failover.Epoch(d.u("epoch"))}
	return m, d.end()
}

func encodeSnapshotReq(m snapshotReq) []byte {
	return enc{msgSnapshot}.u(uint64(m.Shard)).u(uint64(m.Epoch))
}

func decodeSnapshotReq(b []byte) (snapshotReq, error) {
	d := dec{b: b}
	m := snapshotReq{Shard: int(d.u("shard")), Epoch: failover.Epoch(d.u("epoch"))}
	return m, d.end()
}

func encodeSnapshot(s *snapshot) []byte {
	e := enc{}.u(uint64(s.Epoch)).u(uint64(s.Last)).u(uint64(s.LastEpoch)).hist(s.History)
	e = e.u(uint64(len(s.Rows)))
	for _, r := range s.Rows {
		e = e.str(r.NS).bytes(r.Key).bytes(kv.AppendValue(nil, r.Value))
	}
	return e
}

func decodeSnapshot(b []byte) (snapshot, error) {
	d := dec{b: b}
	s := snapshot{Epoch: failover.Epoch(d.u("epoch")), Last: failover.LSN(d.u("last")), LastEpoch: failover.Epoch(d.u("last epoch"))}
	s.History = d.hist()
	n := d.count("rows", 3)
	for range n {
		r := row{NS: string(d.bytes("namespace")), Key: d.bytes("key")}
		raw := d.bytes("value")
		if d.err != nil {
			break
		}
		v, rest, err := kv.DecodeValue(raw)
		if err != nil || len(rest) != 0 {
			d.fail("row value")
			break
		}
		r.Value = v
		s.Rows = append(s.Rows, r)
	}
	return s, d.end()
}

// state is a shard replica's persisted position, written as a storage
// mark atomically with every batch that changes it.
type state struct {
	Epoch     failover.Epoch  // highest epoch seen
	Primary   failover.NodeID // that epoch's primary, if known
	Last      failover.LSN    // last applied entry
	LastEpoch failover.Epoch  // its epoch
	TailStart failover.LSN    // first LSN whose log mark exists
	// NeedSnapshot: lost writes were moved aside but their effects are
	// still in the rows; only a snapshot from the primary repairs them.
	NeedSnapshot bool
	Lost         uint64 // writes moved aside so far
	// LostUnrecorded counts the lost writes that had left the retained
	// tail, so only their number is known.
	LostUnrecorded uint64
	History        []failover.EpochStart
}

func encodeState(s *state) []byte {
	return enc{}.u(uint64(s.Epoch)).u(uint64(s.Primary)).u(uint64(s.Last)).u(uint64(s.LastEpoch)).
		u(uint64(s.TailStart)).boolean(s.NeedSnapshot).u(s.Lost).u(s.LostUnrecorded).hist(s.History)
}

func decodeState(b []byte) (state, error) {
	d := dec{b: b}
	s := state{Epoch: failover.Epoch(d.u("epoch")), Primary: failover.NodeID(d.u("primary")), Last: failover.LSN(d.u("last")),
		LastEpoch: failover.Epoch(d.u("last epoch")), TailStart: failover.LSN(d.u("tail start")), NeedSnapshot: d.u("need snapshot") != 0,
		Lost: d.u("lost"), LostUnrecorded: d.u("lost unrecorded")}
	s.History = d.hist()
	return s, d.end()
}

// Persisted log entries: a mark per LSN holding the epoch and the data.
func encodeLogMark(en entry) []byte { return enc{}.u(uint64(en.Epoch)).bytes(en.Data) }

func decodeLogMark(lsn failover.LSN, b []byte) (entry, error) {
	d := dec{b: b}
	en := entry{LSN: lsn, Epoch: failover.Epoch(d.u("epoch")), Data: d.bytes("data")}
	return en, d.end()
}

// Mark keys: "primary/" + shard (8 bytes) + kind byte [+ LSN (8 bytes)].
func markKey(shard int, kind byte, lsn failover.LSN) []byte {
	k := append([]byte("primary/"), 0, 0, 0, 0, 0, 0, 0, 0, kind)
	binary.BigEndian.PutUint64(k[8:16], uint64(shard))
	if kind == 'l' {
		k = binary.BigEndian.AppendUint64(k, uint64(lsn))
	}
	return k
}

func stateKey(shard int) []byte                 { return markKey(shard, 's', 0) }
func logKey(shard int, lsn failover.LSN) []byte { return markKey(shard, 'l', lsn) }

// LostNamespace is the reserved namespace holding the writes set aside by
// reconciliation (see Engine.LostWrites). The router must refuse client
// requests for it, as for every namespace beginning with "_".
const LostNamespace = "_primary.lost"

// lostKey orders lost writes by shard, epoch and LSN.
func lostKey(shard int, epoch failover.Epoch, lsn failover.LSN) []byte {
	k := binary.BigEndian.AppendUint64(nil, uint64(shard))
	k = binary.BigEndian.AppendUint64(k, uint64(epoch))
	return binary.BigEndian.AppendUint64(k, uint64(lsn))
}
