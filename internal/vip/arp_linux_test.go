package vip

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
)

func TestARPPacket(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	ip := netip.MustParseAddr("10.1.2.100")
	head := []byte{0, 1, 8, 0, 6, 4}
	claim := []byte{0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 10, 1, 2, 100}
	for _, tc := range []struct {
		name string
		op   uint16
		tha  []byte
	}{
		{"request", arpRequest, []byte{0, 0, 0, 0, 0, 0}},
		{"reply", arpReply, mac},
	} {
		want := bytes.Join([][]byte{head, {0, byte(tc.op)}, claim, tc.tha, {10, 1, 2, 100}}, nil)
		if got := arpPacket(tc.op, mac, ip); !bytes.Equal(got, want) {
			t.Errorf("%s: got % x, want % x", tc.name, got, want)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{syscall.EPERM, true},
		{fmt.Errorf("netlink: %w", syscall.EACCES), true},
		{syscall.ENODEV, false},
		{errors.New("other"), false},
	} {
		got := classify(tc.err)
		if errors.Is(got, ErrNotPermitted) != tc.want || !errors.Is(got, tc.err) {
			t.Errorf("classify(%v): got %v, want ErrNotPermitted=%v and the cause kept", tc.err, got, tc.want)
		}
	}
}
