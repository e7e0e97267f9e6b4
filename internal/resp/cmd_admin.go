package resp

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

const namespaceUsage = "FULCRUM.NAMESPACE CREATE name [CONSISTENCY strong|eventual|weak] [REPLICAS n] [SHARDS n] [W n] [R n] [READREPAIR async|blocking] [CONFLICTS lww|siblings] [REPLICATION primary] [ACK async|semi|sync] [ACKREPLICAS k] [ALLOWDEGRADE yes|no] [AVAILABILITY active-passive|active-active] [FAILOVERTIMEOUT ms] | LIST | DESCRIBE name | DROP name"

// cmdFulcrumNamespace manages cluster namespaces:
//
//	FULCRUM.NAMESPACE CREATE name [CONSISTENCY c] [REPLICAS n] [SHARDS n] [W n] [R n] [CONFLICTS lww|siblings] ...
//	FULCRUM.NAMESPACE LIST
//	FULCRUM.NAMESPACE DESCRIBE name
//	FULCRUM.NAMESPACE DROP name
func cmdFulcrumNamespace(c *conn, args [][]byte) {
	admin := c.s.opts.Namespaces
	if admin == nil {
		c.writeErr(kv.Errorf(kv.CodeDisabled, "this node runs alone: namespaces need no creating (they exist with their first key) and have no policy"))
		return
	}
	// Administrative calls wait for the control plane's quorum, bounded.
	ctx, cancel := context.WithTimeout(c.s.ctx, 10*time.Second)
	defer cancel()
	sub := strings.ToUpper(string(args[1]))
	switch {
	case sub == "LIST" && len(args) == 2:
		list, err := admin.Namespaces(ctx)
		if err != nil {
			c.writeErr(err)
			return
		}
		c.writeArray(len(list))
		for _, n := range list {
			c.writeBulkString(n.Name)
		}
	case sub == "DESCRIBE" && len(args) == 3:
		info, err := admin.Namespace(ctx, string(args[2]))
		if err != nil {
			c.writeErr(err)
			return
		}
		c.writeNamespace(info)
	case sub == "DROP" && len(args) == 3:
		if err := admin.DropNamespace(ctx, string(args[2])); err != nil {
			c.writeErr(err)
			return
		}
		c.writeOK()
	case sub == "CREATE" && len(args) >= 3:
		p := kv.Policy{Consistency: kv.ConsistencyStrong, Replicas: 3, Shards: 16}
		opts := args[3:]
		if len(opts)%2 != 0 {
			c.writeErr(kv.Errorf(kv.CodeInvalid, "options come in pairs: %s", namespaceUsage))
			return
		}
		for i := 0; i < len(opts); i += 2 {
			name, val := strings.ToUpper(string(opts[i])), string(opts[i+1])
			switch name {
			case "CONSISTENCY":
				p.Consistency = strings.ToLower(val)
			case "READREPAIR":
				p.ReadRepair = strings.ToLower(val)
			case "CONFLICTS":
				p.Conflicts = strings.ToLower(val)
			case "REPLICATION":
				p.Replication = strings.ToLower(val)
			case "ACK":
				p.Ack = strings.ToLower(val)
			case "AVAILABILITY":
				p.Availability = strings.ToLower(val)
			case "ALLOWDEGRADE":
				switch strings.ToLower(val) {
				case "yes", "true", "1":
					p.AllowDegrade = true
				case "no", "false", "0":
					p.AllowDegrade = false
				default:
					c.writeErr(kv.Errorf(kv.CodeInvalid, "ALLOWDEGRADE %q: want yes or no", val))
					return
				}
			case "FAILOVERTIMEOUT":
				// The range is Policy.Validate's to check.
				ms, err := strconv.Atoi(val)
				if err != nil {
					c.writeErr(kv.Errorf(kv.CodeInvalid, "FAILOVERTIMEOUT %q: want milliseconds (0: the cluster's cluster.failover_timeout)", val))
					return
				}
				p.FailoverTimeoutMs = ms
			case "REPLICAS", "SHARDS", "W", "R", "ACKREPLICAS":
				n, err := strconv.Atoi(val)
				if err != nil {
					c.writeErr(kv.Errorf(kv.CodeInvalid, "%s %q is not a number", name, val))
					return
				}
				switch name {
				case "REPLICAS":
					p.Replicas = n
				case "SHARDS":
					p.Shards = n
				case "W":
					p.W = n
				case "ACKREPLICAS":
					p.AckReplicas = n
				default:
					p.R = n
				}
			default:
				c.writeErr(kv.Errorf(kv.CodeInvalid, "unknown option %q: %s", opts[i], namespaceUsage))
				return
			}
		}
		info, err := admin.CreateNamespace(ctx, string(args[2]), p)
		if err != nil {
			c.writeErr(err)
			return
		}
		c.writeNamespace(info)
	default:
		c.writeErr(kv.Errorf(kv.CodeInvalid, "unknown subcommand or wrong number of arguments: %s", namespaceUsage))
	}
}

