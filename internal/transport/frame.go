package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Wire format. Every frame, the handshake's included, is a 4-byte big-endian
// body length followed by the body.
//
// A connection starts with a handshake: the dialer sends a hello, the
// listener answers with an ack and, if the ack says yes, both go on with
// message frames. The dialer sends one-way messages and call requests; the
// listener sends only call replies.
//
//	hello:   "FLCM" | version u8 | sender u64 | target u64 | len u8 | cluster id
//	ack:     "FLCM" | version u8 | status u8 | node u64 | len u8 | reason
//	message: kind u8 | flags u8 | call id uvarint (requests, replies)
//	         | deadline ms uvarint (requests; 0 = none)
//	         | code, message as uvarint length + bytes (error replies)
//	         | payload (the rest)
//
// flags: the low two bits are the frame type (0 one-way, 1 call request,
// 2 call reply); bit 2 marks an error reply. Other bits must be zero.

const (
	magic        = "FLCM"
	wireVersion  = 1
	maxHandshake = 512 // bounds the hello and the ack; checked before any allocation
	maxClusterID = 255
)

type frameType uint8

const (
	typeOneWay  frameType = 0
	typeRequest frameType = 1
	typeReply   frameType = 2

	typeMask  = 0x03
	flagError = 0x04
)

// errMalformed reports bytes that are not a valid frame.
var errMalformed = errors.New("transport: malformed frame")

// frame is a decoded message frame.
type frame struct {
	kind       Kind
	typ        frameType
	callID     uint64 // requests and replies
	deadlineMS uint64 // requests; 0 = no deadline
	isErr      bool   // replies: code and msg are set, payload is empty
	code       string
	msg        string
	payload    []byte
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// headerLen is the length of f's body without the payload.
func (f *frame) headerLen() int {
	n := 2
	if f.typ != typeOneWay {
		n += uvarintLen(f.callID)
	}
	if f.typ == typeRequest {
		n += uvarintLen(f.deadlineMS)
	}
	if f.isErr {
		n += uvarintLen(uint64(len(f.code))) + len(f.code)
		n += uvarintLen(uint64(len(f.msg))) + len(f.msg)
	}
	return n
}

// bodyLen is the length that the frame's prefix carries, which MaxFrame
// bounds.
func (f *frame) bodyLen() int { return f.headerLen() + len(f.payload) }

// appendHeader appends f's length prefix and header to dst. The payload is
// written after it separately, so it is never copied into a scratch buffer.
func (f *frame) appendHeader(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(f.bodyLen()))
	flags := byte(f.typ)
	if f.isErr {
		flags |= flagError
	}
	dst = append(dst, byte(f.kind), flags)
	if f.typ != typeOneWay {
		dst = binary.AppendUvarint(dst, f.callID)
	}
	if f.typ == typeRequest {
		dst = binary.AppendUvarint(dst, f.deadlineMS)
	}
	if f.isErr {
		dst = binary.AppendUvarint(dst, uint64(len(f.code)))
		dst = append(dst, f.code...)
		dst = binary.AppendUvarint(dst, uint64(len(f.msg)))
		dst = append(dst, f.msg...)
	}
	return dst
}

// decodeFrame parses a message frame's body. The payload aliases body.
func decodeFrame(body []byte) (frame, error) {
	var f frame
	if len(body) < 2 {
		return f, fmt.Errorf("%w: %d-byte body", errMalformed, len(body))
	}
	f.kind = Kind(body[0])
	flags := body[1]
	f.typ = frameType(flags & typeMask)
	f.isErr = flags&flagError != 0
	if flags&^(typeMask|flagError) != 0 || f.typ > typeReply || (f.isErr && f.typ != typeReply) {
		return f, fmt.Errorf("%w: flags %#x", errMalformed, flags)
	}
	rest := body[2:]
	var err error
	if f.typ != typeOneWay {
		if f.callID, rest, err = readUvarint(rest); err != nil {
			return f, err
		}
	}
	if f.typ == typeRequest {
		if f.deadlineMS, rest, err = readUvarint(rest); err != nil {
			return f, err
		}
	}
	if f.isErr {
		var b []byte
		if b, rest, err = readBytes(rest); err != nil {
			return f, err
		}
		f.code = string(b)
		if b, rest, err = readBytes(rest); err != nil {
			return f, err
		}
		f.msg = string(b)
	}
	f.payload = rest
	return f, nil
}

func readUvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, b, fmt.Errorf("%w: bad varint", errMalformed)
	}
	return v, b[n:], nil
}

func readBytes(b []byte) ([]byte, []byte, error) {
	n, rest, err := readUvarint(b)
	if err != nil {
		return nil, b, err
	}
	if n > uint64(len(rest)) {
		return nil, b, fmt.Errorf("%w: string of %d bytes in %d", errMalformed, n, len(rest))
	}
	return rest[:n], rest[n:], nil
}

// readFrame reads one frame's body. A length over limit is refused before
// anything is allocated: the caller must then drop the connection, since the
// stream cannot be resynchronized.
func readFrame(r *bufio.Reader, limit int) ([]byte, error) {
	var prefix [4]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(prefix[:])
	if uint64(n) > uint64(limit) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, limit)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}

// hello is the dialer's half of the handshake.
type hello struct {
	from    NodeID // the dialer
	to      NodeID // the node the dialer means to reach
	cluster string
}

func (h hello) append(dst []byte) []byte {
	body := 4 + 1 + 8 + 8 + 1 + len(h.cluster)
	dst = binary.BigEndian.AppendUint32(dst, uint32(body))
	dst = append(dst, magic...)
	dst = append(dst, wireVersion)
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.from))
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.to))
	dst = append(dst, byte(len(h.cluster)))
	return append(dst, h.cluster...)
}

func decodeHello(body []byte) (hello, error) {
	var h hello
	rest, err := checkMagic(body)
	if err != nil {
		return h, err
	}
	if len(rest) < 17 {
		return h, fmt.Errorf("%w: short hello", errMalformed)
	}
	h.from = NodeID(binary.BigEndian.Uint64(rest))
	h.to = NodeID(binary.BigEndian.Uint64(rest[8:]))
	n := int(rest[16])
	rest = rest[17:]
	if n != len(rest) {
		return h, fmt.Errorf("%w: cluster id of %d bytes in %d", errMalformed, n, len(rest))
	}
	h.cluster = string(rest)
	return h, nil
}

// ack is the listener's answer to a hello.
type ack struct {
	ok     bool
	node   NodeID // the listener
	reason string // why the hello was refused
}

func (a ack) append(dst []byte) []byte {
	reason := a.reason
	if len(reason) > 255 {
		reason = reason[:255]
	}
	body := 4 + 1 + 1 + 8 + 1 + len(reason)
	dst = binary.BigEndian.AppendUint32(dst, uint32(body))
	dst = append(dst, magic...)
	dst = append(dst, wireVersion)
	status := byte(1)
	if a.ok {
		status = 0
	}
	dst = append(dst, status)
	dst = binary.BigEndian.AppendUint64(dst, uint64(a.node))
	dst = append(dst, byte(len(reason)))
	return append(dst, reason...)
}

func decodeAck(body []byte) (ack, error) {
	var a ack
	rest, err := checkMagic(body)
	if err != nil {
		return a, err
	}
	if len(rest) < 10 || rest[0] > 1 {
		return a, fmt.Errorf("%w: bad ack", errMalformed)
	}
	a.ok = rest[0] == 0
	a.node = NodeID(binary.BigEndian.Uint64(rest[1:]))
	n := int(rest[9])
	rest = rest[10:]
	if n != len(rest) {
		return a, fmt.Errorf("%w: reason of %d bytes in %d", errMalformed, n, len(rest))
	}
	a.reason = string(rest)
	return a, nil
}

// errVersion reports a peer speaking another version of the protocol.
var errVersion = errors.New("transport: unsupported protocol version")

func checkMagic(body []byte) ([]byte, error) {
	if len(body) < 5 || string(body[:4]) != magic {
		return nil, fmt.Errorf("%w: not a fulcrum transport handshake", errMalformed)
	}
	if body[4] != wireVersion {
		return nil, fmt.Errorf("%w: %d (want %d)", errVersion, body[4], wireVersion)
	}
	return body[5:], nil
}
