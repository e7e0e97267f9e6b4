package transport

import (
	"bufio"
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	frames := []frame{
		{kind: KindRaft, typ: typeOneWay, payload: []byte("hello")},
		{kind: KindRaft, typ: typeOneWay, payload: []byte{}},
		{kind: KindForward, typ: typeRequest, callID: 1, deadlineMS: 0, payload: []byte("req")},
		{kind: KindForward, typ: typeRequest, callID: 1 << 62, deadlineMS: 1500, payload: []byte("req")},
		{kind: KindControl, typ: typeReply, callID: 300, payload: []byte("rep")},
		{kind: KindControl, typ: typeReply, callID: 300, isErr: true, code: "NOT_LEADER", msg: "leader is 3", payload: []byte{}},
	}
	for _, f := range frames {
		var buf []byte
		buf = f.appendHeader(buf)
		buf = append(buf, f.payload...)
		if len(buf) != 4+f.bodyLen() {
			t.Fatalf("%+v: encoded %d bytes, bodyLen says %d+4", f, len(buf), f.bodyLen())
		}
		body, err := readFrame(bufio.NewReader(bytes.NewReader(buf)), 1<<20)
		if err != nil {
			t.Fatalf("%+v: readFrame: %v", f, err)
		}
		got, err := decodeFrame(body)
		if err != nil {
			t.Fatalf("%+v: decodeFrame: %v", f, err)
		}
		if !reflect.DeepEqual(got, f) {
			t.Errorf("round trip: got %+v, want %+v", got, f)
		}
	}
}

func TestHandshakeRoundTrip(t *testing.T) {
	h := hello{from: 1, to: 2, cluster: "prod"}
	body, err := readFrame(bufio.NewReader(bytes.NewReader(h.append(nil))), maxHandshake)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeHello(body); err != nil || got != h {
		t.Errorf("hello: got %+v, %v; want %+v", got, err, h)
	}
	a := ack{ok: false, node: 2, reason: "cluster id mismatch"}
	body, err = readFrame(bufio.NewReader(bytes.NewReader(a.append(nil))), maxHandshake)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeAck(body); err != nil || got != a {
		t.Errorf("ack: got %+v, %v; want %+v", got, err, a)
	}
	bad := append([]byte(nil), h.append(nil)[4:]...)
	bad[4] = 9 // version
	if _, err := decodeHello(bad); !errors.Is(err, errVersion) {
		t.Errorf("hello of version 9: %v, want errVersion", err)
	}
}

func TestReadFrameLimit(t *testing.T) {
	buf := []byte{0, 0, 1, 0} // 256-byte body
	if _, err := readFrame(bufio.NewReader(bytes.NewReader(buf)), 255); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("readFrame over the limit: %v, want ErrFrameTooLarge", err)
	}
}

// FuzzDecode checks that no input makes the decoders panic, and that what
// decodes re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{byte(KindRaft), 0, 'x'})
	f.Add([]byte{byte(KindForward), 1, 5, 10, 'r'})
	f.Add([]byte{byte(KindControl), 6, 5, 2, 'N', 'L', 1, 'm'})
	f.Add(hello{from: 1, to: 2, cluster: "c"}.append(nil)[4:])
	f.Add(ack{ok: true, node: 2}.append(nil)[4:])
	f.Fuzz(func(t *testing.T, body []byte) {
		decodeHello(body)
		decodeAck(body)
		fr, err := decodeFrame(body)
		if err != nil {
			return
		}
		enc := append(fr.appendHeader(nil), fr.payload...)
		if fr.typ != typeOneWay && !bytes.Equal(enc[4:], body) {
			// Varints have one canonical form on encode but several on decode;
			// only the decoded values must survive.
			again, err := decodeFrame(enc[4:])
			if err != nil || !reflect.DeepEqual(again, fr) {
				t.Fatalf("re-encoding %x gave %x (%v)", body, enc[4:], err)
			}
		}
	})
}
