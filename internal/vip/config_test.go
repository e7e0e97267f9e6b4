package vip

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string // substring of the error; "" means valid
	}{
		{"valid /24", func(*Config) {}, ""},
		{"valid /32", func(c *Config) { c.Address = netip.MustParsePrefix("192.0.2.7/32") }, ""},
		{"valid /31 end", func(c *Config) { c.Address = netip.MustParsePrefix("192.0.2.1/31") }, ""},
		{"no address", func(c *Config) { c.Address = netip.Prefix{} }, "want an IPv4 address"},
		{"IPv6", func(c *Config) { c.Address = netip.MustParsePrefix("2001:db8::1/64") }, "only IPv4"},
		{"IPv4-mapped", func(c *Config) { c.Address = netip.MustParsePrefix("::ffff:10.0.0.1/120") }, "dotted form"},
		{"prefix 0", func(c *Config) { c.Address = netip.MustParsePrefix("10.0.0.1/0") }, "prefix length 0"},
		{"unspecified", func(c *Config) { c.Address = netip.MustParsePrefix("0.0.0.0/32") }, "not a unicast"},
		{"multicast", func(c *Config) { c.Address = netip.MustParsePrefix("224.0.0.1/32") }, "not a unicast"},
		{"network address", func(c *Config) { c.Address = netip.MustParsePrefix("10.1.2.0/24") }, "network address"},
		{"broadcast address", func(c *Config) { c.Address = netip.MustParsePrefix("10.1.2.255/24") }, "broadcast address"},
		{"broadcast /30", func(c *Config) { c.Address = netip.MustParsePrefix("10.1.2.7/30") }, "broadcast address"},
		{"no interface", func(c *Config) { c.Interface = "" }, "want an interface name"},
		{"long interface", func(c *Config) { c.Interface = "abcdefghijklmnop" }, "longer than 15"},
		{"15-byte interface", func(c *Config) { c.Interface = "abcdefghijklmno" }, ""},
		{"label as interface", func(c *Config) { c.Interface = "eth0:1" }, "contains"},
		{"space in interface", func(c *Config) { c.Interface = "eth 0" }, "contains"},
		{"dot interface", func(c *Config) { c.Interface = ".." }, "not an interface name"},
		{"no announcements", func(c *Config) { c.Announcements = 0 }, "announcements 0"},
		{"too many announcements", func(c *Config) { c.Announcements = maxAnnouncements + 1 }, "announcements"},
		{"negative interval", func(c *Config) { c.AnnounceInterval = -time.Millisecond }, "announce interval"},
		{"back-to-back rounds", func(c *Config) { c.AnnounceInterval = 0 }, ""},
	} {
		c := DefaultConfig()
		c.Address = netip.MustParsePrefix("10.1.2.100/24")
		c.Interface = "eth0"
		tc.change(&c)
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: got %v, want valid", tc.name, err)
		case tc.want != "" && (err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want ErrInvalidConfig mentioning %q", tc.name, err, tc.want)
		}
		if _, nerr := New(c); (nerr == nil) != (err == nil) {
			t.Errorf("%s: New got %v, Validate got %v", tc.name, nerr, err)
		}
	}
}

func TestLastAddr(t *testing.T) {
	for _, tc := range []struct{ prefix, want string }{
		{"10.1.2.100/24", "10.1.2.255"},
		{"10.1.2.100/16", "10.1.255.255"},
		{"10.1.2.5/30", "10.1.2.7"},
		{"10.1.2.5/32", "10.1.2.5"},
		{"10.1.2.5/1", "127.255.255.255"},
	} {
		if got := lastAddr(netip.MustParsePrefix(tc.prefix)); got.String() != tc.want {
			t.Errorf("lastAddr(%s): got %v, want %s", tc.prefix, got, tc.want)
		}
	}
}
