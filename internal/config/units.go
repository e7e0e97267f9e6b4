package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Size is a number of bytes. In TOML it is an integer (1048576) or a string
// with a unit ("1MiB", "16 KiB", "512B"). KiB, MiB, GiB and TiB are powers of
// 1024; KB, MB, GB and TB are powers of 1000. Units are case-insensitive.
type Size int64

// Byte multiples.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

var sizeUnits = map[string]Size{
	"": 1, "b": 1,
	"kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
}

// ParseSize parses a byte count such as "1048576", "1MiB" or "64 MB".
// Negative sizes are rejected: no size in the configuration can be negative.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	mult, ok := sizeUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	if i == 0 || !ok {
		return 0, fmt.Errorf("invalid size %q: want a byte count such as 1048576 or \"1MiB\" (units B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/int64(mult) {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return Size(n) * mult, nil
}

// String renders s in the largest binary unit that divides it exactly
// ("64MiB", "1000B"), so that ParseSize(s.String()) == s.
func (s Size) String() string {
	if s == 0 {
		return "0"
	}
	for _, u := range []struct {
		n    Size
		name string
	}{{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if s%u.n == 0 {
			return strconv.FormatInt(int64(s/u.n), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (used by flags and JSON).
func (s *Size) UnmarshalText(text []byte) error {
	v, err := ParseSize(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// UnmarshalTOML implements toml.Unmarshaler so that both TOML integers and
// strings are accepted, and floats are not silently truncated.
func (s *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("invalid size %d: must not be negative", v)
		}
		*s = Size(v)
		return nil
	case string:
		return s.UnmarshalText([]byte(v))
	}
	return fmt.Errorf("invalid size %v: want an integer byte count or a string such as \"1MiB\"", v)
}

// Duration is a time.Duration written in TOML as a string with a unit
// ("100ms", "1s", "5m"); the integer 0 is also accepted. Convert with
// time.Duration(d).
type Duration time.Duration

// ParseDuration parses a duration string as time.ParseDuration does.
func ParseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a string such as \"100ms\", \"1s\" or \"5m\"", s)
	}
	return Duration(d), nil
}

// String renders d as time.Duration does ("1s", "1m30s", "0s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (used by flags and JSON).
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// UnmarshalTOML implements toml.Unmarshaler. A bare integer other than 0 is
// refused because its unit would be a guess.
func (d *Duration) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		return d.UnmarshalText([]byte(v))
	case int64:
		if v == 0 {
			*d = 0
			return nil
		}
		return fmt.Errorf("invalid duration %d: give a unit, as in \"%ds\" or \"%dms\"", v, v, v)
	}
	return errors.New("invalid duration: want a string such as \"100ms\", \"1s\" or \"5m\"")
}
