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
//	opRanges: ns, resume key (a byte: 0 from the first key, 1 after the
//	         length-prefixed key that follows), a count of spans and per
//	         span its shard uvarint and first and last key hash
//
// A put's reply is empty; a get's is a found byte (0 or 1) and the state
// (length-prefixed, empty when not found); a probe's is empty; a tree
// query's is the level uvarint, a count and 8 bytes per hash (a
// merkle.Answer); a range's is a count and, per key, the key and its state
// (both length-prefixed); a ranges page is a range's reply followed by
// the resume key of the next page, encoded like the request's (0: the
// scan is complete). Refusals travel as Serve errors. Nothing may follow
// the last field.
const wireFormat byte = 1

type op byte

const (
	opPut   op = 1 // merge state into the key (or keep it as a hint for hintFor)
	opGet   op = 2 // return the key's state (or the hint held for hintFor)
	opProbe op = 3 // cheap liveness check before hint delivery
	opTree  op = 4 // anti-entropy: hashes of some nodes of a shard's tree
	opRange op = 5 // anti-entropy: the states of a shard's keys in a hash range
	// opRanges: anti-entropy, one page of the states of a namespace's keys
	// in any of several shards' hash ranges; one scan of the namespace
	// answers every differing range of every shard. It supersedes opRange,
	// which is still served for peers running an older version.
	opRanges op = 6
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
	after   []byte       // opRanges: resume after this key; nil: from the first
	spans   []span       // opRanges

	from uint64 // the peer that sent it (not on the wire; 0: this node)
}

// span is one key-hash range of one shard, for opRanges.
type span struct {
	shard int
	rng   merkle.Range
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
	case opRanges:
		dst = appendField(dst, []byte(r.ns))
		dst = appendResume(dst, r.after)
		dst = binary.AppendUvarint(dst, uint64(len(r.spans)))
		for _, sp := range r.spans {
			dst = binary.AppendUvarint(dst, uint64(sp.shard))
			dst = binary.BigEndian.AppendUint64(dst, sp.rng.First)
			dst = binary.BigEndian.AppendUint64(dst, sp.rng.Last)
		}
	}
	return dst
}

// appendResume encodes a scan's resume key: nil (from the first key, or
// in a reply: complete) as 0, else 1 and the key.
func appendResume(dst, key []byte) []byte {
	if key == nil {
		return append(dst, 0)
	}
	return appendField(append(dst, 1), key)
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
	case opRanges:
		r.ns = string(d.field("namespace"))
		r.after = d.resume("resume key")
		n := d.count("spans", 17)
		for range n {
			sp := span{shard: d.int("shard"), rng: merkle.Range{First: d.uint64("range"), Last: d.uint64("range")}}
			if d.err == nil && sp.rng.First > sp.rng.Last {
				d.fail("range")
			}
			r.spans = append(r.spans, sp)
		}
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

// rangesPage is the reply to opRanges: the matching states of one page of
// the scan and the key to resume after (nil: the scan is complete).
type rangesPage struct {
	entries []Entry
	next    []byte
}

func appendRangesPage(dst []byte, p rangesPage) []byte {
	return appendResume(appendEntries(dst, p.entries), p.next)
}

func decodeRangesPage(b []byte) (rangesPage, error) {
	d := wireDecoder{b: b}
	n := d.count("entries", 2)
	var p rangesPage
	for range n {
		p.entries = append(p.entries, Entry{Key: d.field("key"), Value: d.field("state")})
	}
	p.next = d.resume("resume key")
	if err := d.end(); err != nil {
		return rangesPage{}, err
	}
	return p, nil
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

// resume reads a key encoded by appendResume; a present empty key is
// returned as an empty non-nil slice, so it re-encodes the same.
func (d *wireDecoder) resume(what string) []byte {
	switch d.byte(what) {
	case 0:
		return nil
	case 1:
		if k := d.field(what); k != nil || d.err != nil {
			return k
		}
		return []byte{}
	}
	d.fail(what)
	return nil
}

func (d *wireDecoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrBadMessage, len(d.b))
	}
	return d.err
}
