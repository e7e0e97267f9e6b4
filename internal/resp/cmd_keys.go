package resp

import (
	"math"
	"math/rand/v2"
	"strconv"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

func cmdDel(c *conn, args [][]byte) {
	first := len(c.ops)
	for _, k := range args[1:] {
		c.ops = append(c.ops, kv.Op{Kind: kv.OpDelete, Namespace: c.ns, Key: k})
	}
	c.queue(pendCount, first)
}

// cmdExists counts the keys that exist, a key named twice counting twice,
// as Redis does. TOUCH shares it: Fulcrum keeps no access times.
func cmdExists(c *conn, args [][]byte) {
	var n int64
	for _, k := range args[1:] {
		_, ok, err := c.s.opts.Store.Get(c.reqCtx(), c.ns, k)
		if err != nil {
			c.writeErr(err)
			return
		}
		n += b2i(ok)
	}
	c.writeInt(n)
}

func cmdExpire(c *conn, args [][]byte)    { expireCmd(c, args, "expire", 1000, false) }
func cmdPExpire(c *conn, args [][]byte)   { expireCmd(c, args, "pexpire", 1, false) }
func cmdExpireAt(c *conn, args [][]byte)  { expireCmd(c, args, "expireat", 1000, true) }
func cmdPExpireAt(c *conn, args [][]byte) { expireCmd(c, args, "pexpireat", 1, true) }

// expireCmd implements EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT with Redis
// 7's NX/XX/GT/LT options. A time in the past deletes the key.
func expireCmd(c *conn, args [][]byte, name string, scale int64, absolute bool) {
	var nx, xx, gt, lt bool
	for _, a := range args[3:] {
		switch {
		case equalFold(a, "nx"):
			nx = true
		case equalFold(a, "xx"):
			xx = true
		case equalFold(a, "gt"):
			gt = true
		case equalFold(a, "lt"):
			lt = true
		default:
			c.writeError("ERR Unsupported option " + string(cString(a, len(a))))
			return
		}
	}
	if nx && (xx || gt || lt) {
		c.writeError("ERR NX and XX, GT or LT options at the same time are not compatible")
		return
	}
	if gt && lt {
		c.writeError("ERR GT and LT options at the same time are not compatible")
		return
	}
	when, ok := parseInt(args[2])
	if !ok {
		c.writeError(errNotInteger)
		return
	}
	if when > math.MaxInt64/scale || when < math.MinInt64/scale {
		c.writeError(invalidExpire(name))
		return
	}
	when *= scale
	if !absolute {
		now := c.now()
		if when > math.MaxInt64-now {
			c.writeError(invalidExpire(name))
			return
		}
		when += now
	}
	op := kv.Op{Kind: kv.OpExpire, Namespace: c.ns, Key: args[1], ExpireAt: when}
	switch {
	case nx:
		op.ExpireCond = kv.ExpireNX
	case gt:
		// GT already fails on a key without expiry, which is what XX adds.
		op.ExpireCond = kv.ExpireGT
	case lt && xx:
		// One op carries one condition; check XX here. A PERSIST racing
		// between the read and the write can let LT apply to a key that
		// lost its expiry meanwhile, which Redis (single-threaded) cannot.
		c.applyPending()
		v, ok, err := c.s.opts.Store.Get(c.reqCtx(), c.ns, args[1])
		if err != nil {
			c.writeErr(err)
			return
		}
		if !ok || v.ExpireAt == 0 {
			c.writeInt(0)
			return
		}
		op.ExpireCond = kv.ExpireLT
	case lt:
		op.ExpireCond = kv.ExpireLT
	case xx:
		op.ExpireCond = kv.ExpireXX
	}
	first := len(c.ops)
	c.ops = append(c.ops, op)
	c.queue(pendApplied, first)
}

func cmdPersist(c *conn, args [][]byte) {
	c.queueOp(kv.Op{Kind: kv.OpPersist, Namespace: c.ns, Key: args[1]}, pendApplied)
}

// ttlReply answers TTL-style commands: -2 for a missing key, -1 for one
// without expiry, else f of its expiry.
func ttlReply(c *conn, key []byte, f func(expireAt int64) int64) {
	v, ok, err := c.s.opts.Store.Get(c.reqCtx(), c.ns, key)
	switch {
	case err != nil:
		c.writeErr(err)
	case !ok:
		c.writeInt(-2)
	case v.ExpireAt == 0:
		c.writeInt(-1)
	default:
		c.writeInt(f(v.ExpireAt))
	}
}

func cmdTTL(c *conn, args [][]byte) {
	// Rounded to the nearest second, as Redis does.
	ttlReply(c, args[1], func(at int64) int64 { return (max(at-c.now(), 0) + 500) / 1000 })
}

func cmdPTTL(c *conn, args [][]byte) {
	ttlReply(c, args[1], func(at int64) int64 { return max(at-c.now(), 0) })
}

func cmdExpireTime(c *conn, args [][]byte) {
	ttlReply(c, args[1], func(at int64) int64 { return at / 1000 })
}

func cmdPExpireTime(c *conn, args [][]byte) {
	ttlReply(c, args[1], func(at int64) int64 { return at })
}

func cmdType(c *conn, args [][]byte) {
	_, ok, err := c.s.opts.Store.Get(c.reqCtx(), c.ns, args[1])
	switch {
	case err != nil:
		c.writeErr(err)
	case ok:
		c.writeSimple("string")
	default:
		c.writeSimple("none")
	}
}

// parseCursor parses a SCAN cursor: a decimal uint64.
func parseCursor(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		d := uint64(ch - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

func cmdScan(c *conn, args [][]byte) {
	cursor, ok := parseCursor(args[1])
	if !ok {
		c.writeError(errInvalidCursor)
		return
	}
	count := int64(10)
	var pat []byte
	wantStrings := true
	for i := 2; i < len(args); i += 2 {
		if i+1 >= len(args) {
			c.writeError(errSyntax)
			return
		}
		switch a := args[i]; {
		case equalFold(a, "count"):
			n, ok := parseInt(args[i+1])
			if !ok {
				c.writeError(errNotInteger)
				return
			}
			if n < 1 {
				c.writeError(errSyntax)
				return
			}
			count = n
		case equalFold(a, "match"):
			pat = args[i+1]
		case equalFold(a, "type"):
			// Only strings exist; any other type matches nothing, and
			// the scan still walks the keyspace as Redis 7.0's does.
			wantStrings = equalFold(args[i+1], "string")
		default:
			c.writeError(errSyntax)
			return
		}
	}
	var after []byte
	if cursor != 0 {
		if after, ok = c.s.cursors.get(cursor, c.ns); !ok {
			c.writeError(errInvalidCursor)
			return
		}
	}
	req := kv.ScanRequest{Namespace: c.ns, After: after, Limit: int(min(count, math.MaxInt32)), KeysOnly: true}
	setMatch(&req, pat)
	res, err := c.s.opts.Store.Scan(c.reqCtx(), req)
	if err != nil {
		c.writeErr(err)
		return
	}
	var next uint64
	if res.Next != nil {
		next = c.s.cursors.put(c.ns, res.Next)
	}
	if !wantStrings {
		res.Entries = nil
	}
	c.writeArray(2)
	var tmp [20]byte
	c.writeBulk(strconv.AppendUint(tmp[:0], next, 10))
	c.writeArray(len(res.Entries))
	for _, e := range res.Entries {
		c.writeBulk(e.Key)
	}
}

// setMatch restricts a scan to keys matching the glob pat, seeking to its
// literal prefix. An empty pattern or "*" matches everything.
func setMatch(req *kv.ScanRequest, pat []byte) {
	if len(pat) == 0 && pat == nil || len(pat) == 1 && pat[0] == '*' {
		return
	}
	req.Prefix = globPrefix(pat)
	if len(req.Prefix) == len(pat) {
		// No wildcard: only the key itself can match.
		req.Match = func(k []byte) bool { return string(k) == string(pat) }
		return
	}
	req.Match = func(k []byte) bool { return matchGlob(pat, k, false) }
}

// keysPage is how many keys KEYS and RANDOMKEY examine per store call.
const keysPage = 1000

func cmdKeys(c *conn, args [][]byte) {
	if n := c.s.opts.Store.Count(c.ns); n > int64(c.s.opts.MaxKeysCommand) {
		c.writeError("ERR KEYS refused: namespace '" + c.ns + "' holds " + strconv.FormatInt(n, 10) +
			" keys, more than the limit of " + strconv.Itoa(c.s.opts.MaxKeysCommand) + "; iterate with SCAN instead")
		return
	}
	req := kv.ScanRequest{Namespace: c.ns, Limit: keysPage, KeysOnly: true}
	setMatch(&req, args[1])
	var keys [][]byte
	for {
		res, err := c.s.opts.Store.Scan(c.reqCtx(), req)
		if err != nil {
			c.writeErr(err)
			return
		}
		for _, e := range res.Entries {
			keys = append(keys, e.Key)
		}
		if res.Next == nil {
			break
		}
		req.After = res.Next
	}
	c.writeArray(len(keys))
	for _, k := range keys {
		c.writeBulk(k)
	}
}

// cmdRandomKey returns a key near a random point of the namespace. Keys are
// ordered, so this is uniform over the gaps between keys rather than over
// keys; Redis promises no more than "a random key" either.
func cmdRandomKey(c *conn, _ [][]byte) {
	if c.s.opts.Store.Count(c.ns) == 0 {
		c.writeNull()
		return
	}
	var seed [8]byte
	for i := range seed {
		seed[i] = byte(rand.Uint32())
	}
	req := kv.ScanRequest{Namespace: c.ns, After: seed[:rand.IntN(len(seed))+1], Limit: keysPage, KeysOnly: true}
	for wrapped := false; ; {
		res, err := c.s.opts.Store.Scan(c.reqCtx(), req)
		if err != nil {
			c.writeErr(err)
			return
		}
		if len(res.Entries) > 0 {
			c.writeBulk(res.Entries[0].Key)
			return
		}
		if res.Next != nil {
			req.After = res.Next
			continue
		}
		if wrapped {
			c.writeNull()
			return
		}
		wrapped, req.After = true, nil
	}
}

func cmdDBSize(c *conn, _ [][]byte) { c.writeInt(c.s.opts.Store.Count(c.ns)) }

// flushArgs checks FLUSHDB/FLUSHALL's optional ASYNC|SYNC (both flush
// synchronously here) and whether flushing is enabled.
func flushArgs(c *conn, args [][]byte, name string) bool {
	if len(args) > 2 || len(args) == 2 && !equalFold(args[1], "async") && !equalFold(args[1], "sync") {
		c.writeError(errSyntax)
		return false
	}
	if !c.s.opts.EnableFlush {
		c.writeError(string(kv.CodeDisabled) + " " + name + " is disabled on this server; enable flush commands in Fulcrum's configuration to allow it")
		return false
	}
	return true
}

func cmdFlushDB(c *conn, args [][]byte) {
	if !flushArgs(c, args, "FLUSHDB") {
		return
	}
	if _, ok := c.applyOne(kv.Batch{Ops: []kv.Op{{Kind: kv.OpFlush, Namespace: c.ns}}}); ok {
		c.writeOK()
	}
}

func cmdFlushAll(c *conn, args [][]byte) {
	if !flushArgs(c, args, "FLUSHALL") {
		return
	}
	var ops []kv.Op
	for _, st := range c.s.opts.Store.Keyspace() {
		ops = append(ops, kv.Op{Kind: kv.OpFlush, Namespace: st.Name})
	}
	if len(ops) > 0 {
		if _, ok := c.applyOne(kv.Batch{Ops: ops}); !ok {
			return
		}
	}
	c.writeOK()
}

// cmdNamespace selects the connection's namespace (Fulcrum's counterpart
// of SELECT) or, without an argument, names the current one.
func cmdNamespace(c *conn, args [][]byte) {
	switch len(args) {
	case 1:
		c.writeBulkString(c.ns)
	case 2:
		ns := string(args[1])
		if err := kv.ValidateNamespace(ns); err != nil {
			c.writeErr(err)
			return
		}
		c.setNamespace(ns)
		c.writeOK()
	default:
		c.writeError("ERR wrong number of arguments for 'namespace' command")
	}
}
