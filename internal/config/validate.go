package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/vip"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// Hard maxima: no configuration may exceed them.
const (
	HardMaxKeySize   Size = kv.HardMaxKeySize
	HardMaxValueSize Size = kv.HardMaxValueSize
	maxNodeIDLen          = 64
)

// Validate checks every field and the rules between fields. It returns nil
// or all the problems at once, joined (errors.Join); each names the offending
// field by its TOML path and says why, so an operator fixes a file in one
// pass. Use Problems to list them.
func (c Config) Validate() error {
	var v validator

	if c.NodeID != "" && !validNodeID(c.NodeID) {
		v.addf("node_id: %q is not a valid node id (1 to %d characters from A-Z a-z 0-9 _ . -)", c.NodeID, maxNodeIDLen)
	}
	v.positiveDuration("shutdown_timeout", c.ShutdownTimeout)

	// data
	if c.Data.Dir == "" {
		v.addf("data.dir must not be empty")
	}
	v.oneOf("data.sync", c.Data.Sync, SyncAlways, SyncInterval, SyncNone)
	switch {
	case c.Data.SyncInterval < 0:
		v.addf("data.sync_interval: %s is negative", c.Data.SyncInterval)
	case c.Data.SyncInterval == 0 && c.Data.Sync == SyncInterval:
		v.addf("data.sync_interval must be > 0 when data.sync = %q", SyncInterval)
	}
	v.positiveSize("data.cache_size", c.Data.CacheSize)
	if c.Data.RowCacheSize < 0 {
		v.addf("data.row_cache_size must be >= 0 (is %s)", c.Data.RowCacheSize)
	}
	v.positiveDuration("data.sweep_interval", c.Data.SweepInterval)

	// limits (before the front ends, whose rules depend on them)
	keyOK := v.positiveSize("limits.max_key_size", c.Limits.MaxKeySize) &&
		v.atMost("limits.max_key_size", c.Limits.MaxKeySize, HardMaxKeySize)
	valueOK := v.positiveSize("limits.max_value_size", c.Limits.MaxValueSize) &&
		v.atMost("limits.max_value_size", c.Limits.MaxValueSize, HardMaxValueSize)

	// resp
	respOK := v.addr("resp.addr", c.RESP.Addr)
	v.positiveInt("resp.max_clients", c.RESP.MaxClients)
	if c.RESP.WriteTimeout < 0 {
		v.addf("resp.write_timeout: %s is negative", c.RESP.WriteTimeout)
	}
	if c.RESP.IdleTimeout < 0 {
		v.addf("resp.idle_timeout: %s is negative", c.RESP.IdleTimeout)
	}
	if v.positiveSize("resp.max_frame_size", c.RESP.MaxFrameSize) && keyOK && valueOK {
		// The frame limit applies to each bulk argument, so it must admit
		// the largest key and the largest value.
		if need := max(c.Limits.MaxValueSize, c.Limits.MaxKeySize); c.RESP.MaxFrameSize < need {
			v.addf("resp.max_frame_size: %s cannot carry a value of limits.max_value_size (%s); it must be at least %s",
				c.RESP.MaxFrameSize, c.Limits.MaxValueSize, need)
		}
	}
	v.positiveInt("resp.max_multi_bulk", c.RESP.MaxMultiBulk)
	v.positiveInt("resp.max_keys_command", c.RESP.MaxKeysCommand)

	// http
	httpOK := v.addr("http.addr", c.HTTP.Addr)
	switch {
	case c.HTTP.MaxBodySize < 0:
		v.addf("http.max_body_size: %s is negative", c.HTTP.MaxBodySize)
	case c.HTTP.MaxBodySize > 0 && valueOK && c.HTTP.MaxBodySize < c.Limits.MaxValueSize:
		v.addf("http.max_body_size: %s is smaller than limits.max_value_size (%s); use 0 for the value limit plus %s",
			c.HTTP.MaxBodySize, c.Limits.MaxValueSize, BodySlack)
	}
	if respOK && httpOK {
		v.distinctAddrs("resp.addr", c.RESP.Addr, "http.addr", c.HTTP.Addr)
	}

	v.cluster(c)

	// log
	v.oneOf("log.level", c.Log.Level, LogDebug, LogInfo, LogWarn, LogError)
	v.oneOf("log.format", c.Log.Format, LogText, LogJSON)

	return errors.Join(v.errs...)
}

// Problems splits an error returned by Validate (or Load) into its
// individual problems. A single error is returned as a one-element slice.
func Problems(err error) []error {
	if err == nil {
		return nil
	}
	var uk unknownKeysError
	if errors.As(err, &uk) {
		err = uk.err
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

type validator struct{ errs []error }

func (v *validator) addf(format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf(format, args...))
}

func (v *validator) oneOf(path, got string, allowed ...string) {
	if !slices.Contains(allowed, got) {
		v.addf("%s: %q is not one of %s", path, got, strings.Join(allowed, ", "))
	}
}

func (v *validator) positiveInt(path string, n int) bool {
	if n <= 0 {
		v.addf("%s must be > 0 (is %d)", path, n)
		return false
	}
	return true
}

func (v *validator) positiveSize(path string, s Size) bool {
	if s <= 0 {
		v.addf("%s must be > 0 (is %s)", path, s)
		return false
	}
	return true
}

func (v *validator) positiveDuration(path string, d Duration) {
	if d <= 0 {
		v.addf("%s must be > 0 (is %s)", path, d)
	}
}

func (v *validator) atMost(path string, s, hardMax Size) bool {
	if s > hardMax {
		v.addf("%s: %s exceeds the hard maximum %s", path, s, hardMax)
		return false
	}
	return true
}

// addr checks that a is host:port with a numeric port, as net.Listen wants.
// The host may be empty (all interfaces).
func (v *validator) addr(path, a string) bool {
	if a == "" {
		v.addf("%s must not be empty", path)
		return false
	}
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		v.addf("%s: %q is not host:port", path, a)
		return false
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		v.addf("%s: port %q in %q is not a number from 0 to 65535", path, port, a)
		return false
	}
	return true
}

