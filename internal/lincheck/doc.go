// Package lincheck records concurrent histories of a key-value store's
// operations and checks them for linearizability with porcupine.
//
// A test or the lab wraps every client call in Recorder.Begin and one of
// Pending.End (the outcome is known), Pending.Fail (the operation certainly
// did not take effect, e.g. UNAVAILABLE before it was proposed) or
// Pending.Unknown (it may or may not have taken effect, e.g. TIMEOUT).
// Recorder.Check then asks porcupine whether some total order of the
// operations, each placed between its call and its return, explains every
// result under the sequential model below. The history is partitioned by
// key, so the search is per key and histories with many keys check quickly.
//
// The model, per key, is a register with a store-assigned version:
//
//   - Get returns exactly the current state: absent, or the value and the
//     version of the write that produced it.
//   - Put stores a value; its version must exceed every version the key had
//     before. Versions grow but need not be consecutive (they are store
//     revisions shared by all keys), and a deleted key remembers its last
//     version, since a re-created key's version still exceeds it.
//   - Delete removes the key; its OK says whether the key existed.
//   - CAS stores its value only if the key exists at exactly IfVersion; OK
//     says whether it did, and then the new version exceeds IfVersion.
//
// An indeterminate write never returns: it may take effect at any point
// after its call, or never, which is the same as taking effect after every
// other operation. When it takes effect its version is unknown, so the
// model keeps only a lower bound and learns the exact version from the first
// read that returns the value. The checks the model makes are necessary
// conditions of a correct store, so a history reported Illegal is certainly
// not linearizable; a subtle violation hidden by an unknown version can be
// missed. Indeterminate and failed reads constrain nothing and are left out.
package lincheck
