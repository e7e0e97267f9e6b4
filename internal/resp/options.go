package resp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/metrics"
)

// Store is what the RESP front end needs from the storage engine
// (*storage.Store satisfies it).
type Store interface {
	// Apply applies a batch atomically and in order, one Result per Op.
	Apply(ctx context.Context, b kv.Batch) ([]kv.Result, error)
	// Get returns the live value of a key.
	Get(ctx context.Context, ns string, key []byte) (kv.Value, bool, error)
	// Scan returns a page of a namespace's keys in key order.
	Scan(ctx context.Context, req kv.ScanRequest) (kv.ScanResult, error)
	// Keyspace counts the keys of every namespace.
	Keyspace() []kv.NamespaceStats
	// Count returns the number of keys in a namespace.
	Count(ns string) int64
}

// NamespaceAdmin is the control plane's namespace management, as
// FULCRUM.NAMESPACE needs it.
type NamespaceAdmin interface {
	CreateNamespace(ctx context.Context, name string, p kv.Policy) (kv.NamespaceInfo, error)
	DropNamespace(ctx context.Context, name string) error
	Namespace(ctx context.Context, name string) (kv.NamespaceInfo, error)
	Namespaces(ctx context.Context) ([]kv.NamespaceInfo, error)
}

// InfoSection is a section of the INFO reply contributed by the server's
// wiring (for example "Persistence" from storage statistics).
type InfoSection struct {
	// Name is the section title; INFO selects it by its lower-case form.
	Name string
	// Fields is called for each INFO that includes the section.
	Fields func() []InfoField
}

// InfoField is one "name:value" line of an INFO section.
type InfoField struct {
	Name, Value string
}

// Defaults.
const (
	DefaultMaxClients     = 10000
	DefaultMaxKeysCommand = 10000
	DefaultMaxScanCursors = 100000
	DefaultScanCursorTTL  = 10 * time.Minute
	// RedisVersion is the Redis version Fulcrum reports in INFO's
	// redis_version, for tools that enable features by version.
	RedisVersion = "7.2.0"
)

// Options configure a Server. Zero fields take defaults; New validates the
// rest.
type Options struct {
	// Store serves the data. Required.
	Store Store
	// Limits bound key and value sizes; zero fields take kv's defaults.
	// Oversized keys and values are answered with TOO_LARGE and the
	// connection keeps serving.
	Limits kv.Limits
	// MaxFrameSize is the largest bulk string a request may declare;
	// default max(4 MiB, Limits.MaxValueSize). A larger declared length is
	// refused before anything is allocated and closes the connection, since
	// the stream cannot be resynchronised without reading the bulk.
	MaxFrameSize int
	// MaxMultiBulk is the largest number of arguments in one request;
	// default 1,048,576 (Redis's limit for unauthenticated clients).
	MaxMultiBulk int
	// MaxInline is the longest inline command line; default 64 KiB.
	MaxInline int
	// MaxRequestSize bounds the total argument bytes of one request;
	// default 64 MiB.
	MaxRequestSize int
	// MaxClients caps open connections; default 10,000. Excess connections
	// are told "ERR max number of clients reached" and closed.
	MaxClients int
	// IdleTimeout closes connections that send nothing for this long;
	// 0 means never.
	IdleTimeout time.Duration
	// WriteTimeout closes a connection whose client has not taken a reply
	// within this long (it stopped reading); 0 means never. Default 0.
	WriteTimeout time.Duration
	// MaxKeysCommand is the largest namespace KEYS will list; larger ones
	// must use SCAN. Default 10,000.
	MaxKeysCommand int
	// EnableFlush allows FLUSHDB and FLUSHALL.
	EnableFlush bool
	// MaxScanCursors bounds the server-side SCAN cursor table (least
	// recently used cursors are evicted); default 100,000.
	MaxScanCursors int
	// ScanCursorTTL drops cursors unused for this long; default 10 minutes.
	ScanCursorTTL time.Duration
	// Now is the clock used for expiry times; it must be the store's
	// clock. Default time.Now.
	Now func() time.Time
	// Metrics receives request, latency, connection and byte counts; nil
	// disables them.
	Metrics *metrics.Metrics
	// Logger receives connection-level events; nil discards them.
	Logger *slog.Logger
	// Version is Fulcrum's version, reported by INFO and HELLO.
	Version string
	// Namespaces manages a cluster's namespaces (FULCRUM.NAMESPACE); nil
	// on a node that runs alone.
	Namespaces NamespaceAdmin
	// ExtraInfo adds sections to INFO.
	ExtraInfo []InfoSection
	// ConfigValues are answered by CONFIG GET in addition to (and in
	// preference to) the built-in defaults.
	ConfigValues map[string]string
}