// distinctAddrs reports two listeners that would collide: the same address,
// or the same port with one of them on every interface. Port 0 never
// collides (the kernel picks distinct ports).
func (v *validator) distinctAddrs(pathA, a, pathB, b string) {
	hostA, portA, _ := net.SplitHostPort(a)
	hostB, portB, _ := net.SplitHostPort(b)
	if portA != portB || portA == "0" {
		return
	}
	switch {
	case a == b:
		v.addf("%s and %s are both %s", pathA, pathB, a)
	case hostA == hostB || wildcardHost(hostA) || wildcardHost(hostB):
		v.addf("%s (%s) and %s (%s) both listen on port %s", pathA, a, pathB, b, portA)
	}
}

func wildcardHost(h string) bool {
	return h == "" || h == "0.0.0.0" || h == "::"
}

func validNodeID(id string) bool {
	if len(id) == 0 || len(id) > maxNodeIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func (v *validator) cluster(c Config) {
	cl := c.Cluster
	if !cl.Member() {
		return
	}
	peerOK := v.addr("cluster.peer_addr", cl.PeerAddr)
	if peerOK {
		v.distinctAddrs("cluster.peer_addr", cl.PeerAddr, "resp.addr", c.RESP.Addr)
		v.distinctAddrs("cluster.peer_addr", cl.PeerAddr, "http.addr", c.HTTP.Addr)
	}
	if cl.Join != "" {
		v.addr("cluster.join", cl.Join)
		if cl.ID != 0 || len(cl.Peers) > 0 {
			v.addf("cluster.join: a joining node gets its id and peers from the cluster; leave cluster.id at 0 and cluster.peers empty")
		}
	} else if peers, err := cl.PeerMap(); err != nil {
		v.addf("cluster.peers: %v", err)
	} else if _, ok := peers[cl.ID]; !ok {
		v.addf("cluster.peers must list this node (cluster.id = %d)", cl.ID)
	}
	if cl.Name == "" {
		v.addf("cluster.name must not be empty")
	}
	if cl.Shards < 1 || cl.Shards > 1024 {
		v.addf("cluster.shards: %d is not between 1 and 1024", cl.Shards)
	}
	if cl.Replicas < 1 || cl.Replicas > 7 {
		v.addf("cluster.replicas: %d is not between 1 and 7", cl.Replicas)
	}
	v.positiveDuration("cluster.request_timeout", cl.RequestTimeout)
	v.positiveDuration("cluster.tick", cl.Tick)
	v.positiveDuration("cluster.anti_entropy", cl.AntiEntropy)
	v.positiveDuration("cluster.hint_window", cl.HintWindow)
	if cl.AntiEntropyBandwidth < 0 {
		v.addf("cluster.anti_entropy_bandwidth: %s is negative", cl.AntiEntropyBandwidth)
	}
	if floor := cl.HintWindow + 2*cl.AntiEntropy + cl.RequestTimeout; cl.TombstoneGrace <= floor {
		v.addf("cluster.tombstone_grace: %s must exceed hint_window + 2*anti_entropy + request_timeout (%s), or a replica that missed a delete can bring the value back", cl.TombstoneGrace, floor)
	}
	if (cl.VIP == "") != (cl.VIPInterface == "") {
		v.addf("cluster.vip and cluster.vip_interface go together (vip %q, vip_interface %q)", cl.VIP, cl.VIPInterface)
	} else if cl.VIP != "" {
		cfg := vip.DefaultConfig()
		cfg.Interface = cl.VIPInterface
		p, err := netip.ParsePrefix(cl.VIP)
		if err == nil {
			cfg.Address = p
			err = cfg.Validate()
		}
		if err != nil {
			v.addf("cluster.vip %q: %v", cl.VIP, err)
		}
	}
	if cl.FailoverTimeout < Duration(100*time.Millisecond) || cl.FailoverTimeout > Duration(time.Minute) {
		v.addf("cluster.failover_timeout: %s is not between 100ms and 1m", cl.FailoverTimeout)
	}
	if cl.LeaseReads {
		election := Duration(int64(cl.Tick) * int64(cl.ElectionTicks))
		if cl.MaxClockDrift <= 0 || cl.MaxClockDrift > election/4 {
			v.addf("cluster.max_clock_drift: lease reads need a bound on clock drift above 0 and at most a quarter of the election timeout (%s); it is %s",
				election/4, cl.MaxClockDrift)
		}
	}
	if cl.ElectionTicks < 3 {
		v.addf("cluster.election_ticks: %d is below 3 (a leader would be suspected after every missed heartbeat)", cl.ElectionTicks)
	}
}

// PeerMap parses Peers ("ID=host:port") into node id -> address.
func (cl Cluster) PeerMap() (map[uint64]string, error) {
	out := make(map[uint64]string, len(cl.Peers))
	for _, p := range cl.Peers {
		id, addr, ok := strings.Cut(p, "=")
		n, err := strconv.ParseUint(id, 10, 64)
		if !ok || err != nil || n == 0 {
			return nil, fmt.Errorf("%q is not ID=host:port with ID a number from 1", p)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%q: %q is not host:port", p, addr)
		}
		if _, dup := out[n]; dup {
			return nil, fmt.Errorf("node %d is listed twice", n)
		}
		out[n] = addr
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no peers listed")
	}
	return out, nil
}
