package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/fulcrumdb/fulcrum/internal/merkle"

	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// KindLeaderless is the transport kind of the engine's replica calls.
const KindLeaderless = transport.KindLeaderless

// ErrBadMessage is the cause of every decoding error of a replica message.
var ErrBadMessage = errors.New("leaderless: malformed message")

// The wire format of a request (all Calls of KindLeaderless):
//
//	format byte (wireFormat), op byte
//	opPut:   ns, key (uvarint length + bytes), hintFor uvarint, flags byte,
//	         state (uvarint length + versionvec.Siblings encoding)
//	opGet:   ns, key, hintFor uvarint
//	opProbe: nothing
//	opTree:  ns, shard uvarint, depth uvarint, level uvarint, node count
//	         uvarint and each node uvarint (a merkle.Query)
//	opRange: ns, shard uvarint, first and last key hash (8 bytes each, big
//	         endian)
//
// A put's reply is empty; a get's is a found byte (0 or 1) and the state
// (length-prefixed, empty when not found); a probe's is empty; a tree
// query's is the level uvarint, a count and 8 bytes per hash (a
// merkle.Answer); a range's is a count and, per key, the key and its state
// (both length-prefixed). Refusals
// travel as Serve errors. Nothing may follow the last field.
const wireFormat byte = 1

type op byte

const (
	opPut   op = 1 // merge state into the key (or keep it as a hint for hintFor)
	opGet   op = 2 // return the key's state (or the hint held for hintFor)
	opProbe op = 3 // cheap liveness check before hint delivery
	opTree  op = 4 // anti-entropy: hashes of some nodes of a shard's tree
	opRange op = 5 // anti-entropy: the states of a shard's keys in a hash range
)

const flagLWW = 1 // the namespace keeps only the last-writer-wins winner

// request is one replica call.
type request struct {
	op      op
	ns      string
	key     []byte
	hintFor uint64 // 0: for the receiver itself
	lww     bool
	state   []byte       // encoded versionvec.Siblings (opPut)
	shard   int          // opTree, opRange
	query   merkle.Query // opTree
	rng     merkle.Range // opRange
}

func appendRequest(dst []byte, r request) []byte {
	dst = append(dst, wireFormat, byte(r.op))
	switch r.op {
	case opPut:
		dst = appendField(dst, []byte(r.ns))
		dst = appendField(dst, r.key)
		dst = binary.AppendUvarint(dst, r.hintFor)
		var flags byte
		if r.lww {
			flags |= flagLWW
		}
		dst = append(dst, flags)
		dst = appendField(dst, r.state)
	case opGet:
		dst = appendField(dst, []byte(r.ns))
		dst = appendField(dst, r.key)
		dst = binary.AppendUvarint(dst, r.hintFor)
	case opTree:
		dst = appendField(dst, []byte(r.ns))
		dst = binary.AppendUvarint(dst, uint64(r.shard))
		dst = binary.AppendUvarint(dst, uint64(r.query.Depth))
		dst = binary.AppendUvarint(dst, uint64(r.query.Level))
		dst = binary.AppendUvarint(dst, uint64(len(r.query.Nodes)))
		for _, n := range r.query.Nodes {
			dst = binary.AppendUvarint(dst, uint64(n))
		}
	case opRange:
		dst = appendField(dst, []byte(r.ns))
		dst = binary.AppendUvarint(dst, uint64(r.shard))
		dst = binary.BigEndian.AppendUint64(dst, r.rng.First)
		dst = binary.BigEndian.AppendUint64(dst, r.rng.Last)
	}
	return dst
}

