package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/placement"
)

// This file is what replicated engines need beyond Apply/Get/Scan: applying
// a run of log entries in order, reading back the marks they wrote, and a
// consistent view of one shard for snapshots.

// ApplyAll applies the batches in order (each atomically, with the same
// grouping as Apply) and waits for all of them. It returns every batch's
// results; err is the first failure of a whole batch (storage failure or
// ctx), after which the state of later batches is unknown.
func (s *Store) ApplyAll(ctx context.Context, batches []kv.Batch) ([][]kv.Result, error) {
	if p := s.failed.Load(); p != nil {
		return nil, kv.Errorf(kv.CodeUnavailable, "storage failed earlier: %w", *p)
	}
	reqs := make([]*request, len(batches))
	for i := range batches {
		for j := range batches[i].Ops {
			if err := kv.ValidateNamespace(batches[i].Ops[j].Namespace); err != nil {
				return nil, err
			}
		}
		reqs[i] = &request{ctx: ctx, batch: batches[i], done: make(chan struct{})}
	}
	for i, r := range reqs {
		if err := s.enqueueRequest(ctx, r); err != nil {
			waitAll(reqs[:i])
			return nil, err
		}
	}
	waitAll(reqs)
	out := make([][]kv.Result, len(reqs))
	for i, r := range reqs {
		if r.err != nil {
			return nil, fmt.Errorf("storage: apply batch %d of %d: %w", i+1, len(reqs), r.err)
		}
		out[i] = r.results
	}
	return out, nil
}

// waitAll waits for every request: once enqueued a request is always
// answered (Close drains the queue), so this cannot hang on a closed store.
func waitAll(reqs []*request) {
	for _, r := range reqs {
		<-r.done
	}
}

// Mark returns the committed value of an engine mark (kv.Batch.Marks).
func (s *Store) Mark(key []byte) ([]byte, bool, error) {
	s.reads.RLock()
	defer s.reads.RUnlock()
	if s.reads.closed {
		return nil, false, ErrClosed
	}
	return readMark(s.db, key)
}

// readMark reads a mark from the DB or a snapshot of it.
func readMark(r pebble.Reader, key []byte) ([]byte, bool, error) {
	v, closer, err := r.Get(markKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("storage: read mark: %w", err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), true, nil
}

// View is a consistent, read-only point-in-time view of the store, for
// building snapshots while writes go on. Close it when done.
type View struct {
	s    *Store
	snap *pebble.Snapshot
}

// View opens a view of everything committed so far.
func (s *Store) View() (*View, error) {
	s.reads.RLock()
	defer s.reads.RUnlock()
	if s.reads.closed {
		return nil, ErrClosed
	}
	return &View{s: s, snap: s.db.NewSnapshot()}, nil
}

// Close releases the view.
func (v *View) Close() error { return v.snap.Close() }

// Mark returns a mark as of the view.
func (v *View) Mark(key []byte) ([]byte, bool, error) { return readMark(v.snap, key) }

// ShardRows calls fn for every stored row of ns in shard (of shards), in
// key order, expired rows included (their expiry travels with them). fn's
// arguments are only valid during the call.
func (v *View) ShardRows(ctx context.Context, ns string, shard, shards int, fn func(key []byte, val kv.Value) error) error {
	lo := nsKeyPrefix(ns)
	it, err := v.snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return fmt.Errorf("storage: shard rows: %w", err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		key := it.Key()[len(lo):]
		if shards > 0 && placement.ShardOf(ns, key, shards) != shard {
			continue
		}
		raw, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("storage: shard rows: %w", err)
		}
		r, err := decodeValue(raw)
		if err != nil {
			return fmt.Errorf("storage: shard rows of %q: %w", ns, err)
		}
		if r.Tombstone {
			continue
		}
		if err := fn(key, r.Value); err != nil {
			return err
		}
	}
	return it.Error()
}
