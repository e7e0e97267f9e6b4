package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Config names the virtual IP and where it lives. It is a plain value:
// start from DefaultConfig, set Address and Interface, call Validate.
type Config struct {
	// Address is the virtual IP with the prefix length it gets on the
	// interface, e.g. 10.0.0.100/24. Only IPv4 is supported. The prefix
	// decides the route the kernel adds; /32 adds none (see the package
	// documentation on primary and secondary addresses).
	Address netip.Prefix
	// Interface is the name of the network interface that carries the
	// address, e.g. "eth0".
	Interface string
	// Announcements is how many rounds of gratuitous ARP Acquire and
	// Announce send; each round is one ARP request and one ARP reply. More
	// than one survives a lost packet.
	Announcements int
	// AnnounceInterval is the pause between two rounds.
	AnnounceInterval time.Duration
}

// DefaultConfig returns three announcement rounds 100ms apart, so Acquire
// returns about 200ms after the first announcement. Address and Interface
// are left for the caller.
func DefaultConfig() Config {
	return Config{
		Announcements:    3,
		AnnounceInterval: 100 * time.Millisecond,
	}
}

// ErrInvalidConfig is wrapped by Validate's errors.
var ErrInvalidConfig = errors.New("invalid virtual IP config")

// maxAnnouncements bounds Announcements: a burst larger than this is a
// mistake, not insurance.
const maxAnnouncements = 100

// Validate checks the fields and reports the first problem.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	a := c.Address.Addr()
	switch {
	case !c.Address.IsValid():
		return bad("address %q: want an IPv4 address with a prefix length, e.g. 10.0.0.100/24", c.Address.String())
	case a.Is4In6():
		return bad("address %v: write IPv4 addresses in dotted form (a.b.c.d/n)", c.Address)
	case !a.Is4():
		return bad("address %v: only IPv4 is supported", c.Address)
	case c.Address.Bits() == 0:
		return bad("address %v: prefix length 0 would claim every address; use /32 or the subnet's length", c.Address)
	case a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return bad("address %v: not a unicast address", c.Address)
	case c.Address.Bits() <= 30 && a == c.Address.Masked().Addr():
		return bad("address %v: the network address of its subnet is not a host address", c.Address)
	case c.Address.Bits() <= 30 && a == lastAddr(c.Address):
		return bad("address %v: the broadcast address of its subnet is not a host address", c.Address)
	}
	if err := validInterfaceName(c.Interface); err != nil {
		return bad("interface %q: %v", c.Interface, err)
	}
	switch {
	case c.Announcements < 1 || c.Announcements > maxAnnouncements:
		// Without an announcement, neighbours keep sending to the old
		// active's MAC address until their entries expire (tens of
		// seconds on Linux).
		return bad("announcements %d: want 1 to %d", c.Announcements, maxAnnouncements)
	case c.AnnounceInterval < 0:
		return bad("announce interval %v: want >= 0", c.AnnounceInterval)
	}
	return nil
}

// lastAddr returns the highest address of p's subnet (IPv4 only).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	for i := range b {
		b[i] |= byte(host >> (8 * (3 - i)))
	}
	return netip.AddrFrom4(b)
}

// validInterfaceName applies the kernel's rules for interface names
// (dev_valid_name): 1 to 15 bytes, not "." or "..", no '/', ':' or white
// space. Checking here turns a typo into a clear error at start-up rather
// than a "no such device" at failover time.
func validInterfaceName(name string) error {
	switch {
	case name == "":
		return errors.New("want an interface name, e.g. eth0")
	case len(name) > 15:
		return errors.New("longer than 15 bytes")
	case name == "." || name == "..":
		return errors.New("not an interface name")
	case strings.ContainsAny(name, "/:") || strings.IndexFunc(name, isSpace) >= 0:
		return errors.New("contains '/', ':' or white space")
	}
	return nil
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f' || r == 0
}
