package resp

import (
	"math"
	"strconv"
	"strings"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// Expiry units of SET/GETEX options.
const (
	unitNone = iota
	unitEX   // seconds from now
	unitPX   // milliseconds from now
	unitEXAT // Unix seconds
	unitPXAT // Unix milliseconds
)

// stringOpts are the options of SET (isSet) and GETEX.
type stringOpts struct {
	nx, xx, get, keepTTL, persist bool
	unit                          int
	arg                           []byte // the expiry argument
}

// parseStringOpts parses SET's or GETEX's options with Redis's rules:
// NX/XX, and EX/PX/EXAT/PXAT/KEEPTTL/PERSIST are mutually exclusive, the
// same option may repeat (the last expiry wins), and anything else,
// including a missing expiry argument, is a syntax error.
func parseStringOpts(opts [][]byte, isSet bool) (stringOpts, bool) {
	var o stringOpts
	for j := 0; j < len(opts); j++ {
		a := opts[j]
		hasArg := j+1 < len(opts)
		unit := unitNone
		switch {
		case isSet && equalFold(a, "nx") && !o.xx:
			o.nx = true
		case isSet && equalFold(a, "xx") && !o.nx:
			o.xx = true
		case isSet && equalFold(a, "get"):
			o.get = true
		case isSet && equalFold(a, "keepttl") && o.unit == unitNone:
			o.keepTTL = true
		case !isSet && equalFold(a, "persist") && o.unit == unitNone:
			o.persist = true
		case equalFold(a, "ex"):
			unit = unitEX
		case equalFold(a, "px"):
			unit = unitPX
		case equalFold(a, "exat"):
			unit = unitEXAT
		case equalFold(a, "pxat"):
			unit = unitPXAT
		default:
			return o, false
		}
		if unit != unitNone {
			if o.keepTTL || o.persist || (o.unit != unitNone && o.unit != unit) || !hasArg {
				return o, false
			}
			o.unit, o.arg = unit, opts[j+1]
			j++
		}
	}
	return o, true
}

// expireAt converts an expiry argument of the given unit to Unix
// milliseconds, answering Redis's errors for non-integers and for
// non-positive or overflowing times.
func (c *conn) expireAt(arg []byte, unit int, cmd string) (int64, bool) {
	at, msg := c.resolveExpiry(arg, unit, cmd)
	if msg != "" {
		c.writeError(msg)
		return 0, false
	}
	return at, true
}

// resolveExpiry is expireAt returning the error text instead of answering.
func (c *conn) resolveExpiry(arg []byte, unit int, cmd string) (int64, string) {
	n, ok := parseInt(arg)
	if !ok {
		return 0, errNotInteger
	}
	seconds := unit == unitEX || unit == unitEXAT
	if n <= 0 || (seconds && n > math.MaxInt64/1000) {
		return 0, invalidExpire(cmd)
	}
	if seconds {
		n *= 1000
	}
	if unit == unitEX || unit == unitPX {
		now := c.now()
		if n > math.MaxInt64-now {
			return 0, invalidExpire(cmd)
		}
		n += now
	}
	return n, ""
}

func invalidExpire(cmd string) string { return "ERR invalid expire time in '" + cmd + "' command" }

func cmdGet(c *conn, args [][]byte) {
	v, ok, err := c.s.opts.Store.Get(c.reqCtx(), c.ns, args[1])
	c.writeLookup(v, ok, err)
}

// writeLookup answers one key read (GET, or an MGET element, where an
// error element keeps the array's framing) and counts hits and misses.
func (c *conn) writeLookup(v kv.Value, ok bool, err error) {
	switch {
	case err != nil:
		c.writeErr(err)
	case !ok:
		c.misses++
		c.writeNull()
	default:
		c.hits++
		c.writeBulk(v.Data)
	}
}

func cmdSet(c *conn, args [][]byte) {
	op := kv.Op{Kind: kv.OpSet, Namespace: c.ns, Key: args[1], Value: args[2]}
	kind := pendSet
	if len(args) > 3 {
		o, ok := parseStringOpts(args[3:], true)
		if !ok {
			c.writeError(errSyntax)
			return
		}
		if o.unit != unitNone {
			if op.ExpireAt, ok = c.expireAt(o.arg, o.unit, "set"); !ok {
				return
			}
		}
		op.KeepTTL = o.keepTTL
		if o.nx {
			op.Cond = kv.CondAbsent
		} else if o.xx {
			op.Cond = kv.CondPresent
		}
		if o.get {
			kind = pendPrev
		}
	}
	if !c.checkKeyValue(op.Key, len(op.Value)) {
		return
	}
	first := len(c.ops)
	c.ops = append(c.ops, op)
	c.queue(kind, first)
}

func cmdSetNX(c *conn, args [][]byte) {
	if !c.checkKeyValue(args[1], len(args[2])) {
		return
	}
	c.queueOp(kv.Op{Kind: kv.OpSet, Namespace: c.ns, Key: args[1], Value: args[2], Cond: kv.CondAbsent}, pendApplied)
}

func cmdSetEX(c *conn, args [][]byte)  { setWithExpiry(c, args, unitEX, "setex") }
func cmdPSetEX(c *conn, args [][]byte) { setWithExpiry(c, args, unitPX, "psetex") }

func setWithExpiry(c *conn, args [][]byte, unit int, name string) {
	at, ok := c.expireAt(args[2], unit, name)
	if !ok || !c.checkKeyValue(args[1], len(args[3])) {
		return
	}
	c.queueOp(kv.Op{Kind: kv.OpSet, Namespace: c.ns, Key: args[1], Value: args[3], ExpireAt: at}, pendOK)
}

func cmdGetSet(c *conn, args [][]byte) {
	if !c.checkKeyValue(args[1], len(args[2])) {
		return
	}
	c.queueOp(kv.Op{Kind: kv.OpSet, Namespace: c.ns, Key: args[1], Value: args[2]}, pendPrev)
}

func cmdGetDel(c *conn, args [][]byte) {
	c.queueOp(kv.Op{Kind: kv.OpDelete, Namespace: c.ns, Key: args[1]}, pendPrev)
}

func cmdGetEx(c *conn, args [][]byte) {
	o, ok := parseStringOpts(args[2:], false)
	if !ok {
		c.writeError(errSyntax)
		return
	}
	op := kv.Op{Namespace: c.ns, Key: args[1]}
	switch {
	case o.persist:
		op.Kind = kv.OpPersist
	case o.unit != unitNone:
		op.Kind = kv.OpExpire
		// Redis looks the key up before validating the time, so a
		// missing key answers null even when the time is invalid.
		at, msg := c.resolveExpiry(o.arg, o.unit, "getex")
		if msg != "" {
			_, exists, gerr := c.s.opts.Store.Get(c.reqCtx(), c.ns, args[1])
			switch {
			case gerr != nil:
				c.writeErr(gerr)
			case !exists:
				c.writeNull()
			default:
				c.writeError(msg)
			}
			return
		}
		op.ExpireAt = at
	default:
		cmdGet(c, args)
		return
	}
	r, ok := c.applyOne(kv.Batch{Ops: []kv.Op{op}})
	if !ok {
		return
	}
	if r.PrevExists {
		c.writeBulk(r.Prev.Data)
	} else {
		c.writeNull()
	}
}

// applyOne applies a batch outside the pipeline's merged batch and returns
// its first result, answering any error itself.
func (c *conn) applyOne(b kv.Batch) (kv.Result, bool) {
	res, err := c.s.opts.Store.Apply(c.reqCtx(), b)
	if err == nil && len(res) != len(b.Ops) {
		err = kv.Errorf(kv.CodeInternal, "store returned %d results for %d ops", len(res), len(b.Ops))
	}
	if err != nil {
		c.writeErr(err)
		return kv.Result{}, false
	}
	for i := range res {
		if res[i].Err != nil {
			c.writeErr(res[i].Err)
			return kv.Result{}, false
		}
	}
	return res[0], true
}

func cmdMGet(c *conn, args [][]byte) {
	keys := args[1:]
	c.writeArray(len(keys))
	for _, k := range keys {
		v, ok, err := c.s.opts.Store.Get(c.reqCtx(), c.ns, k)
		c.writeLookup(v, ok, err)
	}
}

func cmdMSet(c *conn, args [][]byte) {
	if len(args)%2 == 0 {
		c.writeError("ERR wrong number of arguments for 'mset' command")
		return
	}
	for i := 1; i < len(args); i += 2 {
		if !c.checkKeyValue(args[i], len(args[i+1])) {
			return
		}
	}
	first := len(c.ops)
	for i := 1; i < len(args); i += 2 {
		c.ops = append(c.ops, kv.Op{Kind: kv.OpSet, Namespace: c.ns, Key: args[i], Value: args[i+1]})
	}
	c.queue(pendOK, first)
}

func cmdMSetNX(c *conn, args [][]byte) {
	if len(args)%2 == 0 {
		c.writeError("ERR wrong number of arguments for 'msetnx' command")
		return
	}
	ops := make([]kv.Op, 0, len(args)/2)
	for i := 1; i < len(args); i += 2 {
		if !c.checkKeyValue(args[i], len(args[i+1])) {
			return
		}
		ops = append(ops, kv.Op{Kind: kv.OpSet, Namespace: c.ns, Key: args[i], Value: args[i+1]})
	}
	r, ok := c.applyOne(kv.Batch{Ops: ops, AllAbsent: true})
	if ok {
		c.writeInt(b2i(r.Applied))
	}
}

func queueIncr(c *conn, key []byte, delta int64) {
	c.queueOp(kv.Op{Kind: kv.OpIncrBy, Namespace: c.ns, Key: key, Delta: delta}, pendIncr)
}

func cmdIncr(c *conn, args [][]byte) { queueIncr(c, args[1], 1) }
func cmdDecr(c *conn, args [][]byte) { queueIncr(c, args[1], -1) }

func cmdIncrBy(c *conn, args [][]byte) {
	n, ok := parseInt(args[2])
	if !ok {
		c.writeError(errNotInteger)
		return
	}
	queueIncr(c, args[1], n)
}

func cmdDecrBy(c *conn, args [][]byte) {
	n, ok := parseInt(args[2])
	switch {
	case !ok:
		c.writeError(errNotInteger)
	case n == math.MinInt64:
		c.writeError("ERR decrement would overflow")
	default:
		queueIncr(c, args[1], -n)
	}
}

func cmdIncrByFloat(c *conn, args [][]byte) {
	f, ok := parseFloat(args[2])
	if !ok {
		c.writeError(errNotFloat)
		return
	}
	c.queueOp(kv.Op{Kind: kv.OpIncrByFloat, Namespace: c.ns, Key: args[1], DeltaFloat: f}, pendIncrFlt)
}

// parseFloat parses a float as Redis's string2ld does: no surrounding
// space, not NaN, whole string consumed. Infinity parses (the increment
// then fails with Redis's NaN-or-Infinity error).
func parseFloat(b []byte) (float64, bool) {
	if len(b) == 0 || len(b) > 5*1024 || isSpace(b[0]) || isSpace(b[len(b)-1]) {
		return 0, false
	}
	s := string(b)
	if len(s) > 2 && (s[0] == '0' || s[0] == '-' || s[0] == '+') && strings.ContainsAny(s[:3], "xX") &&
		!strings.ContainsAny(s, "pP") {
		// strtold takes hex without a binary exponent; Go wants one.
		s += "p0"
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		// strtold saturates to ±inf on overflow rather than failing.
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return f, true
		}
		return 0, false
	}
	if math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

func cmdAppend(c *conn, args [][]byte) {
	if !c.checkKeyValue(args[1], len(args[2])) {
		return
	}
	c.queueOp(kv.Op{Kind: kv.OpAppend, Namespace: c.ns, Key: args[1], Value: args[2]}, pendLen)
}

func cmdStrlen(c *conn, args [][]byte) {
	v, ok, err := c.s.opts.Store.Get(c.reqCtx(), c.ns, args[1])
	switch {
	case err != nil:
		c.writeErr(err)
	case !ok:
		c.writeInt(0)
	default:
		c.writeInt(int64(len(v.Data)))
	}
}

func cmdGetRange(c *conn, args [][]byte) {
	start, ok1 := parseInt(args[2])
	end, ok2 := parseInt(args[3])
	if !ok1 || !ok2 {
		c.writeError(errNotInteger)
		return
	}
	v, ok, err := c.s.opts.Store.Get(c.reqCtx(), c.ns, args[1])
	if err != nil {
		c.writeErr(err)
		return
	}
	if !ok {
		c.writeBulk(nil)
		return
	}
	c.writeBulk(substr(v.Data, start, end))
}

// substr applies GETRANGE's index rules: negative indexes count from the
// end, both are clamped into the string, and an empty range is "".
func substr(s []byte, start, end int64) []byte {
	n := int64(len(s))
	if start < 0 && end < 0 && start > end {
		return nil
	}
	if start < 0 {
		start += n
	}
	if end < 0 {
		end += n
	}
	start, end = max(start, 0), max(end, 0)
	if end >= n {
		end = n - 1
	}
	if start > end || n == 0 {
		return nil
	}
	return s[start : end+1]
}

func cmdSetRange(c *conn, args [][]byte) {
	offset, ok := parseInt(args[2])
	if !ok {
		c.writeError(errNotInteger)
		return
	}
	if offset < 0 {
		c.writeError(errOffsetRange)
		return
	}
	val := args[3]
	if len(val) > 0 {
		if offset > kv.HardMaxValueSize {
			c.writeError(errStringTooLong)
			return
		}
		if !c.checkKeyValue(args[1], int(offset)+len(val)) {
			return
		}
	}
	c.queueOp(kv.Op{Kind: kv.OpSetRange, Namespace: c.ns, Key: args[1], Value: val, Offset: offset}, pendLen)
}