// writeNamespace answers with a namespace's policy and layout: a map
// (RESP3) or flat field/value array (RESP2), readable in redis-cli.
func (c *conn) writeNamespace(n kv.NamespaceInfo) {
	if n.Policy.Engine() == kv.EnginePrimary {
		c.writePrimaryNamespace(n)
		return
	}
	quorums := n.Policy.Consistency != kv.ConsistencyStrong
	// An eventual namespace created before conflict modes existed has
	// none recorded: it is last-writer-wins.
	conflicts := n.Policy.Conflicts
	if conflicts == "" && n.Policy.Consistency == kv.ConsistencyEventual {
		conflicts = kv.ConflictsLWW
	}
	fields := 5
	if quorums {
		fields += 2
	}
	if n.Policy.ReadRepair != "" {
		fields++
	}
	if conflicts != "" {
		fields++
	}
	c.writeMap(fields)
	c.writeBulkString("name")
	c.writeBulkString(n.Name)
	c.writeBulkString("consistency")
	c.writeBulkString(n.Policy.Consistency)
	c.writeBulkString("replicas")
	c.writeInt(int64(n.Policy.Replicas))
	c.writeBulkString("shards")
	c.writeInt(int64(n.Policy.Shards))
	if quorums {
		c.writeBulkString("w")
		c.writeInt(int64(n.Policy.W))
		c.writeBulkString("r")
		c.writeInt(int64(n.Policy.R))
	}
	if n.Policy.ReadRepair != "" {
		c.writeBulkString("read_repair")
		c.writeBulkString(n.Policy.ReadRepair)
	}
	if conflicts != "" {
		c.writeBulkString("conflicts")
		c.writeBulkString(conflicts)
	}
	c.writeLayout(n)
}

// MetaReader is a store that can say what kind of answer a read is (a
// cluster's router); a node that runs alone answers from its one copy.
type MetaReader interface {
	// GetMeta reads key from r replicas (0: the namespace's R).
	GetMeta(ctx context.Context, ns string, key []byte, r int) (kv.ReadMeta, error)
}

const getMetaUsage = "usage: FULCRUM.GETMETA key [R replicas] [READONLY] [MAXSTALENESS ms]"

// getMetaOptions are FULCRUM.GETMETA's options after the key.
type getMetaOptions struct {
	// r is how many replicas of an eventual namespace to read (0: R).
	r int
	// replica lets a replica of a replication=primary namespace answer
	// this read, refusing one further behind than maxStaleness
	// (negative: any lag).
	replica      bool
	maxStaleness time.Duration
}

// parseGetMetaOptions parses [R n] [READONLY] [MAXSTALENESS ms], in any
// order, each at most once; MAXSTALENESS implies READONLY.
func parseGetMetaOptions(args [][]byte) (getMetaOptions, error) {
	o := getMetaOptions{maxStaleness: -1}
	var seen [3]bool // R, READONLY, MAXSTALENESS
	for i := 0; i < len(args); i++ {
		opt := strings.ToUpper(string(args[i]))
		idx := slices.Index([]string{"R", "READONLY", "MAXSTALENESS"}, opt)
		switch {
		case idx < 0:
			return o, kv.Errorf(kv.CodeInvalid, "unknown option %q: %s", args[i], getMetaUsage)
		case seen[idx]:
			return o, kv.Errorf(kv.CodeInvalid, "%s given twice: %s", opt, getMetaUsage)
		case opt != "READONLY" && i+1 == len(args):
			return o, kv.Errorf(kv.CodeInvalid, "%s needs a value: %s", opt, getMetaUsage)
		}
		seen[idx] = true
		switch opt {
		case "READONLY":
			o.replica = true
		case "R":
			i++
			n, err := strconv.Atoi(string(args[i]))
			if err != nil || n < 1 {
				return o, kv.Errorf(kv.CodeInvalid, "R %q: want a number of replicas from 1", args[i])
			}
			o.r = n
		default:
			i++
			d, err := parseMaxStaleness(args[i])
			if err != nil {
				return o, err
			}
			o.replica, o.maxStaleness = true, d
		}
	}
	return o, nil
}

