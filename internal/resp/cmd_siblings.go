package resp

import (
	"context"
	"strings"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// Writes that carry a causal context. In a conflicts=siblings namespace a
// plain SET or DEL is blind: it is concurrent with every value stored and
// adds a sibling. A client that read the siblings (FULCRUM.GETMETA)
// resolves them by writing with the read's context, which replaces every
// sibling that read returned.

const (
	putUsage = "usage: FULCRUM.PUT key value [CONTEXT context]"
	delUsage = "usage: FULCRUM.DEL key [CONTEXT context]"
)

// cmdFulcrumPut is FULCRUM.PUT key value [CONTEXT context]: SET, replacing
// the siblings of the read whose context it passes (without one, a blind
// write like SET).
func cmdFulcrumPut(c *conn, args [][]byte) {
	if len(args) != 3 && len(args) != 5 {
		c.writeErr(kv.Errorf(kv.CodeInvalid, putUsage))
		return
	}
	if !c.checkKeyValue(args[1], len(args[2])) {
		return
	}
	ctx, ok := c.causalRequest(args[3:], putUsage)
	if !ok {
		return
	}
	op := kv.Op{Kind: kv.OpSet, Namespace: c.ns, Key: args[1], Value: args[2]}
	if _, ok := c.applyCausal(ctx, op); ok {
		c.writeOK()
	}
}

// cmdFulcrumDel is FULCRUM.DEL key [CONTEXT context]: DEL of one key,
// deleting the siblings of the read whose context it passes. It answers 1,
// as DEL counts a key of an eventual namespace (knowing whether it existed
// would need a read).
func cmdFulcrumDel(c *conn, args [][]byte) {
	if len(args) != 2 && len(args) != 4 {
		c.writeErr(kv.Errorf(kv.CodeInvalid, delUsage))
		return
	}
	if !c.checkKey(args[1]) {
		return
	}
	ctx, ok := c.causalRequest(args[2:], delUsage)
	if !ok {
		return
	}
	r, ok := c.applyCausal(ctx, kv.Op{Kind: kv.OpDelete, Namespace: c.ns, Key: args[1]})
	if ok {
		c.writeInt(b2i(r.Applied))
	}
}

// causalRequest is the request context of a write whose options are opts
// (empty, or CONTEXT and the text a read returned), answering the
// refusal itself when it cannot be used.
func (c *conn) causalRequest(opts [][]byte, usage string) (context.Context, bool) {
	ctx := c.reqCtx()
	if len(opts) == 0 {
		return ctx, true
	}
	if !strings.EqualFold(string(opts[0]), "CONTEXT") {
		c.writeErr(kv.Errorf(kv.CodeInvalid, "unknown option %q: %s", opts[0], usage))
		return nil, false
	}
	if _, cluster := c.s.opts.Store.(MetaReader); !cluster {
		c.writeErr(kv.Errorf(kv.CodeInvalid, "this node runs alone: its keys have one value each and no causal context"))
		return nil, false
	}
	cc, err := kv.ParseCausalContext(string(opts[1]))
	if err != nil {
		c.writeErr(err)
		return nil, false
	}
	return kv.WithCausalContext(ctx, cc), true
}

// applyCausal applies one write with ctx and returns its result, answering
// any error itself.
func (c *conn) applyCausal(ctx context.Context, op kv.Op) (kv.Result, bool) {
	res, err := c.s.opts.Store.Apply(ctx, kv.Batch{Ops: []kv.Op{op}})
	switch {
	case err != nil:
	case len(res) != 1:
		err = kv.Errorf(kv.CodeInternal, "store returned %d results for 1 op", len(res))
	default:
		err = res[0].Err
	}
	if err != nil {
		c.writeErr(err)
		return kv.Result{}, false
	}
	return res[0], true
}
