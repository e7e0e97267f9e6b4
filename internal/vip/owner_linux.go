package vip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
)

// dumpRetries bounds how often an address dump interrupted by a concurrent
// change is repeated before giving up.
const dumpRetries = 5

// Acquire adds the address to the interface unless it is already there,
// then announces it (see Announce). It is idempotent; calling it again
// re-announces. If the announcement fails the address stays added and the
// error says so; retry Acquire or Release.
func (o *Owner) Acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("acquire %v: %w", o, err)
	}
	if err := o.add(); err != nil {
		return err
	}
	return o.Announce(ctx)
}

// add puts the address on the interface if it is missing, without
// announcing it.
func (o *Owner) add() error {
	link, held, err := o.state()
	if err != nil {
		return fmt.Errorf("acquire %v: %w", o, err)
	}
	if held {
		return nil
	}
	err = netlink.AddrAdd(link, o.addr())
	if errors.Is(err, syscall.EEXIST) {
		// Someone added it between our look and our add; make sure it
		// is ours (same prefix length) rather than a conflicting one.
		if _, _, err := o.state(); err != nil {
			return fmt.Errorf("acquire %v: %w", o, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("acquire %v: add address: %w", o, classify(err))
	}
	return nil
}

// Release removes the address from the interface if it is there. It is
// idempotent: an address already gone is not an error.
func (o *Owner) Release(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("release %v: %w", o, err)
	}
	link, held, err := o.state()
	if err != nil {
		return fmt.Errorf("release %v: %w", o, err)
	}
	if !held {
		return nil
	}
	err = netlink.AddrDel(link, o.addr())
	if err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
		// EADDRNOTAVAIL: removed by someone else since we looked.
		return fmt.Errorf("release %v: remove address: %w", o, classify(err))
	}
	return nil
}

// Held reports whether the interface carries the address with the
// configured prefix length; the address with another prefix length is
// ErrConflict. It needs no privilege.
func (o *Owner) Held() (bool, error) {
	_, held, err := o.state()
	if err != nil {
		return false, fmt.Errorf("check %v: %w", o, err)
	}
	return held, nil
}

// Announce broadcasts Config.Announcements rounds of gratuitous ARP for the
// address on the interface, Config.AnnounceInterval apart: each round an
// ARP request and an ARP reply whose sender and target are the address,
// the two forms Linux takes to update an existing neighbour entry to this
// interface's MAC address (other stacks accept one or the other). It returns
// ErrNotHeld if the interface lacks the address, and sends nothing on an
// interface that does not use ARP (loopback, point-to-point, IFF_NOARP).
func (o *Owner) Announce(ctx context.Context) error {
	link, held, err := o.state()
	if err != nil {
		return fmt.Errorf("announce %v: %w", o, err)
	}
	if !held {
		return fmt.Errorf("announce %v: %w", o, ErrNotHeld)
	}
	attrs := link.Attrs()
	if attrs.RawFlags&syscall.IFF_NOARP != 0 || len(attrs.HardwareAddr) != 6 {
		return nil
	}
	if err := announce(ctx, attrs.Index, attrs.HardwareAddr, o.cfg.Address.Addr(), o.cfg.Announcements, o.cfg.AnnounceInterval); err != nil {
		return fmt.Errorf("announce %v: %w", o, err)
	}
	return nil
}

// state looks up the interface and whether it carries the address. An
// address with another prefix length is ErrConflict.
func (o *Owner) state() (netlink.Link, bool, error) {
	link, err := netlink.LinkByName(o.cfg.Interface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, false, fmt.Errorf("%w: %s", ErrNoInterface, o.cfg.Interface)
		}
		return nil, false, fmt.Errorf("look up interface: %w", classify(err))
	}
	var addrs []netlink.Addr
	for range dumpRetries {
		addrs, err = netlink.AddrList(link, netlink.FAMILY_V4)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("list addresses: %w", classify(err))
	}
	want := o.cfg.Address.Addr().AsSlice()
	for _, a := range addrs {
		if a.IPNet == nil || !a.IP.Equal(net.IP(want)) {
			continue
		}
		if ones, _ := a.Mask.Size(); ones != o.cfg.Address.Bits() {
			return nil, false, fmt.Errorf("%w: %v/%d is on %s, configured %v", ErrConflict, o.cfg.Address.Addr(), ones, o.cfg.Interface, o.cfg.Address)
		}
		return link, true, nil
	}
	return link, false, nil
}

// addr returns a fresh netlink address for the configuration; fresh
// because netlink fills in the broadcast address of what it is given.
func (o *Owner) addr() *netlink.Addr {
	p := o.cfg.Address
	return &netlink.Addr{IPNet: &net.IPNet{
		IP:   net.IP(p.Addr().AsSlice()),
		Mask: net.CIDRMask(p.Bits(), 32),
	}}
}

// classify wraps err with ErrNotPermitted when the kernel refused for lack
// of privilege.
func classify(err error) error {
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("%w: %w", ErrNotPermitted, err)
	}
	return err
}
