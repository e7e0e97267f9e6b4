package transport

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// NodeID identifies a node of the cluster. Zero is not a valid node: it means
// "no node" (as in etcd raft).
type NodeID uint64

// String returns id in decimal, as it appears in logs and metric labels.
func (id NodeID) String() string { return strconv.FormatUint(uint64(id), 10) }

// Kind says which service a message belongs to; each service registers one
// Handler.
type Kind uint8

// The kinds in use. Values are part of the wire format: never renumber one.
const (
	KindRaft       Kind = 1 // raft messages of all groups (one-way)
	KindForward    Kind = 2 // router request forwarding (Call)
	KindControl    Kind = 3 // control plane (Call and one-way)
	KindLeaderless Kind = 4 // the eventual/weak engine's replica calls
	KindPrimary    Kind = 5 // the primary/replica engine's log shipping
)

// String returns the kind's name, or its number for an unknown kind.
func (k Kind) String() string {
	switch k {
	case KindRaft:
		return "raft"
	case KindForward:
		return "forward"
	case KindControl:
		return "control"
	case KindLeaderless:
		return "leaderless"
	case KindPrimary:
		return "primary"
	}
	return "kind" + strconv.Itoa(int(k))
}

// Handler receives what peers send. Deliver must not block for long (queue
// internally): it runs on the goroutine that reads the peer's messages, so a
// slow Deliver delays every later message from that peer. Deliver owns
// payload. Serve answers a Call in a goroutine of its own; it owns the request
// payload, and hands the reply it returns over to the transport. Its ctx
// carries the caller's deadline and ends when the connection or the endpoint
// does; Serve must return then, since Close waits for it.
type Handler interface {
	Deliver(from NodeID, kind Kind, payload []byte)
	Serve(ctx context.Context, from NodeID, kind Kind, payload []byte) ([]byte, error)
}

// Endpoint is one node's attachment to the network. Both *TCP and simnet
// endpoints implement it.
type Endpoint interface {
	// ID returns the node this endpoint belongs to.
	ID() NodeID
	// Handle registers h for kind; call it before traffic of that kind
	// arrives. Messages of kinds with no handler are dropped and counted;
	// Calls get an error coded kv.CodeUnavailable.
	Handle(kind Kind, h Handler)
	// Send queues a one-way message and returns at once. It takes ownership
	// of payload. Errors: ErrQueueFull (the peer's bounded queue is full:
	// backpressure; the message is dropped, Raft tolerates it),
	// ErrUnknownPeer, ErrClosed, ErrFrameTooLarge.
	Send(to NodeID, kind Kind, payload []byte) error
	// Call sends a request and waits for the reply or ctx's end. It takes
	// ownership of payload, as Send does (the request may still be written
	// after Call returns); the reply belongs to the caller. A remote
	// Serve error comes back as a *kv.Error built by ReplyError. A request
	// that was never sent (peer down or unreachable) gives an error matching
	// kv.ErrUnavailable and wrapping ErrUnreachable; a connection lost after
	// the request went out gives one matching kv.ErrTimeout and wrapping
	// ErrConnectionLost; the end of ctx gives an error matching
	// kv.ErrTimeout. In the last two the outcome is unknown.
	Call(ctx context.Context, to NodeID, kind Kind, payload []byte) ([]byte, error)
	// Close detaches the endpoint: it stops every goroutine of the endpoint
	// and waits for them. Pending Calls fail with ErrClosed.
	Close() error
}

// The errors of Send and Call. Each is a *kv.Error, so any error wrapping one
// also carries a code for the edge (kv.CodeOf) and matches the code's
// sentinel: errors.Is(err, kv.ErrUnavailable) holds for all but
// ErrFrameTooLarge, which matches kv.ErrTooLarge.
var (
	// ErrQueueFull: the peer's outbound queue is full (backpressure).
	ErrQueueFull = &kv.Error{Code: kv.CodeUnavailable, Message: "transport: peer queue full"}
	// ErrUnknownPeer: the peer's address cannot be resolved.
	ErrUnknownPeer = &kv.Error{Code: kv.CodeUnavailable, Message: "transport: unknown peer"}
	// ErrClosed: the endpoint is closed.
	ErrClosed = &kv.Error{Code: kv.CodeUnavailable, Message: "transport: endpoint closed"}
	// ErrUnreachable: the request was not sent; the peer is down, refused
	// the connection or cannot be reached. Retrying elsewhere is safe.
	ErrUnreachable = &kv.Error{Code: kv.CodeUnavailable, Message: "transport: peer unreachable"}
	// ErrConnectionLost: the connection broke after the request went out,
	// so the peer may have served it: the outcome is unknown (TIMEOUT), and
	// a non-idempotent request must not be retried blindly.
	ErrConnectionLost = &kv.Error{Code: kv.CodeTimeout, Message: "transport: connection lost, outcome unknown"}
	// ErrFrameTooLarge: a message does not fit in one frame (TCPConfig.MaxFrame).
	ErrFrameTooLarge = &kv.Error{Code: kv.CodeTooLarge, Message: "transport: frame too large"}
)