func decodeRequest(b []byte) (request, error) {
	d := wireDecoder{b: b}
	if f := d.byte("format"); d.err == nil && f != wireFormat {
		return request{}, fmt.Errorf("%w: unknown format %d", ErrBadMessage, f)
	}
	r := request{op: op(d.byte("op"))}
	switch r.op {
	case opPut:
		r.ns = string(d.field("namespace"))
		r.key = d.field("key")
		r.hintFor = d.uvarint("hint owner")
		flags := d.byte("flags")
		if d.err == nil && flags&^flagLWW != 0 {
			d.fail("flags")
		}
		r.lww = flags&flagLWW != 0
		r.state = d.field("state")
	case opGet:
		r.ns = string(d.field("namespace"))
		r.key = d.field("key")
		r.hintFor = d.uvarint("hint owner")
	case opProbe:
	case opTree:
		r.ns = string(d.field("namespace"))
		r.shard = d.int("shard")
		r.query.Depth = d.int("depth")
		r.query.Level = d.int("level")
		n := d.count("nodes", 1)
		for range n {
			r.query.Nodes = append(r.query.Nodes, d.int("node"))
		}
	case opRange:
		r.ns = string(d.field("namespace"))
		r.shard = d.int("shard")
		r.rng.First = d.uint64("range")
		r.rng.Last = d.uint64("range")
	default:
		if d.err == nil {
			d.err = fmt.Errorf("%w: unknown op %d", ErrBadMessage, r.op)
		}
	}
	if err := d.end(); err != nil {
		return request{}, err
	}
	return r, nil
}

// getReply is the answer to opGet.
type getReply struct {
	found bool
	state []byte
}

func appendGetReply(dst []byte, g getReply) []byte {
	var f byte
	if g.found {
		f = 1
	}
	return appendField(append(dst, f), g.state)
}

func decodeGetReply(b []byte) (getReply, error) {
	d := wireDecoder{b: b}
	f := d.byte("found")
	if d.err == nil && f > 1 {
		d.fail("found")
	}
	g := getReply{found: f == 1, state: d.field("state")}
	if err := d.end(); err != nil {
		return getReply{}, err
	}
	return g, nil
}

func appendAnswer(dst []byte, a merkle.Answer) []byte {
	dst = binary.AppendUvarint(dst, uint64(a.Level))
	dst = binary.AppendUvarint(dst, uint64(len(a.Hashes)))
	for _, h := range a.Hashes {
		dst = binary.BigEndian.AppendUint64(dst, h)
	}
	return dst
}

func decodeAnswer(b []byte) (merkle.Answer, error) {
	d := wireDecoder{b: b}
	a := merkle.Answer{Level: d.int("level")}
	n := d.count("hashes", 8)
	for range n {
		a.Hashes = append(a.Hashes, d.uint64("hash"))
	}
	return a, d.end()
}

func appendEntries(dst []byte, es []Entry) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(es)))
	for _, e := range es {
		dst = appendField(dst, e.Key)
		dst = appendField(dst, e.Value)
	}
	return dst
}

func decodeEntries(b []byte) ([]Entry, error) {
	d := wireDecoder{b: b}
	n := d.count("entries", 2)
	var es []Entry
	for range n {
		es = append(es, Entry{Key: d.field("key"), Value: d.field("state")})
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return es, nil
}

func appendField(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// wireDecoder reads fields until the first error, which it keeps. Lengths
// are checked against the bytes left before anything is allocated.
type wireDecoder struct {
	b       []byte
	err     error
	scratch [binary.MaxVarintLen64]byte
}

func (d *wireDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", ErrBadMessage, what)
	}
}

func (d *wireDecoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail(what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *wireDecoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != len(binary.AppendUvarint(d.scratch[:0], v)) { // overlong: one encoding per message
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// int reads a uvarint that must fit an int.
func (d *wireDecoder) int(what string) int {
	v := d.uvarint(what)
	if d.err == nil && v > math.MaxInt32 {
		d.fail(what)
		return 0
	}
	return int(v)
}

// count reads an element count and checks it against the bytes left (each
// element takes at least minSize), so a corrupt count cannot allocate.
func (d *wireDecoder) count(what string, minSize int) int {
	n := d.int(what)
	if d.err == nil && n > len(d.b)/minSize {
		d.fail(what)
		return 0
	}
	return n
}

func (d *wireDecoder) uint64(what string) uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *wireDecoder) field(what string) []byte {
	l := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if l > uint64(len(d.b)) {
		d.fail(what)
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

func (d *wireDecoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrBadMessage, len(d.b))
	}
	return d.err
}
