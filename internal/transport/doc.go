// Package transport provides node-to-node messaging for Fulcrum's engines:
// one-way messages (Raft traffic of every group) and request/reply Calls
// (request forwarding, control plane), both tagged with a Kind that selects
// the receiving service's Handler.
//
// Endpoint is the API engines use. Two implementations exist: TCP, over a
// real network, and transport/simnet, an in-memory network that partitions,
// delays, drops, duplicates and reorders, for fault tests.
//
// Guarantees, for both implementations:
//   - Send never blocks. Each peer has a bounded queue; when it is full, Send
//     fails with ErrQueueFull and the message is dropped (backpressure Raft
//     tolerates). Sent messages may be lost, never corrupted.
//   - Messages from one node to another are delivered in the order sent
//     (TCP always; simnet unless reordering is turned on), each by one call
//     to Handler.Deliver on a goroutine that serves only that peer's
//     messages (TCP) or that node's (simnet).
//   - A Call ends with the reply, the remote Serve's error as a *kv.Error of
//     the same code (ReplyError), an error wrapping ErrUnreachable and
//     matching kv.ErrUnavailable when the request was never sent (the peer
//     cannot be reached), an error wrapping ErrConnectionLost and matching
//     kv.ErrTimeout when the connection broke after it was sent (it may or
//     may not have been served), or, when ctx ends, an error matching
//     kv.ErrTimeout (outcome unknown). The
//     remote Serve's context carries the caller's deadline.
//   - Close stops every goroutine the endpoint started and waits for them.
//
// TCP: each node dials one connection per peer it sends to; a per-peer
// writer goroutine owns it, drains the whole queue into one buffered write
// per batch, and reconnects with jittered exponential backoff (10 ms to 1 s),
// resolving the peer's address again each time. Call replies come back on the
// same connection. A connection opens with a handshake that checks the
// protocol version, the cluster id and the node the dialer meant to reach.
// One-way messages older than MessageTTL when the writer reaches them are
// dropped, so a reconnect does not replay stale traffic. Frames are length
// prefixed and bounded (MaxFrame); a malformed or oversized frame closes the
// connection, never the process. See frame.go for the wire format.
package transport
