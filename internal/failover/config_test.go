package failover

import (
	"errors"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		ok     bool
	}{
		{"default", func(*Config) {}, true},
		{"no lease", func(c *Config) { c.LeaseDuration = 0 }, false},
		{"negative drift", func(c *Config) { c.MaxDrift = -1 }, false},
		{"drift eats the lease", func(c *Config) { c.MaxDrift = c.LeaseDuration }, false},
		{"no drift", func(c *Config) { c.MaxDrift = 0 }, true},
		{"negative margin", func(c *Config) { c.Margin = -1 }, false},
		{"renewals as slow as the window", func(c *Config) { c.RenewInterval = c.LeaseDuration - c.MaxDrift }, false},
		{"no renewals", func(c *Config) { c.RenewInterval = 0 }, false},
		{"zero lag allowed", func(c *Config) { c.MaxLagLSN = 0 }, false},
		{"no lag time", func(c *Config) { c.MaxLagTime = 0 }, false},
	} {
		c := DefaultConfig()
		tc.change(&c)
		err := c.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidConfig)) {
			t.Fatalf("%s: got %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	// The default fails over within a second: lease + margin.
	if c := DefaultConfig(); c.LeaseDuration+c.Margin > time.Second {
		t.Fatalf("default failover bound: got %v, want at most 1s", c.LeaseDuration+c.Margin)
	}
}

func TestStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{AckSync.String(), "sync"}, {AckMode(9).String(), "AckMode(9)"},
		{Left.String(), "left"}, {Joined.String(), "joined"}, {Change(0).String(), "Change(0)"},
		{NoAction.String(), "no-action"}, {Promote.String(), "promote"}, {Unavailable.String(), "unavailable"}, {Action(7).String(), "Action(7)"},
	} {
		if tc.got != tc.want {
			t.Fatalf("got %q, want %q", tc.got, tc.want)
		}
	}
}
