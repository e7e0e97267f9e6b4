// Package vip moves a service address (a virtual IP) between the nodes of
// an active-passive pair: the active node adds the address to a network
// interface and announces it with gratuitous ARP so that neighbours send
// to its MAC address at once; on demotion it removes the address.
//
// An Owner is built from a Config (an IPv4 prefix such as 10.0.0.100/24 and
// an interface name) and offers Acquire, Release, Held and Announce. It
// keeps no state of its own: the kernel's address table is the truth, so a
// restarted process sees what it held, and two Owners for the same
// address in one network namespace agree.
//
// # Guarantees
//
//   - Acquire is idempotent: it adds the address only if the interface
//     lacks it and announces it every time, so calling it again after an
//     error or periodically re-announces without harm. When Acquire
//     returns nil the address is on the interface and Config.Announcements
//     rounds of gratuitous ARP (a request and a reply, each broadcast) have
//     been handed to the interface.
//   - Release is idempotent: it removes the address if present and
//     returns nil when the address is already gone.
//   - Announce sends only for an address this host holds (ErrNotHeld
//     otherwise), so it cannot redirect traffic away from the active node.
//   - Errors caused by missing privilege wrap ErrNotPermitted; on a system
//     other than Linux every method returns an error wrapping
//     ErrNotSupported. Both mean "this node cannot take over the address",
//     and the caller falls back to clients following the active node.
//   - Nothing here starts a goroutine. Announce waits between rounds and
//     honours its context; the netlink calls do not block.
//
// # What it does not do
//
// It does not decide who is active: that is the failover package's and
// the control plane's business, and fencing by epoch protects the data
// even while two nodes briefly hold the address. Gratuitous ARP updates a
// neighbour that already has an entry for the address (Linux does by
// default); neighbours without one resolve it normally. IPv6 is not
// supported yet: it would need unsolicited neighbour advertisements.
//
// Removing the first (primary) address of a subnet from an interface also
// removes the other addresses in that subnet unless the interface has
// net.ipv4.conf.<if>.promote_secondaries=1. Give the virtual IP a /32
// prefix, or put it in a subnet the interface already has an address in,
// so that it is a secondary address and Release removes only itself.
//
// The process needs CAP_NET_ADMIN (to change addresses) and CAP_NET_RAW
// (to send ARP) in the interface's network namespace.
package vip
