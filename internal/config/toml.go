package config

import (
	"fmt"
	"strconv"
	"strings"
)

// TOML renders c as a TOML document with every key present and commented,
// such that Load of the result yields c again. Default().TOML() is what
// "fulcrum config default" prints and what docs/fulcrum.example.toml holds.
func (c Config) TOML() string {
	var w tomlWriter
	w.comment("Fulcrum node configuration.")
	w.comment("")
	w.comment(`Durations are strings with a unit: "100ms", "1s", "5m". Sizes are byte`)
	w.comment(`counts or strings with a unit: "16KiB", "1MiB" (KiB, MiB, GiB, TiB are`)
	w.comment(`powers of 1024; KB, MB, GB, TB powers of 1000). Unknown keys are errors.`)
	w.comment(`Check a file with: fulcrum config check FILE`)
	w.blank()

	w.key("node_id", quote(c.NodeID),
		"Name of this node in logs and metrics: 1 to 64 characters from",
		"A-Z a-z 0-9 _ . -. Empty: the host name.")
	w.key("shutdown_timeout", quote(c.ShutdownTimeout.String()),
		"On SIGINT/SIGTERM listeners close at once and in-flight requests get",
		"this long to finish; then connections are cut and storage is closed.",
		"A second signal exits at once.")

	w.table("data", "Storage engine (Pebble).")
	w.key("dir", quote(c.Data.Dir), "Directory of the store; created if missing.")
	w.key("sync", quote(c.Data.Sync),
		"Durability: always | interval | none.",
		"  always:   a write is acknowledged only after its WAL record is fsynced",
		"            (concurrent writes share one fsync).",
		"  interval: the WAL is fsynced every sync_interval; a crash loses at most",
		"            the writes acknowledged since the last sync.",
		"  none:     the operating system decides when data reaches disk.")
	w.key("sync_interval", quote(c.Data.SyncInterval.String()), `WAL fsync period when sync = "interval".`)
	w.key("cache_size", quote(c.Data.CacheSize.String()), "Size of Pebble's block cache.")
	w.key("row_cache_size", quote(c.Data.RowCacheSize.String()),
		"Memory for the cache of decoded rows in front of Pebble (hot reads and",
		"read-before-write); 0 disables it.")
	w.key("sweep_interval", quote(c.Data.SweepInterval.String()),
		"How often expired keys are deleted in the background. Expired keys are",
		"invisible to reads at once regardless.")

	w.table("resp", "Redis-protocol (RESP2/RESP3) front end.")
	w.key("addr", quote(c.RESP.Addr), "host:port to listen on; port 0 picks a free port.")
	w.key("max_clients", strconv.Itoa(c.RESP.MaxClients), "Most connections served at once; more are refused.")
	w.key("idle_timeout", quote(c.RESP.IdleTimeout.String()), `Close connections idle this long; "0s" means never.`)
	w.key("write_timeout", quote(c.RESP.WriteTimeout.String()),
		`Close a connection whose client takes no reply for this long (it stopped`,
		`reading); "0s" means never.`)
	w.key("max_frame_size", quote(c.RESP.MaxFrameSize.String()),
		"Largest bulk string (one command argument) a client may declare; a",
		"larger one is refused before allocation. At least limits.max_value_size.")
	w.key("max_multi_bulk", strconv.Itoa(c.RESP.MaxMultiBulk), "Most elements in one command array.")
	w.key("max_keys_command", strconv.Itoa(c.RESP.MaxKeysCommand), "Largest namespace KEYS will list; beyond it use SCAN.")
	w.key("enable_flush", strconv.FormatBool(c.RESP.EnableFlush),
		"Allow FLUSHDB and FLUSHALL (off: one stray command erases everything).")

	w.table("http", "HTTP/JSON front end, also serving /metrics.")
	w.key("addr", quote(c.HTTP.Addr), "host:port to listen on; port 0 picks a free port.")
	w.key("enable_pprof", strconv.FormatBool(c.HTTP.EnablePprof), "Serve Go profiles under /debug/pprof/.")
	w.key("max_body_size", quote(c.HTTP.MaxBodySize.String()),
		"Largest request body. 0: limits.max_value_size + 64KiB.")

	w.table("limits", "What one request may carry; front ends and storage both enforce it.")
	w.key("max_key_size", quote(c.Limits.MaxKeySize.String()), "Longest key (hard maximum 1MiB).")
	w.key("max_value_size", quote(c.Limits.MaxValueSize.String()), "Largest value (hard maximum 512MiB).")

	w.table("log", "Structured log, written to stderr.")
	w.key("level", quote(c.Log.Level), "debug | info | warn | error")
	w.key("format", quote(c.Log.Format), "text (key=value) | json (one object a line)")

	w.table("cluster", "Replication. With id = 0 the node runs alone.")
	w.key("id", strconv.FormatUint(c.Cluster.ID, 10),
		"This node's number in the cluster (1 or more); 0: no cluster.")
	w.key("peer_addr", quote(c.Cluster.PeerAddr), "host:port for traffic from other nodes.")
	peers := make([]string, len(c.Cluster.Peers))
	for i, p := range c.Cluster.Peers {
		peers[i] = quote(p)
	}
	w.key("peers", "["+strings.Join(peers, ", ")+"]",
		`Every initial member, this node included, as "ID=host:port" (the address`,
		"the others reach it on). All members list the same peers.")
	w.key("join", quote(c.Cluster.Join),
		"HTTP host:port of a running member to join through (then leave id at 0",
		"and peers empty): the node gets an id, keeps it in its data directory,",
		"and serves every request by forwarding it to the shards' replicas.")
	w.key("name", quote(c.Cluster.Name), "Cluster name; nodes of different clusters refuse each other.")
	w.key("shards", strconv.Itoa(c.Cluster.Shards), "Shards of the default namespace (1-1024).")
	w.key("replicas", strconv.Itoa(c.Cluster.Replicas),
		"Replicas of each shard (a Raft group each); capped to the number of nodes.")
	w.key("request_timeout", quote(c.Cluster.RequestTimeout.String()),
		"Deadline of requests that bring none: a shard without a quorum answers",
		"UNAVAILABLE (or TIMEOUT: outcome unknown, for a write) within it.")
	w.key("tick", quote(c.Cluster.Tick.String()), "Raft clock tick.")
	w.key("election_ticks", strconv.Itoa(c.Cluster.ElectionTicks),
		"Ticks without a heartbeat before a follower calls an election.")
	w.key("lease_reads", strconv.FormatBool(c.Cluster.LeaseReads),
		"Let a leader answer linearizable reads from a lease (no quorum round per",
		"read), renewed by each quorum round and dropped when a leadership",
		"transfer starts. Safe only while the nodes' clocks run at rates within",
		"max_clock_drift of each other over an election timeout. Off by default.")
	w.key("max_clock_drift", quote(c.Cluster.MaxClockDrift.String()),
		"The clock-drift bound lease_reads relies on (above 0, at most a quarter",
		"of the election timeout, tick * election_ticks); the lease is shortened by it.")
	w.key("anti_entropy", quote(c.Cluster.AntiEntropy.String()),
		"How often each replica of an eventual namespace's shard compares its",
		"Merkle tree with the other replicas' and exchanges the keys that differ.")
	w.key("anti_entropy_bandwidth", quote(c.Cluster.AntiEntropyBandwidth.String()),
		"The most bytes per second anti-entropy pulls and pushes, over all peers, so",
		"that repairing a replica that was away long leaves room for clients; 0: no cap.")
	w.key("hint_window", quote(c.Cluster.HintWindow.String()),
		"How long a node keeps a hint (a write of an eventual namespace it took for",
		"an unreachable replica) before dropping it; anti-entropy repairs the rest.")
	w.key("failover_timeout", quote(c.Cluster.FailoverTimeout.String()),
		"How long the primary of a replication=primary shard may be silent before a",
		"replica is promoted (100ms to 1m): the primary's lease is 80% of it.")
	w.key("tombstone_grace", quote(c.Cluster.TombstoneGrace.String()),
		"How long a deleted key of an eventual or weak namespace keeps its tombstone",
		"(above hint_window + 2*anti_entropy + request_timeout). A replica away for",
		"longer can bring deleted keys back: wipe it, or remove and re-add it.")
	w.key("vip", quote(c.Cluster.VIP),
		"A service address (e.g. \"10.0.0.100/24\") the active node of the active-passive",
		"replication=primary namespaces carries on vip_interface and announces with",
		"gratuitous ARP, moving on failover (Linux, CAP_NET_ADMIN and CAP_NET_RAW).",
		"Empty: none; clients can send to any node.")
	w.key("vip_interface", quote(c.Cluster.VIPInterface),
		"The interface that carries vip, e.g. \"eth0\".")
	return w.String()
}

type tomlWriter struct {
	strings.Builder
	keys int // keys written since the last table header
}

func (w *tomlWriter) blank() { w.WriteString("\n") }

func (w *tomlWriter) comment(s string) {
	if s == "" {
		w.WriteString("#\n")
		return
	}
	fmt.Fprintf(w, "# %s\n", s)
}

func (w *tomlWriter) table(name, doc string) {
	w.blank()
	w.comment(doc)
	fmt.Fprintf(w, "[%s]\n", name)
	w.keys = 0
}

func (w *tomlWriter) key(name, value string, doc ...string) {
	if w.keys > 0 {
		w.blank()
	}
	w.keys++
	for _, d := range doc {
		w.comment(d)
	}
	fmt.Fprintf(w, "%s = %s\n", name, value)
}

// quote renders s as a TOML basic string. strconv.Quote is not used because
// TOML has no \x escape.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
