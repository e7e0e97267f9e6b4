package vip

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// ARP operations (RFC 826).
const (
	arpRequest = 1
	arpReply   = 2
)

// arpPacket returns an Ethernet/IPv4 ARP packet (RFC 826) in which mac
// claims ip: sender and target protocol address are both ip. A request
// carries a zero target hardware address (an RFC 5227 announcement); a
// reply carries mac again, which Linux requires before it treats a reply
// as gratuitous.
func arpPacket(op uint16, mac net.HardwareAddr, ip netip.Addr) []byte {
	ip4 := ip.As4()
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)             // hardware type: Ethernet
	binary.BigEndian.PutUint16(b[2:], unix.ETH_P_IP) // protocol type: IPv4
	b[4], b[5] = 6, 4                                // address lengths
	binary.BigEndian.PutUint16(b[6:], op)            // operation
	copy(b[8:14], mac)                               // sender hardware address
	copy(b[14:18], ip4[:])                           // sender protocol address
	if op == arpReply {
		copy(b[18:24], mac) // target hardware address (zero in a request)
	}
	copy(b[24:28], ip4[:]) // target protocol address
	return b
}

// announce broadcasts rounds of gratuitous ARP (a request, then a reply)
// for ip from mac out of the interface with index ifindex, waiting
// interval between rounds.
func announce(ctx context.Context, ifindex int, mac net.HardwareAddr, ip netip.Addr, rounds int, interval time.Duration) error {
	// A datagram packet socket lets the kernel build the Ethernet header
	// from the destination below. Protocol 0 means the socket receives
	// nothing, so no incoming ARP queues up in it. Non-blocking: a full
	// transmit queue is an error, not a hang.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("open packet socket: %w", classify(err))
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{
		Protocol: htons(unix.ETH_P_ARP),
		Ifindex:  ifindex,
		Halen:    6,
		Addr:     [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, // broadcast
	}
	packets := [][]byte{arpPacket(arpRequest, mac, ip), arpPacket(arpReply, mac, ip)}
	var timer *time.Timer
	for round := range rounds {
		if round > 0 {
			if timer == nil {
				timer = time.NewTimer(interval)
				defer timer.Stop()
			} else {
				timer.Reset(interval)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("gratuitous ARP round %d of %d: %w", round+1, rounds, ctx.Err())
			case <-timer.C:
			}
		}
		for _, p := range packets {
			if err := unix.Sendto(fd, p, 0, to); err != nil {
				return fmt.Errorf("send gratuitous ARP round %d of %d: %w", round+1, rounds, classify(err))
			}
		}
	}
	return nil
}

// htons converts a 16-bit value to network byte order as the kernel reads
// it from a native integer field.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
