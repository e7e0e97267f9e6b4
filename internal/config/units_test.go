package config

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want Size
	}{
		{"0", 0},
		{"1048576", MiB},
		{"512B", 512},
		{"512b", 512},
		{"16KiB", 16 * KiB},
		{"16 KiB", 16 * KiB},
		{" 16kib ", 16 * KiB},
		{"1MiB", MiB},
		{"4mib", 4 * MiB},
		{"2GiB", 2 * GiB},
		{"1TiB", TiB},
		{"1KB", 1000},
		{"64MB", 64_000_000},
		{"3GB", 3_000_000_000},
		{"1TB", 1_000_000_000_000},
		{"8388607TiB", 8388607 * TiB},
		{"9223372036854775807", math.MaxInt64},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, nil", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "+1", "1.5MiB", "1 MiBs", "1k", "1 2", "8388608TiB", "9223372036854775808", "0x10"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, nil; want an error", in, got)
		}
	}
	_, err := ParseSize("lots")
	if want := `invalid size "lots": want a byte count such as 1048576 or "1MiB" (units B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)`; err == nil || err.Error() != want {
		t.Errorf("ParseSize(lots) error = %v, want %s", err, want)
	}
}

func TestSizeString(t *testing.T) {
	tests := []struct {
		in   Size
		want string
	}{
		{0, "0"}, {1, "1B"}, {1000, "1000B"}, {KiB, "1KiB"}, {1536, "1536B"},
		{16 * KiB, "16KiB"}, {1041 * KiB, "1041KiB"}, {MiB, "1MiB"}, {64 * MiB, "64MiB"},
		{512 * MiB, "512MiB"}, {GiB, "1GiB"}, {3 * TiB, "3TiB"}, {-1, "-1B"}, {-KiB, "-1KiB"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
	}
}

// TestSizeRoundTrip checks ParseSize(s.String()) == s over random sizes,
// biased towards multiples of the binary units.
func TestSizeRoundTrip(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := 0; i < 10000; i++ {
		s := Size(r.Int64N(1 << 50))
		if i%2 == 0 {
			s = Size(r.Int64N(1<<20)) << (10 * r.IntN(4))
		}
		got, err := ParseSize(s.String())
		if err != nil || got != s {
			t.Fatalf("seed %d: ParseSize(%q) = %d, %v; want %d", seed, s.String(), got, err, int64(s))
		}
		text, _ := s.MarshalText()
		var u Size
		if err := u.UnmarshalText(text); err != nil || u != s {
			t.Fatalf("seed %d: UnmarshalText(%q) = %d, %v; want %d", seed, text, u, err, int64(s))
		}
	}
}

func TestDurationParse(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"0", 0}, {"0s", 0}, {"100ms", 100 * time.Millisecond}, {"1s", time.Second},
		{"1m30s", 90 * time.Second}, {" 2h ", 2 * time.Hour}, {"-1s", -time.Second},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if err != nil || time.Duration(got) != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, nil", tt.in, got, err, tt.want)
		}
	}
	_, err := ParseDuration("soon")
	if want := `invalid duration "soon": want a string such as "100ms", "1s" or "5m"`; err == nil || err.Error() != want {
		t.Errorf("ParseDuration(soon) error = %v, want %s", err, want)
	}
	if _, err := ParseDuration("10"); err == nil {
		t.Errorf("ParseDuration(10) succeeded, want an error (no unit)")
	}
}

func TestDurationRoundTrip(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := 0; i < 10000; i++ {
		d := Duration(r.Int64N(int64(1000 * time.Hour)))
		if i%2 == 0 {
			d = Duration(time.Duration(r.Int64N(100000)) * []time.Duration{time.Nanosecond, time.Microsecond, time.Millisecond, time.Second}[r.IntN(4)])
		}
		text, _ := d.MarshalText()
		var got Duration
		if err := got.UnmarshalText(text); err != nil || got != d {
			t.Fatalf("seed %d: UnmarshalText(%q) = %v, %v; want %v", seed, text, got, err, d)
		}
	}
}

// TestTOMLValues checks how sizes and durations decode from each TOML type.
func TestTOMLValues(t *testing.T) {
	type doc struct {
		S Size     `toml:"s"`
		D Duration `toml:"d"`
	}
	tests := []struct {
		src     string
		want    doc
		wantErr string
	}{
		{`s = 1024` + "\n" + `d = "1s"`, doc{KiB, Duration(time.Second)}, ""},
		{`s = "1KiB"` + "\n" + `d = 0`, doc{KiB, 0}, ""},
		{`s = -1`, doc{}, "toml: line 1 (last key \"s\"): invalid size -1: must not be negative"},
		{`s = 1.5`, doc{}, "toml: line 1 (last key \"s\"): invalid size 1.5: want an integer byte count or a string such as \"1MiB\""},
		{`s = "1 parsec"`, doc{}, `toml: line 1 (last key "s"): invalid size "1 parsec": want a byte count such as 1048576 or "1MiB" (units B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)`},
		{`d = 5`, doc{}, `toml: line 1 (last key "d"): invalid duration 5: give a unit, as in "5s" or "5ms"`},
		{`d = true`, doc{}, `toml: line 1 (last key "d"): invalid duration: want a string such as "100ms", "1s" or "5m"`},
	}
	for _, tt := range tests {
		var got doc
		_, err := toml.Decode(tt.src, &got)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("Decode(%q) error = %v, want %s", tt.src, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Decode(%q) = %+v, %v; want %+v", tt.src, got, err, tt.want)
		}
	}
}