func (o *Options) applyDefaults() error {
	if o.Store == nil {
		return errors.New("resp: Options.Store is required")
	}
	if o.Limits.MaxKeySize <= 0 {
		o.Limits.MaxKeySize = kv.DefaultMaxKeySize
	}
	if o.Limits.MaxValueSize <= 0 {
		o.Limits.MaxValueSize = kv.DefaultMaxValueSize
	}
	if o.MaxFrameSize == 0 {
		o.MaxFrameSize = max(DefaultMaxFrameSize, o.Limits.MaxValueSize, o.Limits.MaxKeySize)
	}
	if o.MaxMultiBulk == 0 {
		o.MaxMultiBulk = DefaultMaxMultiBulk
	}
	if o.MaxInline == 0 {
		o.MaxInline = DefaultMaxInline
	}
	if o.MaxRequestSize == 0 {
		o.MaxRequestSize = max(DefaultMaxRequestSize, o.MaxFrameSize)
	}
	if o.MaxClients == 0 {
		o.MaxClients = DefaultMaxClients
	}
	if o.MaxKeysCommand == 0 {
		o.MaxKeysCommand = DefaultMaxKeysCommand
	}
	if o.MaxScanCursors == 0 {
		o.MaxScanCursors = DefaultMaxScanCursors
	}
	if o.ScanCursorTTL == 0 {
		o.ScanCursorTTL = DefaultScanCursorTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	switch {
	case o.MaxFrameSize < 0 || o.MaxMultiBulk < 0 || o.MaxInline < 0 || o.MaxRequestSize < 0 ||
		o.MaxClients < 0 || o.MaxKeysCommand < 0 || o.MaxScanCursors < 0 || o.ScanCursorTTL < 0 || o.IdleTimeout < 0 || o.WriteTimeout < 0:
		return errors.New("resp: negative limit in Options")
	case o.MaxFrameSize > kv.HardMaxValueSize:
		return fmt.Errorf("resp: MaxFrameSize %d exceeds the hard maximum %d", o.MaxFrameSize, kv.HardMaxValueSize)
	case o.MaxFrameSize < o.Limits.MaxValueSize || o.MaxFrameSize < o.Limits.MaxKeySize:
		return fmt.Errorf("resp: MaxFrameSize %d is below the key or value limit (%s)", o.MaxFrameSize, o.Limits)
	case o.MaxRequestSize < o.MaxFrameSize:
		return fmt.Errorf("resp: MaxRequestSize %d is below MaxFrameSize %d", o.MaxRequestSize, o.MaxFrameSize)
	}
	for _, sec := range o.ExtraInfo {
		if sec.Name == "" || sec.Fields == nil {
			return errors.New("resp: ExtraInfo section needs a Name and Fields")
		}
	}
	// Copy so the caller's map can change without racing CONFIG GET.
	cfg := map[string]string{
		"save":               "",
		"appendonly":         "no",
		"maxmemory":          "0",
		"databases":          "1",
		"proto-max-bulk-len": strconv.Itoa(o.MaxFrameSize),
		"maxclients":         strconv.Itoa(o.MaxClients),
		"timeout":            strconv.Itoa(int(o.IdleTimeout / time.Second)),
	}
	for k, v := range o.ConfigValues {
		cfg[k] = v
	}
	o.ConfigValues = cfg
	return nil
}