// cmdFulcrumGetMeta is FULCRUM.GETMETA key [R n] [READONLY] [MAXSTALENESS ms]:
// the value with what kind of answer it is — the namespace's consistency,
// the write's timestamp and coordinating node, and for eventual and weak
// namespaces how many replicas answered, how many agreed on the newest
// value (the rest were stale), how many read repairs were sent, the live
// siblings (every concurrent value of a conflicts=siblings namespace,
// newest first) and the causal context to pass back to FULCRUM.PUT or
// FULCRUM.DEL; for replication=primary namespaces who answered and how
// far behind it may be. READONLY and MAXSTALENESS let a replica answer
// this one read, as READONLY does for a connection; without them the
// connection's mode applies.
func cmdFulcrumGetMeta(c *conn, args [][]byte) {
	var m kv.ReadMeta
	o, err := parseGetMetaOptions(args[2:])
	if err != nil {
		c.writeErr(err)
		return
	}
	ctx := c.reqCtx()
	if o.replica {
		ctx = kv.WithReplicaReads(ctx, o.maxStaleness)
	}
	if mr, ok := c.s.opts.Store.(MetaReader); ok {
		m, err = mr.GetMeta(ctx, c.ns, args[1], o.r)
	} else if o.r > 1 {
		err = kv.Errorf(kv.CodeInvalid, "r %d: this node runs alone and holds the only copy", o.r)
	} else {
		var v kv.Value
		v, m.Found, err = c.s.opts.Store.Get(ctx, c.ns, args[1])
		m.Value, m.Timestamp, m.Logical, m.Consistency = v.Data, v.Timestamp.WallNanos, v.Timestamp.Logical, "local"
		if m.Found {
			m.Answered, m.Agreed, m.Required = 1, 1, 1
		}
	}
	if err != nil {
		c.writeErr(err)
		return
	}
	fields := 8
	if m.Role != "" {
		fields += 4
	}
	if m.Context != nil {
		fields += 2
	}
	c.writeMap(fields)
	c.writeBulkString("value")
	if m.Found {
		c.writeBulk(m.Value)
	} else {
		c.writeNull()
	}
	c.writeBulkString("consistency")
	c.writeBulkString(m.Consistency)
	c.writeBulkString("timestamp")
	c.writeBulkString(strconv.FormatInt(m.Timestamp, 10) + "." + strconv.FormatUint(uint64(m.Logical), 10))
	c.writeBulkString("writer")
	c.writeInt(int64(m.Writer))
	c.writeBulkString("answered")
	c.writeInt(int64(m.Answered))
	c.writeBulkString("agreed")
	c.writeInt(int64(m.Agreed))
	c.writeBulkString("required")
	c.writeInt(int64(m.Required))
	c.writeBulkString("repaired")
	c.writeInt(int64(m.Repaired))
	if m.Role != "" {
		// A replication=primary read: who answered and how far behind.
		c.writeBulkString("role")
		c.writeBulkString(m.Role)
		c.writeBulkString("epoch")
		c.writeInt(int64(m.Epoch))
		c.writeBulkString("lag_entries")
		c.writeInt(int64(m.LagEntries))
		c.writeBulkString("lag_ms")
		c.writeInt(min(m.Lag.Milliseconds(), 1<<53))
	}
	if m.Context != nil {
		// An eventual or weak read: every live value, and what a write
		// passes back to replace them.
		c.writeBulkString("siblings")
		c.writeArray(len(m.Siblings))
		for _, s := range m.Siblings {
			c.writeBulk(s.Value)
		}
		c.writeBulkString("context")
		c.writeBulkString(kv.FormatCausalContext(m.Context))
	}
}

// reqCtx is the context of the connection's requests: the server's, with
// the connection's quorum override when it has one.
func (c *conn) reqCtx() context.Context {
	ctx := c.s.ctx
	if c.quorum != (kv.Quorum{}) {
		ctx = kv.WithQuorum(ctx, c.quorum)
	}
	if c.replicaReads {
		ctx = kv.WithReplicaReads(ctx, c.maxStaleness)
	}
	return ctx
}

// cmdReadOnly is READONLY [MAXSTALENESS ms]: this connection's reads of
// replication=primary namespaces may be answered by any replica, one
// whose lag exceeds ms refused in favour of the primary (as in Redis
// Cluster, where READONLY lets replicas serve reads).
func cmdReadOnly(c *conn, args [][]byte) {
	stale := time.Duration(-1)
	switch {
	case len(args) == 3 && strings.EqualFold(string(args[1]), "MAXSTALENESS"):
		var err error
		if stale, err = parseMaxStaleness(args[2]); err != nil {
			c.writeErr(err)
			return
		}
	case len(args) != 1:
		c.writeErr(kv.Errorf(kv.CodeInvalid, "usage: READONLY [MAXSTALENESS ms]"))
		return
	}
	c.replicaReads, c.maxStaleness = true, stale
	c.writeOK()
}

