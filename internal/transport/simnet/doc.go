// Package simnet provides an in-memory network of transport.Endpoints with
// faults injected on command: partitions (Partition, Isolate, one-way
// Block), latency with jitter, drops, duplicates and reordering. Every engine
// fault test in Fulcrum runs over it.
//
// Guarantees:
//   - Random fault decisions come from a math/rand/v2 PCG seeded by New's
//     seed (Seed reports it), drawn under one mutex, so a failing run replays
//     as far as goroutine scheduling allows. Run inside a testing/synctest
//     bubble, time is virtual: latencies cost no wall time, and a run driven
//     from one goroutine replays exactly.
//   - Unless SetReorder(true), messages from one node to another arrive in
//     the order sent, whatever the latency jitter; duplicates arrive right
//     after their original at the earliest.
//   - Each node's messages are delivered in due order, one at a time, by a
//     deliverer goroutine of its endpoint; Calls are served each in its own
//     goroutine, with the caller's deadline.
//   - Faults apply when a message is sent and again when it is due: a
//     partition that starts while a message is in flight loses it.
//   - A Call to a node that is closed, partitioned away or blocked fails at
//     once with transport.ErrUnreachable (as a refused TCP connection would);
//     a Call whose callee closes while it waits fails at once the same way (a
//     lost connection); a Call whose request or reply is dropped or cut off
//     in flight waits for its context (kv.ErrTimeout), as over TCP.
//   - Messages to a closed endpoint are lost. Messages in flight are bound to
//     the incarnation they were sent to: a restarted node (Endpoint after
//     Close) never receives its predecessor's traffic.
//   - Messages in flight from one node to another are bounded
//     (SetQueueSize); beyond the bound Send fails with
//     transport.ErrQueueFull, as over TCP.
//   - Close of an endpoint or of the network waits for every goroutine it
//     owns: the network's scheduler (one timer heap for all messages, no
//     goroutine per message), each endpoint's deliverer and Serve calls.
package simnet
