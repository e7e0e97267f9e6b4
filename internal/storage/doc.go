// Package storage is Fulcrum's durable key-value store on Pebble.
//
// Keys live in namespaces. Each value is stored with its metadata (version,
// creation revision, hybrid-logical-clock timestamp, expiry). Writes are
// kv.Batch values applied atomically, in order, by a single owner goroutine
// (the applier), which makes read-modify-write operations (INCR, NX, CAS)
// atomic without locks and groups concurrent batches into one Pebble commit:
// with Sync=always one fsync acknowledges every batch in the group (group
// commit). Reads go straight to Pebble and never wait for the applier.
//
// Durability (Options.Sync):
//   - always: no batch is acknowledged before its WAL record is fsynced.
//   - interval: the WAL is fsynced every SyncInterval; a crash loses at most
//     the writes acknowledged since the last completed sync, which Stats
//     reports as the current loss window.
//   - none: the operating system decides; only Close syncs. Pebble
//     buffers unsynced WAL records in the process, so a killed process
//     (not only a crashed machine) may lose the latest writes.
//
// A batch marked kv.Batch.Logged (durable in its caller's own log, as Raft
// entries are) never waits for an fsync; a commit group waits only if one
// of its batches is not Logged.
//
// Expiry: an expired value is invisible to reads at once (lazy expiry) and is
// deleted by a background sweeper that walks an expiry index.
//
// All file access goes through Options.FS (a Pebble vfs.FS), so tests can
// crash a memory filesystem that keeps only synced data.
package storage