// maxStalenessMs bounds MAXSTALENESS: an hour behind is an outage, not
// a replica read.
const maxStalenessMs = int64(time.Hour / time.Millisecond)

// parseMaxStaleness parses a MAXSTALENESS argument (READONLY's or
// FULCRUM.GETMETA's): milliseconds from 0 to maxStalenessMs.
func parseMaxStaleness(arg []byte) (time.Duration, error) {
	ms, err := strconv.ParseInt(string(arg), 10, 64)
	if err != nil || ms < 0 || ms > maxStalenessMs {
		return 0, kv.Errorf(kv.CodeInvalid, "MAXSTALENESS %q: want milliseconds from 0 to %d", arg, maxStalenessMs)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// cmdReadWrite is READWRITE: reads go to the primary again.
func cmdReadWrite(c *conn, _ [][]byte) {
	c.replicaReads, c.maxStaleness = false, 0
	c.writeOK()
}

// cmdFulcrumConsistency is FULCRUM.CONSISTENCY [W n] [R n] | RESET: this
// connection's W and R for eventual namespaces (each checked against the
// namespace at every request; strong namespaces ignore them). With no
// argument it shows them (0: the namespace's own).
func cmdFulcrumConsistency(c *conn, args [][]byte) {
	q := c.quorum
	switch {
	case len(args) == 2 && strings.EqualFold(string(args[1]), "RESET"):
		q = kv.Quorum{}
	case len(args)%2 == 1:
		for i := 1; i < len(args); i += 2 {
			n, err := strconv.Atoi(string(args[i+1]))
			if err != nil || n < 0 || n > kv.MaxReplicas {
				c.writeErr(kv.Errorf(kv.CodeInvalid, "%s %q: want 0 (the namespace's) to %d", args[i], args[i+1], kv.MaxReplicas))
				return
			}
			switch strings.ToUpper(string(args[i])) {
			case "W":
				q.W = n
			case "R":
				q.R = n
			default:
				c.writeErr(kv.Errorf(kv.CodeInvalid, "unknown option %q: FULCRUM.CONSISTENCY [W n] [R n] | RESET", args[i]))
				return
			}
		}
	default:
		c.writeErr(kv.Errorf(kv.CodeInvalid, "usage: FULCRUM.CONSISTENCY [W n] [R n] | RESET"))
		return
	}
	c.quorum = q
	c.writeMap(2)
	c.writeBulkString("w")
	c.writeInt(int64(q.W))
	c.writeBulkString("r")
	c.writeInt(int64(q.R))
}

// writePrimaryNamespace answers with a replication=primary namespace's
// policy and layout.
func (c *conn) writePrimaryNamespace(n kv.NamespaceInfo) {
	p := n.Policy
	fields := 9
	if p.FailoverTimeoutMs != 0 {
		fields++
	}
	c.writeMap(fields)
	c.writeBulkString("name")
	c.writeBulkString(n.Name)
	c.writeBulkString("replication")
	c.writeBulkString(p.Replication)
	c.writeBulkString("ack")
	c.writeBulkString(p.Ack)
	c.writeBulkString("ack_replicas")
	c.writeInt(int64(p.AckReplicas))
	c.writeBulkString("allow_degrade")
	if p.AllowDegrade {
		c.writeInt(1)
	} else {
		c.writeInt(0)
	}
	c.writeBulkString("availability")
	c.writeBulkString(p.Availability)
	if p.FailoverTimeoutMs != 0 {
		// 0 (not shown) takes the cluster's cluster.failover_timeout.
		c.writeBulkString("failover_timeout_ms")
		c.writeInt(int64(p.FailoverTimeoutMs))
	}
	c.writeBulkString("replicas")
	c.writeInt(int64(p.Replicas))
	c.writeBulkString("shards")
	c.writeInt(int64(p.Shards))
	c.writeLayout(n)
}

// writeLayout writes the "layout" field: one line per shard.
func (c *conn) writeLayout(n kv.NamespaceInfo) {
	c.writeBulkString("layout")
	c.writeArray(len(n.Shards))
	for _, s := range n.Shards {
		ids := make([]string, len(s.Replicas))
		for i, r := range s.Replicas {
			ids[i] = strconv.FormatUint(r, 10)
		}
		line := fmt.Sprintf("shard %d group %d replicas %s", s.Shard, s.Group, strings.Join(ids, ","))
		if s.Leader != 0 {
			line += fmt.Sprintf(" leader %d", s.Leader)
		}
		c.writeBulkString(line)
	}
}
