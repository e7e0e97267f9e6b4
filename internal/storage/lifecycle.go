package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// Count returns the number of keys stored in ns, including expired keys
// that the sweeper has not removed yet (as Redis's DBSIZE does).
func (s *Store) Count(ns string) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.counts[ns].keys
}

// Keyspace returns per-namespace key counts, sorted by name.
func (s *Store) Keyspace() []kv.NamespaceStats {
	s.mu.RLock()
	out := make([]kv.NamespaceStats, 0, len(s.mu.counts))
	for ns, c := range s.mu.counts {
		out = append(out, kv.NamespaceStats{Name: ns, Keys: c.keys, Expires: c.expires})
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Close stops the store's goroutines, syncs the WAL and closes Pebble.
// Writes queued but not yet applied fail with ErrClosed; writes already
// applied are completed first.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.enqueue.Lock()
		s.enqueue.closed = true
		s.enqueue.Unlock()
		close(s.closing)
		s.cancel()
		s.wg.Wait()
		var errs []error
		if s.opts.Sync != SyncAlways && s.failed.Load() == nil {
			if err := s.syncWAL(); err != nil {
				errs = append(errs, fmt.Errorf("storage: final sync: %w", err))
			}
		}
		s.reads.Lock()
		s.reads.closed = true
		s.reads.Unlock()
		if err := s.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("storage: close: %w", err))
		}
		s.blockCache.Unref()
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// runSweeper deletes expired keys in the background. It walks the expiry
// index in expiry order, so each round touches only keys that are due.
func (s *Store) runSweeper() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	ctx := s.ctx
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
			for {
				n, err := s.SweepOnce(ctx)
				if err != nil {
					if !errors.Is(err, kv.ErrUnavailable) && ctx.Err() == nil {
						s.opts.Logger.Warn("expiry sweep failed", "err", err)
					}
					break
				}
				if n < s.opts.SweepBatch {
					break
				}
			}
		}
	}
}

// SweepOnce deletes up to Options.SweepBatch expired keys and returns how
// many index entries it processed. The background sweeper calls it; tests
// call it directly to sweep at a chosen moment.
func (s *Store) SweepOnce(ctx context.Context) (int, error) {
	ops, err := s.dueExpiries()
	if err != nil || len(ops) == 0 {
		return 0, err
	}
	if _, err := s.Apply(ctx, kv.Batch{Ops: ops, Now: s.Now()}); err != nil {
		return 0, err
	}
	return len(ops), nil
}

// dueExpiries lists up to SweepBatch expiry-index entries that are due.
func (s *Store) dueExpiries() ([]kv.Op, error) {
	s.reads.RLock()
	defer s.reads.RUnlock()
	if s.reads.closed {
		return nil, ErrClosed
	}
	now := s.Now()
	hi := expiryKey(nil, now+1, "", nil)[:9]
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixExpiry}, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	var ops []kv.Op
	for ok := it.First(); ok && len(ops) < s.opts.SweepBatch; ok = it.Next() {
		exp, ns, key, valid := parseExpiryKey(it.Key())
		if !valid {
			continue
		}
		ops = append(ops, kv.Op{Kind: kv.OpSweep, Namespace: ns, Key: append([]byte(nil), key...), ExpireAt: exp})
	}
	return ops, it.Close()
}

// pebbleLogger routes Pebble's messages into slog; Pebble's routine
// chatter goes to debug.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf("pebble: "+format, args...))
}
