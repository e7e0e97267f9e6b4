// Package leaderless provides the pure protocol logic of Fulcrum's eventual
// and weak engine (Dynamo-style): one quorum coordinator state machine per
// client request, and the bookkeeping of hinted handoff.
//
// # Coordinators
//
// Any node coordinates a request for a key. NewWrite and NewRead take a
// Plan (the key's preference list from placement, N, the quorum W or R, the
// nodes believed down, whether sloppy quorums are allowed, the read-repair
// mode) and return the coordinator with its first step: the messages to
// send. The caller then feeds in what happens — Reply, Failed, Timeout and,
// for reads, RepairDone — and every call returns the next step: more
// messages to send, read repairs, and once, the Outcome. The coordinator
// sends nothing itself and reads no clock; the node's run loop owns the
// network, the deadline and the goroutines, and drives one coordinator from
// one goroutine (a coordinator is not safe for concurrent use).
//
// The coordinator keeps these promises, whatever the order of its inputs:
//
//   - It never sends more than one request to a node, and never has more
//     than N requests outstanding: each of the N home replicas owns one
//     slot, and a slot has at most one target at a time.
//   - A home replica known to be down, or whose request could not be sent
//     at all (Failed with NeverSent), is replaced by the next healthy
//     fallback of the preference list when the plan allows sloppy quorums;
//     the request then names the owner it stands in for (Send.HintFor), and
//     the fallback keeps a hint to hand the write over later. A request
//     that may have reached its node (LostAfterSend) is not replaced: the
//     node may hold the write, and the slot's fate is simply unknown.
//   - The answer is success exactly when Quorum distinct slots answered
//     before Timeout. It fails fast, without sending anything, when fewer
//     than Quorum slots can be sent at all, and fails as soon as the quorum
//     can no longer be reached. Replies that are duplicates, late (after
//     Timeout), from nodes never asked, or for a slot already settled are
//     ignored.
//   - A failed write is not rolled back: its outcome lists the replicas
//     that acknowledged it and is marked Indeterminate whenever the write
//     may have been applied somewhere.
//
// A sloppy quorum is weaker than a strict one. An acknowledgement from a
// fallback counts toward W, so W acknowledgements may all sit on nodes
// outside the key's home replicas, and a later strict read of R home
// replicas can miss the write even when R+W > N, until the hints are
// delivered (or anti-entropy runs). Plans that need the overlap guarantee
// set Sloppy to false and accept lower availability.
//
// Reads answer with the newest version among the replies; stale or missing
// home replicas are sent that version as read repairs, either alongside the
// answer (RepairAsync) or before it (RepairBlocking). Weak consistency is a
// plan with quorum 1, Sloppy false and RepairOff: no hints, no repairs.
//
// # Versions
//
// Conflict resolution goes through a comparator returning an Order, so the
// read coordinator works for any version type: LWW and CompareLWW give
// last-writer-wins by hybrid logical clock, ties broken by node id (a total
// order); a version-vector comparator that reports Concurrent yields
// siblings, all of which are returned and repaired.
//
// # Hints
//
// Hints holds the hints a fallback node keeps for owners that were
// unreachable, keyed by owner and key: a newer hint for the same key
// replaces an older one, Due lists what to hand over when the owner is
// back, Ack removes what was delivered, Expire drops hints older than the
// hint window (after which anti-entropy is responsible for convergence).
// AppendHint and DecodeHint are the record format for persisting them;
// DecodeHint refuses malformed input with ErrBadHint and never panics.
//
// Everything here is deterministic and pure: no network, files, clock,
// randomness or goroutines. Times are Unix nanoseconds passed in by the
// caller.
package leaderless
