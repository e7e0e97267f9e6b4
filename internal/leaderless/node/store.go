package node

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/storage"
)

// Store is the durable byte store a replica keeps its states and hints in.
// The engine defines it (rather than taking *storage.Store) because it
// needs only raw get/put/delete/scan of opaque values: the versioning is
// its own (versionvec states), not the store's revisions. Implementations
// must be safe for concurrent use; the engine serializes writes to one key
// itself.
type Store interface {
	// Get returns the value of key in ns, or false if there is none.
	Get(ctx context.Context, ns string, key []byte) ([]byte, bool, error)
	// Put stores value under key in ns, durably when it returns nil.
	Put(ctx context.Context, ns string, key, value []byte) error
	// Delete removes key from ns; deleting a missing key is not an error.
	Delete(ctx context.Context, ns string, key []byte) error
	// Scan returns up to limit entries of ns with keys strictly after
	// after (from the first key when after is nil), in key order, and the
	// key to resume from, nil when the scan is complete.
	Scan(ctx context.Context, ns string, after []byte, limit int) (entries []Entry, next []byte, err error)
}

// Entry is one key and value returned by Store.Scan.
type Entry struct {
	Key, Value []byte
}

// MemStore is an in-memory Store for tests and the weak (cache) policy: it
// keeps nothing across restarts. The zero value is ready to use.
type MemStore struct {
	mu struct {
		sync.Mutex
		m map[string]map[string][]byte
	}
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{} }

// Get implements Store.
func (s *MemStore) Get(_ context.Context, ns string, key []byte) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.mu.m[ns][string(key)]
	return slices.Clone(v), ok, nil
}

// Put implements Store.
func (s *MemStore) Put(_ context.Context, ns string, key, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.m == nil {
		s.mu.m = make(map[string]map[string][]byte)
	}
	if s.mu.m[ns] == nil {
		s.mu.m[ns] = make(map[string][]byte)
	}
	s.mu.m[ns][string(key)] = bytes.Clone(value)
	return nil
}

// Delete implements Store.
func (s *MemStore) Delete(_ context.Context, ns string, key []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mu.m[ns], string(key))
	return nil
}

// Scan implements Store.
func (s *MemStore) Scan(_ context.Context, ns string, after []byte, limit int) ([]Entry, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.mu.m[ns]))
	for k := range s.mu.m[ns] {
		if after == nil || k > string(after) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var next []byte
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
		next = []byte(keys[limit-1])
	}
	out := make([]Entry, len(keys))
	for i, k := range keys {
		out[i] = Entry{Key: []byte(k), Value: bytes.Clone(s.mu.m[ns][k])}
	}
	return out, next, nil
}

// StorageStore adapts a *storage.Store (Pebble) to Store: a value is the
// Data of the key's row, written with OpSet and removed with OpDelete. The
// rows' own versions and timestamps are the store's and mean nothing to the
// engine. Other readers of the namespace (a plain GET through another
// engine) would see encoded versionvec states, not user values.
type StorageStore struct {
	s *storage.Store
}

var _ Store = StorageStore{}

// NewStorageStore returns the adapter over s.
func NewStorageStore(s *storage.Store) StorageStore { return StorageStore{s: s} }

// Get implements Store.
func (a StorageStore) Get(ctx context.Context, ns string, key []byte) ([]byte, bool, error) {
	v, ok, err := a.s.Get(ctx, ns, key)
	if err != nil || !ok {
		return nil, false, err
	}
	return bytes.Clone(v.Data), true, nil // Data is shared with the row cache
}

// Put implements Store.
func (a StorageStore) Put(ctx context.Context, ns string, key, value []byte) error {
	return a.apply(ctx, kv.Op{Kind: kv.OpSet, Namespace: ns, Key: key, Value: value})
}

// Delete implements Store.
func (a StorageStore) Delete(ctx context.Context, ns string, key []byte) error {
	return a.apply(ctx, kv.Op{Kind: kv.OpDelete, Namespace: ns, Key: key})
}

func (a StorageStore) apply(ctx context.Context, op kv.Op) error {
	res, err := a.s.Apply(ctx, kv.Batch{Ops: []kv.Op{op}})
	if err != nil {
		return err
	}
	if len(res) == 1 && res[0].Err != nil {
		return fmt.Errorf("storage %v %s: %w", op.Kind, op.Namespace, res[0].Err)
	}
	return nil
}

// Scan implements Store.
func (a StorageStore) Scan(ctx context.Context, ns string, after []byte, limit int) ([]Entry, []byte, error) {
	res, err := a.s.Scan(ctx, kv.ScanRequest{Namespace: ns, After: after, Limit: limit})
	if err != nil {
		return nil, nil, err
	}
	out := make([]Entry, len(res.Entries))
	for i, e := range res.Entries {
		out[i] = Entry{Key: bytes.Clone(e.Key), Value: bytes.Clone(e.Value.Data)}
	}
	return out, res.Next, nil
}
