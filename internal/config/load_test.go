package config

import (
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite docs/fulcrum.example.toml from Default().TOML()")

// TestExample keeps docs/fulcrum.example.toml (what users copy) equal to the commented default
// configuration and checks that it loads, validates and yields Default.
func TestExample(t *testing.T) {
	const path = "../../docs/fulcrum.example.toml"
	want := Default().TOML()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s differs from Default().TOML(); run go test -run TestExample -update and review the diff", path)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s) = %v", path, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("example does not validate: %v", err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("Load(%s) = %+v, want Default() %+v", path, cfg, Default())
	}
}

// TestTOMLRoundTrip checks that TOML renders every field: a configuration
// with no default left decodes back to itself.
func TestTOMLRoundTrip(t *testing.T) {
	c := Config{
		NodeID:          "n\"ode\\1\t",
		ShutdownTimeout: Duration(3 * time.Second),
		Data:            Data{Dir: "/var/lib/fulcrum data", Sync: SyncInterval, SyncInterval: Duration(250 * time.Millisecond), CacheSize: 1000, SweepInterval: Duration(time.Minute)},
		RESP:            RESP{Addr: "[::1]:6379", MaxClients: 7, IdleTimeout: Duration(90 * time.Second), MaxFrameSize: 9 * MiB, MaxMultiBulk: 99, MaxKeysCommand: 3, EnableFlush: true},
		HTTP:            HTTP{Addr: ":8080", EnablePprof: true, MaxBodySize: 5 * MiB},
		Limits:          Limits{MaxKeySize: 100, MaxValueSize: 2 * MiB},
		Log:             Log{Level: LogDebug, Format: LogJSON},
		Cluster: Cluster{ID: 2, PeerAddr: "10.0.0.2:9000", Peers: []string{"1=10.0.0.1:9000", "2=10.0.0.2:9000"}, Join: "10.0.0.1:8080", Name: "c\"x",
			Shards: 4, Replicas: 2, RequestTimeout: Duration(time.Second), Tick: Duration(50 * time.Millisecond), ElectionTicks: 20,
			LeaseReads: true, MaxClockDrift: Duration(100 * time.Millisecond), VIP: "10.0.0.100/24", VIPInterface: "eth0", AntiEntropyBandwidth: 3 * MiB},
	}
	// Guard against a field added to Config but not to TOML: every field
	// above must differ from its default.
	assertNoDefaultField(t, reflect.ValueOf(c), reflect.ValueOf(Default()), "Config")

	got, err := decode("roundtrip.toml", c.TOML())
	if err != nil {
		t.Fatalf("decode(TOML()) = %v\n%s", err, c.TOML())
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("decode(TOML()) = %+v, want %+v", got, c)
	}
}

func assertNoDefaultField(t *testing.T, v, d reflect.Value, path string) {
	t.Helper()
	if v.Kind() == reflect.Struct {
		for i := 0; i < v.NumField(); i++ {
			assertNoDefaultField(t, v.Field(i), d.Field(i), path+"."+v.Type().Field(i).Name)
		}
		return
	}
	if v.Kind() == reflect.Slice {
		if reflect.DeepEqual(v.Interface(), d.Interface()) {
			t.Errorf("%s is the default in the round-trip config; give it another value", path)
		}
		return
	}
	if v.Interface() == d.Interface() {
		t.Errorf("%s is the default in the round-trip config; give it another value", path)
	}
}

func TestLoadPartialKeepsDefaults(t *testing.T) {
	got, err := decode("partial.toml", `
node_id = "n1"
[data]
sync = "interval"
sync_interval = "250ms"
[limits]
max_value_size = 2097152
`)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.NodeID = "n1"
	want.Data.Sync = SyncInterval
	want.Data.SyncInterval = Duration(250 * time.Millisecond)
	want.Limits.MaxValueSize = 2 * MiB
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decode = %+v, want %+v", got, want)
	}
}

