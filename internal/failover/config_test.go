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

func TestConfigFor(t *testing.T) {
	if got, want := ConfigFor(time.Second), DefaultConfig(); got != want {
		t.Fatalf("ConfigFor(1s): got %+v, want DefaultConfig %+v", got, want)
	}
	for _, tc := range []struct {
		timeout                       time.Duration
		lease, margin, renew, maxLagT time.Duration
	}{
		{100 * time.Millisecond, 80 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond},
		{300 * time.Millisecond, 240 * time.Millisecond, 30 * time.Millisecond, 60 * time.Millisecond, 150 * time.Millisecond},
		{time.Minute, 48 * time.Second, 6 * time.Second, 12 * time.Second, 30 * time.Second},
	} {
		c := ConfigFor(tc.timeout)
		if c.LeaseDuration != tc.lease || c.Margin != tc.margin || c.RenewInterval != tc.renew || c.MaxLagTime != tc.maxLagT {
			t.Errorf("ConfigFor(%v): got lease %v margin %v renew %v max lag %v, want %v %v %v %v",
				tc.timeout, c.LeaseDuration, c.Margin, c.RenewInterval, c.MaxLagTime, tc.lease, tc.margin, tc.renew, tc.maxLagT)
		}
	}
	// Every timeout a policy or the configuration may hold (100ms to 1m,
	// whole milliseconds) gives valid bounds that fail over within it.
	prev := Config{}
	for ms := 100; ms <= 60_000; ms++ {
		timeout := time.Duration(ms) * time.Millisecond
		c := ConfigFor(timeout)
		if err := c.Validate(); err != nil {
			t.Fatalf("ConfigFor(%v): %v", timeout, err)
		}
		if c.LeaseDuration+c.Margin >= timeout {
			t.Fatalf("ConfigFor(%v): lease %v + margin %v leaves no time to promote", timeout, c.LeaseDuration, c.Margin)
		}
		if c.LeaseDuration <= prev.LeaseDuration {
			t.Fatalf("ConfigFor(%v): lease %v, not longer than %v for a shorter timeout", timeout, c.LeaseDuration, prev.LeaseDuration)
		}
		prev = c
	}
}
