package kv

import (
	"context"
	"encoding/base64"
)

// Sibling is one live value of a key of an eventual or weak namespace
// (ReadMeta.Siblings): in a conflicts=siblings namespace, one of the
// concurrent writes no later write has replaced.
type Sibling struct {
	Value []byte
	// Timestamp (Unix ns) and Logical are the write's hybrid-logical-clock
	// time; Writer the node that coordinated it.
	Timestamp int64
	Logical   uint32
	Writer    uint64
}

// MaxCausalContext bounds the text form of a causal context a client
// sends back (FormatCausalContext's output): a context names one counter
// per node that ever coordinated a write of the key, a few bytes each.
const MaxCausalContext = 16 << 10

type causalContextKey struct{}

// WithCausalContext returns ctx carrying the causal context of the
// client's last read of the key it writes (ReadMeta.Context, decoded with
// ParseCausalContext): the write then replaces the siblings that read
// returned instead of adding one more. It applies to a one-key write of an
// eventual or weak namespace; the router refuses it anywhere else.
func WithCausalContext(ctx context.Context, cc []byte) context.Context {
	return context.WithValue(ctx, causalContextKey{}, cc)
}

// CausalContextFrom returns the causal context ctx carries, if any.
func CausalContextFrom(ctx context.Context) ([]byte, bool) {
	cc, ok := ctx.Value(causalContextKey{}).([]byte)
	return cc, ok
}

// FormatCausalContext is the text form of a causal context that the front
// ends hand to clients (URL-safe base64 without padding, so it fits an
// HTTP header and a RESP argument as it is).
func FormatCausalContext(cc []byte) string {
	return base64.RawURLEncoding.EncodeToString(cc)
}

// ParseCausalContext decodes FormatCausalContext's text form, refusing
// anything else with INVALID. What the bytes mean is checked where they
// are used (the router).
func ParseCausalContext(s string) ([]byte, error) {
	if len(s) > MaxCausalContext {
		return nil, Errorf(CodeInvalid, "causal context of %d bytes: at most %d (pass back the context a read returned)", len(s), MaxCausalContext)
	}
	cc, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(cc) == 0 {
		return nil, Errorf(CodeInvalid, "causal context %.40q is not one a read returned (want unpadded URL-safe base64)", s)
	}
	return cc, nil
}