func TestLoadUnknownKeys(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"misspelt key", "[data]\ndir = \"x\"\nsyncc = \"always\"\n",
			[]string{"f.toml:3: unknown key data.syncc"}},
		{"top level", "# comment\nnodeid = \"n1\"\n",
			[]string{"f.toml:2: unknown key nodeid"}},
		{"unknown table named once", "[raft]\nelection = \"1s\"\nheartbeat = \"100ms\"\n",
			[]string{"f.toml:1: unknown key raft"}},
		{"dotted", "resp.addrr = \"x:1\"\n",
			[]string{"f.toml:1: unknown key resp.addrr"}},
		{"quoted", "[log]\n\"lev el\" = \"info\"\n",
			[]string{`f.toml:2: unknown key log."lev el"`}},
		{"inline table", "[http]\nextra = { a = 1 }\n",
			[]string{"f.toml:2: unknown key http.extra"}},
		{"several, after a multi-line string", "node_id = \"\"\"\nbogus = 1\n\"\"\"\n[data]\nbogus = 1\n[log]\nlevel = \"info\"\nbogus = 2\n",
			[]string{"f.toml:5: unknown key data.bogus", "f.toml:8: unknown key log.bogus"}},
		{"array of tables", "[[peers]]\naddr = \"a:1\"\n[[peers]]\naddr = \"b:1\"\n",
			[]string{"f.toml:1: unknown key peers"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decode("f.toml", tt.src)
			var got []string
			for _, p := range Problems(err) {
				got = append(got, p.Error())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("decode errors:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"syntax", "[data\n", "f.toml:2: expected '.' or ']' to end table name, but got '\\n' instead"},
		{"bad size", "[limits]\nmax_key_size = \"big\"\n", `f.toml:2: limits.max_key_size: invalid size "big": want a byte count such as 1048576 or "1MiB" (units B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)`},
		{"bad duration", "\n[data]\nsync_interval = 1\n", `f.toml:3: data.sync_interval: invalid duration 1: give a unit, as in "1s" or "1ms"`},
		{"wrong type", "[resp]\nmax_clients = \"many\"\n", "f.toml:2: resp.max_clients: incompatible types: TOML value has type string; destination has type integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decode("f.toml", tt.src)
			if err == nil || err.Error() != tt.want {
				t.Errorf("decode error = %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fulcrum.toml")
	if err := os.WriteFile(path, []byte("[data]\ndir = \"/srv/fulcrum\"\nsink = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := path + ":3: unknown key data.sink"; err == nil || err.Error() != want {
		t.Errorf("Load error = %v, want %s", err, want)
	}
	_, err = Load(filepath.Join(dir, "missing.toml"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "load config: ") {
		t.Errorf("Load(missing) error = %v, want a wrapped fs.ErrNotExist", err)
	}
}

// An unknown key does not hide the rest of the file: Load returns what it
// understood, so callers can validate it in the same pass.
func TestLoadUnknownKeysKeepsTheRest(t *testing.T) {
	cfg, err := decode("bad.toml", "[data]\nsync = \"sometimes\"\nbogus = 1\n")
	if !errors.Is(err, ErrUnknownKeys) {
		t.Fatalf("got %v, want ErrUnknownKeys", err)
	}
	if got := Problems(err); len(got) != 1 || got[0].Error() != "bad.toml:3: unknown key data.bogus" {
		t.Fatalf("problems: got %q", got)
	}
	if cfg.Data.Sync != "sometimes" {
		t.Fatalf("got sync %q, want the file's value", cfg.Data.Sync)
	}
	if verr := cfg.Validate(); verr == nil || !strings.Contains(verr.Error(), "data.sync") {
		t.Fatalf("Validate: got %v, want a data.sync problem", verr)
	}
	if _, err := decode("bad.toml", "[data\n"); errors.Is(err, ErrUnknownKeys) {
		t.Fatal("a syntax error must not look like an unknown-keys error")
	}
}