// maxErrorMessage bounds the message of an error reply, so an error can never
// make a reply frame too large.
const maxErrorMessage = 4096

// ReplyError is the error a caller receives for the error err returned by a
// remote Serve: the code kv.CodeOf(err), and as message the Message of the
// first *kv.Error in err's chain, or err's text for an uncoded error. Both
// implementations use it, so a Call fails the same way over TCP and simnet.
func ReplyError(err error) *kv.Error {
	code := kv.CodeOf(err)
	var ke *kv.Error
	msg := err.Error()
	if errors.As(err, &ke) {
		msg = ke.Message
	}
	if len(msg) > maxErrorMessage {
		msg = msg[:maxErrorMessage]
	}
	return &kv.Error{Code: code, Message: msg}
}

// UnreachableError returns the error of a Call that could not reach node to:
// it matches kv.ErrUnavailable and wraps ErrUnreachable and cause (which may
// be nil).
func UnreachableError(to NodeID, cause error) error {
	if cause == nil {
		return fmt.Errorf("call node %d: %w", to, ErrUnreachable)
	}
	return fmt.Errorf("call node %d: %w: %w", to, ErrUnreachable, cause)
}

// LostError returns the error of a Call to node to whose connection broke
// after the request was sent: it matches kv.ErrTimeout and wraps
// ErrConnectionLost and cause.
func LostError(to NodeID, cause error) error {
	return fmt.Errorf("call node %d: %w: %w", to, ErrConnectionLost, cause)
}

// TimeoutError returns the error of a Call to node to whose context ended
// (ctxErr is its Err()): it matches kv.ErrTimeout and wraps ctxErr.
func TimeoutError(to NodeID, ctxErr error) error {
	return kv.Errorf(kv.CodeTimeout, "call node %d: outcome unknown: %w", to, ctxErr)
}

// HandlerFuncs adapts two functions to a Handler. A nil OnDeliver drops
// messages; a nil OnServe answers every Call with kv.CodeNotSupported.
type HandlerFuncs struct {
	OnDeliver func(from NodeID, kind Kind, payload []byte)
	OnServe   func(ctx context.Context, from NodeID, kind Kind, payload []byte) ([]byte, error)
}

// Deliver calls f.OnDeliver.
func (f HandlerFuncs) Deliver(from NodeID, kind Kind, payload []byte) {
	if f.OnDeliver != nil {
		f.OnDeliver(from, kind, payload)
	}
}

// Serve calls f.OnServe.
func (f HandlerFuncs) Serve(ctx context.Context, from NodeID, kind Kind, payload []byte) ([]byte, error) {
	if f.OnServe == nil {
		return nil, kv.Errorf(kv.CodeNotSupported, "no calls of kind %v", kind)
	}
	return f.OnServe(ctx, from, kind, payload)
}

// Counters counts an endpoint's traffic, in total or with one peer. Messages
// are one-way messages, call requests and call replies; bytes are payload
// bytes (framing excluded, so TCP and simnet figures compare).
type Counters struct {
	MessagesSent     uint64 // written to the network (TCP: flushed to the socket)
	BytesSent        uint64
	MessagesReceived uint64
	BytesReceived    uint64
	DroppedQueueFull uint64 // Send or Call refused with ErrQueueFull
	DroppedExpired   uint64 // one-way messages older than the TTL, and requests past their deadline, when the writer reached them
	DroppedNoHandler uint64 // received messages of a kind with no handler
	Reconnects       uint64 // connections to the peer established after the first
	DialFailures     uint64 // failed connection attempts (refused, timed out, handshake refused)
}

// Add adds o to c.
func (c *Counters) Add(o Counters) {
	c.MessagesSent += o.MessagesSent
	c.BytesSent += o.BytesSent
	c.MessagesReceived += o.MessagesReceived
	c.BytesReceived += o.BytesReceived
	c.DroppedQueueFull += o.DroppedQueueFull
	c.DroppedExpired += o.DroppedExpired
	c.DroppedNoHandler += o.DroppedNoHandler
	c.Reconnects += o.Reconnects
	c.DialFailures += o.DialFailures
}

// Stats is a snapshot of an endpoint's counters: the totals, and the same
// counters per peer.
type Stats struct {
	Counters
	Peers map[NodeID]Counters
}
