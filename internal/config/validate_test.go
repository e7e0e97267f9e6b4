package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaultValidates(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v, want nil", err)
	}
}

// TestValidate checks each rule with the exact message it produces. Every
// case starts from Default and changes only what it names.
func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string // nil: valid
	}{
		{"node id ok", func(c *Config) { c.NodeID = "node-1.eu_west" }, nil},
		{"node id chars", func(c *Config) { c.NodeID = "node 1" },
			[]string{`node_id: "node 1" is not a valid node id (1 to 64 characters from A-Z a-z 0-9 _ . -)`}},
		{"node id long", func(c *Config) { c.NodeID = strings.Repeat("n", 65) },
			[]string{`node_id: "` + strings.Repeat("n", 65) + `" is not a valid node id (1 to 64 characters from A-Z a-z 0-9 _ . -)`}},
		{"shutdown timeout zero", func(c *Config) { c.ShutdownTimeout = 0 },
			[]string{"shutdown_timeout must be > 0 (is 0s)"}},

		{"cluster member ok", func(c *Config) { c.Cluster.ID = 2; c.Cluster.Peers = []string{"1=a:1", "2=b:1"} }, nil},
		{"cluster peers miss self", func(c *Config) { c.Cluster.ID = 3; c.Cluster.Peers = []string{"1=a:1", "2=b:1"} },
			[]string{"cluster.peers must list this node (cluster.id = 3)"}},
		{"cluster peers bad", func(c *Config) { c.Cluster.ID = 1; c.Cluster.Peers = []string{"1=a:1", "x=b:1"} },
			[]string{`cluster.peers: "x=b:1" is not ID=host:port with ID a number from 1`}},
		{"cluster peers dup", func(c *Config) { c.Cluster.ID = 1; c.Cluster.Peers = []string{"1=a:1", "1=b:1"} },
			[]string{"cluster.peers: node 1 is listed twice"}},
		{"cluster shards", func(c *Config) {
			c.Cluster.ID = 1
			c.Cluster.Peers = []string{"1=a:1"}
			c.Cluster.Shards = 0
			c.Cluster.ElectionTicks = 2
		},
			[]string{"cluster.shards: 0 is not between 1 and 1024", "cluster.election_ticks: 2 is below 3 (a leader would be suspected after every missed heartbeat)"}},
		{"cluster peer addr clash", func(c *Config) {
			c.Cluster.ID = 1
			c.Cluster.Peers = []string{"1=a:1"}
			c.Cluster.PeerAddr = c.RESP.Addr
		},
			[]string{"cluster.peer_addr and resp.addr are both 127.0.0.1:7379"}},
		{"cluster join ok", func(c *Config) { c.Cluster.Join = "db1:7380" }, nil},
		{"lease reads need drift", func(c *Config) { c.Cluster.Join = "db1:7380"; c.Cluster.LeaseReads = true },
			[]string{"cluster.max_clock_drift: lease reads need a bound on clock drift above 0 and at most a quarter of the election timeout (250ms); it is 0s"}},
		{"lease reads ok", func(c *Config) {
			c.Cluster.Join = "db1:7380"
			c.Cluster.LeaseReads, c.Cluster.MaxClockDrift = true, Duration(100*time.Millisecond)
		}, nil},
		{"cluster join with id", func(c *Config) { c.Cluster.Join = "db1:7380"; c.Cluster.ID = 4 },
			[]string{"cluster.join: a joining node gets its id and peers from the cluster; leave cluster.id at 0 and cluster.peers empty"}},
		{"cluster join bad addr", func(c *Config) { c.Cluster.Join = "db1" },
			[]string{`cluster.join: "db1" is not host:port`}},
		{"cluster ignored alone", func(c *Config) { c.Cluster.Shards = 0 }, nil},

		{"data dir empty", func(c *Config) { c.Data.Dir = "" }, []string{"data.dir must not be empty"}},
		{"sync mode", func(c *Config) { c.Data.Sync = "sometimes" },
			[]string{`data.sync: "sometimes" is not one of always, interval, none`}},
		{"sync modes ok", func(c *Config) { c.Data.Sync = SyncNone; c.Data.SyncInterval = 0 }, nil},
		{"sync interval needed", func(c *Config) { c.Data.Sync = SyncInterval; c.Data.SyncInterval = 0 },
			[]string{`data.sync_interval must be > 0 when data.sync = "interval"`}},
		{"sync interval ok", func(c *Config) { c.Data.Sync = SyncInterval; c.Data.SyncInterval = Duration(50 * time.Millisecond) }, nil},
		{"sync interval negative", func(c *Config) { c.Data.SyncInterval = Duration(-time.Second) },
			[]string{"data.sync_interval: -1s is negative"}},
		{"cache size", func(c *Config) { c.Data.CacheSize = 0 }, []string{"data.cache_size must be > 0 (is 0)"}},
		{"sweep interval", func(c *Config) { c.Data.SweepInterval = Duration(-time.Millisecond) },
			[]string{"data.sweep_interval must be > 0 (is -1ms)"}},

		{"resp addr empty", func(c *Config) { c.RESP.Addr = "" }, []string{"resp.addr must not be empty"}},
		{"resp addr no port", func(c *Config) { c.RESP.Addr = "localhost" },
			[]string{`resp.addr: "localhost" is not host:port`}},
		{"resp addr port name", func(c *Config) { c.RESP.Addr = "localhost:redis" },
			[]string{`resp.addr: port "redis" in "localhost:redis" is not a number from 0 to 65535`}},
		{"resp addr port range", func(c *Config) { c.RESP.Addr = "localhost:65536" },
			[]string{`resp.addr: port "65536" in "localhost:65536" is not a number from 0 to 65535`}},
		{"resp addr all interfaces", func(c *Config) { c.RESP.Addr = ":6379" }, nil},
		{"resp addr ipv6", func(c *Config) { c.RESP.Addr = "[::1]:6379" }, nil},
		{"max clients", func(c *Config) { c.RESP.MaxClients = 0 }, []string{"resp.max_clients must be > 0 (is 0)"}},
		{"idle timeout negative", func(c *Config) { c.RESP.IdleTimeout = Duration(-time.Second) },
			[]string{"resp.idle_timeout: -1s is negative"}},
		{"idle timeout set", func(c *Config) { c.RESP.IdleTimeout = Duration(time.Minute) }, nil},
		{"frame size zero", func(c *Config) { c.RESP.MaxFrameSize = 0 }, []string{"resp.max_frame_size must be > 0 (is 0)"}},
		{"frame size too small", func(c *Config) { c.RESP.MaxFrameSize = MiB - 1 },
			[]string{"resp.max_frame_size: 1048575B cannot carry a value of limits.max_value_size (1MiB); it must be at least 1MiB"}},
		{"frame size just enough", func(c *Config) { c.RESP.MaxFrameSize = MiB }, nil},
		{"frame size vs bigger value", func(c *Config) { c.Limits.MaxValueSize = 8 * MiB },
			[]string{"resp.max_frame_size: 4MiB cannot carry a value of limits.max_value_size (8MiB); it must be at least 8MiB"}},
		{"multi bulk zero", func(c *Config) { c.RESP.MaxMultiBulk = 0 }, []string{"resp.max_multi_bulk must be > 0 (is 0)"}},
		{"multi bulk just enough", func(c *Config) { c.RESP.MaxMultiBulk = 20001 }, nil},
		{"keys per command", func(c *Config) { c.RESP.MaxKeysCommand = -1 }, []string{"resp.max_keys_command must be > 0 (is -1)"}},

		{"http addr bad", func(c *Config) { c.HTTP.Addr = "127.0.0.1" }, []string{`http.addr: "127.0.0.1" is not host:port`}},
		{"same addr", func(c *Config) { c.HTTP.Addr = "127.0.0.1:7379" },
			[]string{"resp.addr and http.addr are both 127.0.0.1:7379"}},
		{"same port wildcard", func(c *Config) { c.RESP.Addr = "0.0.0.0:7380" },
			[]string{"resp.addr (0.0.0.0:7380) and http.addr (127.0.0.1:7380) both listen on port 7380"}},
		{"same port different hosts", func(c *Config) { c.RESP.Addr = "10.0.0.1:7000"; c.HTTP.Addr = "10.0.0.2:7000" }, nil},
		{"both port zero", func(c *Config) { c.RESP.Addr = "127.0.0.1:0"; c.HTTP.Addr = "127.0.0.1:0" }, nil},
		{"body size negative", func(c *Config) { c.HTTP.MaxBodySize = -1 }, []string{"http.max_body_size: -1B is negative"}},
		{"body size small", func(c *Config) { c.HTTP.MaxBodySize = 512 * KiB },
			[]string{"http.max_body_size: 512KiB is smaller than limits.max_value_size (1MiB); use 0 for the value limit plus 64KiB"}},
		{"body size ok", func(c *Config) { c.HTTP.MaxBodySize = 2 * MiB }, nil},

		{"key size zero", func(c *Config) { c.Limits.MaxKeySize = 0 }, []string{"limits.max_key_size must be > 0 (is 0)"}},
		{"key size hard max", func(c *Config) { c.Limits.MaxKeySize = 2 * MiB; c.RESP.MaxFrameSize = 8 * MiB },
			[]string{"limits.max_key_size: 2MiB exceeds the hard maximum 1MiB"}},
		{"value size hard max", func(c *Config) { c.Limits.MaxValueSize = GiB; c.RESP.MaxFrameSize = 2 * GiB },
			[]string{"limits.max_value_size: 1GiB exceeds the hard maximum 512MiB"}},
		{"value size at hard max", func(c *Config) { c.Limits.MaxValueSize = 512 * MiB; c.RESP.MaxFrameSize = 513 * MiB }, nil},
		{"value size zero", func(c *Config) { c.Limits.MaxValueSize = 0 }, []string{"limits.max_value_size must be > 0 (is 0)"}},

		{"log level", func(c *Config) { c.Log.Level = "verbose" },
			[]string{`log.level: "verbose" is not one of debug, info, warn, error`}},
		{"log level case", func(c *Config) { c.Log.Level = "INFO" },
			[]string{`log.level: "INFO" is not one of debug, info, warn, error`}},
		{"log format", func(c *Config) { c.Log.Format = "xml" },
			[]string{`log.format: "xml" is not one of text, json`}},
		{"log json debug", func(c *Config) { c.Log.Format = LogJSON; c.Log.Level = LogDebug }, nil},

		{"all problems at once", func(c *Config) {
			c.Data.Sync = "sometimes"
			c.Limits.MaxValueSize = GiB
			c.HTTP.Addr = c.RESP.Addr
			c.Log.Format = "xml"
		}, []string{
			`data.sync: "sometimes" is not one of always, interval, none`,
			"limits.max_value_size: 1GiB exceeds the hard maximum 512MiB",
			"resp.addr and http.addr are both 127.0.0.1:7379",
			`log.format: "xml" is not one of text, json`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.modify(&c)
			var got []string
			for _, p := range Problems(c.Validate()) {
				got = append(got, p.Error())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Validate problems:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestProblems(t *testing.T) {
	if got := Problems(nil); got != nil {
		t.Errorf("Problems(nil) = %v, want nil", got)
	}
	c := Default()
	c.Data.Dir = ""
	c.Log.Level = "x"
	err := c.Validate()
	if got := len(Problems(err)); got != 2 {
		t.Errorf("len(Problems) = %d, want 2", got)
	}
	if want := "data.dir must not be empty\nlog.level: \"x\" is not one of debug, info, warn, error"; err.Error() != want {
		t.Errorf("err.Error() = %q, want %q", err.Error(), want)
	}
}

func TestHTTPBodyLimit(t *testing.T) {
	c := Default()
	if got, want := c.HTTPBodyLimit(), MiB+64*KiB; got != want {
		t.Errorf("default HTTPBodyLimit = %s, want %s", got, want)
	}
	c.HTTP.MaxBodySize = 3 * MiB
	if got, want := c.HTTPBodyLimit(), 3*MiB; got != want {
		t.Errorf("HTTPBodyLimit = %s, want %s", got, want)
	}
	if got := c.Limits.KV(); got.MaxKeySize != 16<<10 || got.MaxValueSize != 1<<20 {
		t.Errorf("Limits.KV() = %+v, want 16KiB/1MiB", got)
	}
}
