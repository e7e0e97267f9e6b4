// Package resp is Fulcrum's Redis protocol front end: it speaks RESP2 and
// RESP3 to redis-cli, redis-benchmark and ordinary Redis client libraries,
// and serves Redis's string and keyspace commands from a Store
// (storage.Store in the server), one namespace per connection.
//
// # Codec
//
// Reader parses requests, both multibulk arrays and the inline commands
// that telnet users and redis-cli's raw mode send. Every limit (bulk size,
// element count, inline line length, request size) is checked against the
// declared size before memory is reserved, and large bulks grow only as
// their bytes arrive. Malformed input is answered with Redis's exact
// protocol error text and the connection is closed, since the stream
// cannot be resynchronised. Arguments are slices of a per-connection arena,
// so steady-state parsing does not allocate. The Append functions encode
// replies into the free space of a per-connection bufio.Writer.
//
// # Pipelining and write batching
//
// A connection processes every complete request already buffered before it
// flushes its replies, so a pipeline of N commands costs one read and one
// write. Consecutive pipelined writes (SET, DEL, INCR, EXPIRE, ...) are
// merged into one Store.Apply batch, applied in order; any command that
// reads first applies the queued batch, so it sees every earlier write of
// its connection. Replies always leave in request order. Each Apply is a
// trip through the store's single applier (and, with sync=always, an fsync
// group), so merging is what makes pipelined writes fast.
//
// # Guarantees
//
//   - A reply is written only after the command's effect is applied; with
//     a durable store that means acknowledged writes are on disk.
//   - Errors carry Redis's texts where Redis has one, and otherwise a
//     Fulcrum code as prefix (TOO_LARGE, UNAVAILABLE, TIMEOUT, READONLY,
//     DISABLED, INVALID), as docs/errors.md lists.
//   - SCAN cursors are decimal uint64s that stay valid across calls and
//     connections until evicted from a bounded table (then "ERR invalid
//     cursor"); a scan sees every key that exists throughout it.
//
// # Goroutines
//
// Serve runs an accept loop on the caller's goroutine. Each accepted
// connection gets one goroutine, started, tracked and waited for by the
// Server; it owns the connection's reader, writer and pending batch, and
// exits when the client leaves, the stream breaks, the idle timeout passes
// or the server drains. Shutdown stops accepting, interrupts blocked reads
// so idle connections close at once while busy ones finish the commands
// they have received and flush their replies, and force-closes whatever is
// left when its context ends. Close does all of that at once. Neither
// returns before every connection goroutine has exited. Other goroutines
// touch a connection only to read its CLIENT LIST fields (under a mutex or
// atomics) and to interrupt or close its socket.
package resp
