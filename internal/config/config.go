package config

import (
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// Durability modes of Data.Sync. They are the string values of storage's
// SyncMode, which the server converts to.
const (
	SyncAlways   = "always"
	SyncInterval = "interval"
	SyncNone     = "none"
)

// Log levels and formats.
const (
	LogDebug = "debug"
	LogInfo  = "info"
	LogWarn  = "warn"
	LogError = "error"

	LogText = "text"
	LogJSON = "json"
)

// BodySlack is what an HTTP body may carry beyond limits.max_value_size when
// http.max_body_size is 0.
const BodySlack = 64 * KiB

// Config is the configuration of one Fulcrum node. It is a plain value:
// build it with Default or Load, adjust it, check it with Validate, and hand
// a copy to the server. Nothing below cmd/ reads flags or the environment.
type Config struct {
	// NodeID names this node in logs, metrics and (later) the cluster:
	// 1 to 64 characters from A-Z a-z 0-9 _ . -. Empty means the binary
	// substitutes the host name.
	NodeID string `toml:"node_id"`

	// ShutdownTimeout bounds a graceful shutdown: listeners close at once,
	// in-flight requests get this long to finish, then connections are cut
	// and storage is closed.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`

	// Data configures the storage engine.
	Data Data `toml:"data"`
	// RESP configures the Redis-protocol front end.
	RESP RESP `toml:"resp"`
	// HTTP configures the HTTP/JSON front end (also /metrics and /debug).
	HTTP HTTP `toml:"http"`
	// Limits bounds what one request may carry; both front ends and storage
	// enforce them.
	Limits Limits `toml:"limits"`
	// Log configures the structured log written to stderr.
	Log Log `toml:"log"`
	// Cluster makes the node a member of a replicated cluster; with ID 0
	// it runs alone.
	Cluster Cluster `toml:"cluster"`
}

// Member reports whether the node is (or joins) a cluster.
func (c Cluster) Member() bool { return c.ID != 0 || c.Join != "" }

// Cluster configures replication. The initial members are static (Peers);
// every member must list the same peers.
type Cluster struct {
	// ID is this node's number in the cluster, 1 or more; 0 runs the node
	// alone (no replication, no peers).
	ID uint64 `toml:"id"`
	// PeerAddr is where the node listens for other nodes (host:port).
	PeerAddr string `toml:"peer_addr"`
	// Peers lists every initial member, this node included, as
	// "ID=host:port" with the address the others reach it on.
	Peers []string `toml:"peers"`
	// Join, when set, is the HTTP address of a running member: a node
	// with no id asks it for one, joins as a learner of the control plane
	// (a non-voting member that serves requests by forwarding them), and
	// keeps the id it got in its data directory for restarts.
	Join string `toml:"join"`
	// Name is checked when nodes connect, so two clusters never mix.
	Name string `toml:"name"`
	// Shards and Replicas lay out the default namespace; replicas above
	// the number of nodes are capped to it.
	Shards   int `toml:"shards"`
	Replicas int `toml:"replicas"`
	// RequestTimeout is the deadline of a request that brings none: a
	// shard without quorum answers UNAVAILABLE (or TIMEOUT for a write
	// whose outcome is unknown) within it.
	RequestTimeout Duration `toml:"request_timeout"`
	// Tick is the Raft clock; a leader is suspected after ElectionTicks
	// ticks without news.
	Tick          Duration `toml:"tick"`
	ElectionTicks int      `toml:"election_ticks"`
	// LeaseReads lets a leader answer linearizable reads from a lease
	// instead of a quorum round per read; safe only if clock rates differ
	// by at most MaxClockDrift over an election timeout.
	LeaseReads    bool     `toml:"lease_reads"`
	MaxClockDrift Duration `toml:"max_clock_drift"`
	// AntiEntropy is how often each replica of an eventual namespace's
	// shard compares its Merkle tree with the other replicas' and
	// exchanges what differs.
	AntiEntropy Duration `toml:"anti_entropy"`
	// AntiEntropyBandwidth caps the bytes per second anti-entropy pulls
	// and pushes (0: no cap).
	AntiEntropyBandwidth Size `toml:"anti_entropy_bandwidth"`
	// HintWindow is how long a node keeps a hint (a write it took for an
	// unreachable replica of an eventual namespace) before dropping it.
	HintWindow Duration `toml:"hint_window"`
	// FailoverTimeout is how long a replication=primary shard's primary
	// may stay silent before the control plane promotes a replica: its
	// lease (80%) plus the control plane's margin (10%); the rest is the
	// time for the replica to notice.
	FailoverTimeout Duration `toml:"failover_timeout"`
	// TombstoneGrace is how long a deleted key of an eventual or weak
	// namespace keeps its tombstone before every replica may forget it;
	// it must exceed hint_window plus twice anti_entropy plus the request
	// timeout, and bounds how long a replica may be away and rejoin
	// without bringing deleted keys back.
	TombstoneGrace Duration `toml:"tombstone_grace"`
	// VIP is a service address (IPv4 with its prefix, e.g.
	// "10.0.0.100/24") that the active node of the active-passive
	// replication=primary namespaces carries on VIPInterface, moving to
	// the new active on failover (Linux, with CAP_NET_ADMIN and
	// CAP_NET_RAW). Empty: no address takeover; clients reach any node.
	VIP          string `toml:"vip"`
	VIPInterface string `toml:"vip_interface"`
}

// Data configures the storage engine.
type Data struct {
	// Dir is the directory of the Pebble store; it is created if missing.
	Dir string `toml:"dir"`
	// Sync is the durability mode: "always" fsyncs the WAL before
	// acknowledging a write (group commit), "interval" fsyncs every
	// SyncInterval and may lose the writes acknowledged since the last sync,
	// "none" leaves it to the operating system.
	Sync string `toml:"sync"`
	// SyncInterval is the WAL fsync period when Sync is "interval".
	SyncInterval Duration `toml:"sync_interval"`
	// CacheSize is the size of Pebble's block cache.
	CacheSize Size `toml:"cache_size"`
	// RowCacheSize bounds the in-memory cache of decoded rows in front of
	// Pebble, which serves hot reads and the writer's read-before-write;
	// 0 disables it.
	RowCacheSize Size `toml:"row_cache_size"`
	// SweepInterval is how often the background sweeper deletes expired
	// keys. Expired keys are invisible to reads at once regardless.
	SweepInterval Duration `toml:"sweep_interval"`
}

// RESP configures the Redis-protocol front end.
type RESP struct {
	// Addr is the host:port to listen on; port 0 picks a free port.
	Addr string `toml:"addr"`
	// MaxClients is the most connections served at once; more are refused
	// with an error.
	MaxClients int `toml:"max_clients"`
	// IdleTimeout closes a connection idle this long; 0 means never.
	IdleTimeout Duration `toml:"idle_timeout"`
	// WriteTimeout closes a connection whose client does not take a reply
	// within this long (it stopped reading); 0 means never.
	WriteTimeout Duration `toml:"write_timeout"`
	// MaxFrameSize is the largest bulk string (one command argument) a
	// client may declare; a larger one is refused before anything is
	// allocated and closes the connection.
	MaxFrameSize Size `toml:"max_frame_size"`
	// MaxMultiBulk is the most elements a command array may have.
	MaxMultiBulk int `toml:"max_multi_bulk"`
	// MaxKeysCommand is the largest namespace KEYS will list; beyond it
	// KEYS is refused and clients are pointed to SCAN.
	MaxKeysCommand int `toml:"max_keys_command"`
	// EnableFlush allows FLUSHDB and FLUSHALL, which are refused by default
	// because one stray command erases everything.
	EnableFlush bool `toml:"enable_flush"`
}

// HTTP configures the HTTP/JSON front end.
type HTTP struct {
	// Addr is the host:port to listen on; port 0 picks a free port.
	Addr string `toml:"addr"`
	// EnablePprof serves net/http/pprof under /debug/pprof/.
	EnablePprof bool `toml:"enable_pprof"`
	// MaxBodySize is the largest request body accepted; 0 means
	// limits.max_value_size plus BodySlack (see Config.HTTPBodyLimit).
	MaxBodySize Size `toml:"max_body_size"`
}

// Limits bounds what one request may carry.
type Limits struct {
	// MaxKeySize is the longest key accepted (hard maximum 1MiB).
	MaxKeySize Size `toml:"max_key_size"`
	// MaxValueSize is the largest value accepted (hard maximum 512MiB,
	// Redis's own proto-max-bulk-len).
	MaxValueSize Size `toml:"max_value_size"`
}

// Log configures the structured log.
type Log struct {
	// Level is the least severe level logged: debug, info, warn or error.
	Level string `toml:"level"`
	// Format is "text" (logfmt-like key=value) or "json" (one object a line).
	Format string `toml:"format"`
}

// Default returns the default configuration. It validates.
func Default() Config {
	return Config{
		NodeID:          "",
		ShutdownTimeout: Duration(10 * time.Second),
		Data: Data{
			Dir:           "./fulcrum-data",
			Sync:          SyncAlways,
			SyncInterval:  Duration(time.Second),
			CacheSize:     64 * MiB,
			RowCacheSize:  64 * MiB,
			SweepInterval: Duration(100 * time.Millisecond),
		},
		RESP: RESP{
			Addr:           "127.0.0.1:7379",
			MaxClients:     10000,
			IdleTimeout:    0,
			WriteTimeout:   Duration(30 * time.Second),
			MaxFrameSize:   4 * MiB,
			MaxMultiBulk:   1 << 20,
			MaxKeysCommand: 10000,
			EnableFlush:    false,
		},
		HTTP: HTTP{
			Addr:        "127.0.0.1:7380",
			EnablePprof: false,
			MaxBodySize: 0,
		},
		Limits: Limits{
			MaxKeySize:   kv.DefaultMaxKeySize,
			MaxValueSize: kv.DefaultMaxValueSize,
		},
		Log: Log{
			Level:  LogInfo,
			Format: LogText,
		},
		Cluster: Cluster{
			ID:                   0,
			PeerAddr:             "127.0.0.1:7381",
			Peers:                []string{},
			Join:                 "",
			Name:                 "fulcrum",
			Shards:               16,
			Replicas:             3,
			RequestTimeout:       Duration(2 * time.Second),
			Tick:                 Duration(100 * time.Millisecond),
			ElectionTicks:        10,
			LeaseReads:           false,
			MaxClockDrift:        0,
			AntiEntropy:          Duration(time.Second),
			AntiEntropyBandwidth: 16 * MiB,
			HintWindow:           Duration(time.Hour),
			FailoverTimeout:      Duration(time.Second),
			TombstoneGrace:       Duration(24 * time.Hour),
		},
	}
}

// KV returns the limits in the form front ends and storage take.
func (l Limits) KV() kv.Limits {
	return kv.Limits{MaxKeySize: int(l.MaxKeySize), MaxValueSize: int(l.MaxValueSize)}
}

// HTTPBodyLimit is the effective http.max_body_size: the configured value,
// or limits.max_value_size plus BodySlack when it is 0.
func (c Config) HTTPBodyLimit() Size {
	if c.HTTP.MaxBodySize > 0 {
		return c.HTTP.MaxBodySize
	}
	return c.Limits.MaxValueSize + BodySlack
}
