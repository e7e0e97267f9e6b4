package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/config"
	"github.com/fulcrumdb/fulcrum/internal/httpapi"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/metrics"
	"github.com/fulcrumdb/fulcrum/internal/resp"
	"github.com/fulcrumdb/fulcrum/internal/storage"
)

// defaultVersion is reported to clients unless WithVersion says otherwise.
const defaultVersion = "dev"

// Server is a Fulcrum node.
type Server struct {
	cfg     config.Config
	log     *slog.Logger
	version string
	now     func() time.Time

	store   *storage.Store
	cluster *cluster // nil when the node runs alone
	metrics *metrics.Metrics
	resp    *resp.Server
	http    *http.Server

	ready    chan struct{}
	stopping atomic.Bool
	ran      atomic.Bool
	addrs    struct {
		sync.Mutex
		resp, http string
	}
	// httpGate counts HTTP handlers running, so storage is closed only
	// after the last one returns even when shutdown had to force-close
	// connections (http.Server.Close does not wait for handlers); once
	// closed, late handlers are refused before they touch storage.
	httpGate struct {
		sync.Mutex
		closed   bool
		inflight sync.WaitGroup
	}
}

// Option adjusts a Server beyond its config; used by the binary (version)
// and tests (clock).
type Option func(*Server)

// WithVersion sets the version string reported to clients.
func WithVersion(v string) Option { return func(s *Server) { s.version = v } }

// WithClock replaces the wall clock used for expiry (tests).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// New validates cfg, opens storage and builds the front ends. It starts no
// listeners; Run does. On error nothing is left open.
func New(cfg config.Config, logger *slog.Logger, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("server: invalid configuration: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: logger, version: defaultVersion, now: time.Now, ready: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	limits := cfg.Limits.KV()
	dir, sync := cfg.Data.Dir, storage.SyncMode(cfg.Data.Sync)
	if cfg.Cluster.Member() {
		// Strong namespaces' rows are rebuilt from the synced Raft log
		// after a crash, so raftstore marks its batches kv.Batch.Logged
		// and they skip the store's fsync. The primary and leaderless
		// engines keep their only copy here: data.sync applies to them.
		dir, _ = clusterDirs(cfg)
	}
	st, err := storage.Open(storage.Options{
		Dir:           dir,
		Sync:          sync,
		SyncInterval:  time.Duration(cfg.Data.SyncInterval),
		SweepInterval: time.Duration(cfg.Data.SweepInterval),
		CacheSize:     int64(cfg.Data.CacheSize),
		RowCacheSize:  rowCacheSize(cfg.Data.RowCacheSize),
		Limits:        limits,
		Now:           s.now,
		Logger:        logger.With("component", "storage"),
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.store = st
	s.metrics = metrics.New()
	s.metrics.Registry.MustRegister(st.Collector())

	// Front ends talk to the store alone, or to the router of a member.
	var front interface {
		resp.Store
		httpapi.Store
	} = st
	info := []resp.InfoSection{{Name: "Persistence", Fields: s.persistenceInfo}}
	var admin interface {
		resp.NamespaceAdmin
		httpapi.NamespaceAdmin
	}
	if cfg.Cluster.Member() {
		if s.cluster, err = openCluster(cfg, st, logger, s.now); err != nil {
			st.Close()
			return nil, fmt.Errorf("server: %w", err)
		}
		front = s.cluster.router
		admin = namespaceAdmin{s.cluster}
		s.metrics.Registry.MustRegister(s.cluster.node.Collector(), s.cluster.tr.Collector(), s.cluster.eventual.Collector(), primaryCollector{s.cluster})
		info = append(info, resp.InfoSection{Name: "Cluster", Fields: s.cluster.info})
	}
	closeAll := func() {
		if s.cluster != nil {
			s.cluster.close(context.Background())
		}
		st.Close()
	}

	s.resp, err = resp.New(resp.Options{
		Store:          front,
		Limits:         limits,
		MaxFrameSize:   int(cfg.RESP.MaxFrameSize),
		MaxMultiBulk:   cfg.RESP.MaxMultiBulk,
		MaxClients:     cfg.RESP.MaxClients,
		IdleTimeout:    time.Duration(cfg.RESP.IdleTimeout),
		WriteTimeout:   time.Duration(cfg.RESP.WriteTimeout),
		MaxKeysCommand: cfg.RESP.MaxKeysCommand,
		EnableFlush:    cfg.RESP.EnableFlush,
		Now:            s.now,
		Metrics:        s.metrics,
		Logger:         logger.With("component", "resp"),
		Version:        s.version,
		ExtraInfo:      info,
		Namespaces:     admin,
		ConfigValues:   s.redisConfig(),
	})
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("server: %w", err)
	}
	h, err := httpapi.New(httpapi.Options{
		Store:       front,
		Limits:      limits,
		MaxBodySize: int64(cfg.HTTPBodyLimit()),
		Metrics:     s.metrics,
		Logger:      logger.With("component", "http"),
		EnablePprof: cfg.HTTP.EnablePprof,
		Ready:       s.readyErr,
		Now:         s.now,
		Version:     s.version,
		Namespaces:  admin,
	})
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("server: %w", err)
	}
	s.http = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.httpGate.Lock()
			if s.httpGate.closed {
				s.httpGate.Unlock()
				w.Header().Set("Retry-After", "1")
				http.Error(w, `{"code":"UNAVAILABLE","message":"shutting down"}`, http.StatusServiceUnavailable)
				return
			}
			s.httpGate.inflight.Add(1)
			s.httpGate.Unlock()
			defer s.httpGate.inflight.Done()
			if s.cluster != nil && r.URL.Path == "/v1/cluster" {
				s.cluster.serveStatus(w, r)
				return
			}
			if s.cluster != nil && r.URL.Path == "/v1/cluster/lost-writes" {
				s.cluster.serveLostWrites(w, r)
				return
			}
			if s.cluster != nil && r.URL.Path == "/v1/cluster/join" {
				s.cluster.admit(w, r)
				return
			}
			if s.cluster != nil && strings.HasPrefix(r.URL.Path, "/v1/cluster/members/") {
				s.cluster.serveMembers(w, r)
				return
			}
			h.ServeHTTP(w, r)
		}),
		ConnState:         s.countHTTPConn,
		ReadHeaderTimeout: 10 * time.Second,
		// Idle keep-alive connections are reclaimed; request bodies and
		// replies are not time-limited so large values can stream.
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(logger.With("component", "http").Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Run listens on the configured addresses and serves until ctx ends, then
// shuts down within cfg.ShutdownTimeout and closes storage. It returns nil
// after a clean stop. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("server: Run called twice")
	}
	respLn, err := net.Listen("tcp", s.cfg.RESP.Addr)
	if err != nil {
		s.closeStorage(context.Background())
		return fmt.Errorf("server: resp listener: %w", err)
	}
	httpLn, err := net.Listen("tcp", s.cfg.HTTP.Addr)
	if err != nil {
		respLn.Close()
		s.closeStorage(context.Background())
		return fmt.Errorf("server: http listener: %w", err)
	}
	s.addrs.Lock()
	s.addrs.resp, s.addrs.http = respLn.Addr().String(), httpLn.Addr().String()
	s.addrs.Unlock()
	if s.cluster != nil {
		s.cluster.setAddrs(respLn.Addr().String(), httpLn.Addr().String())
	}

	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		// Not ctx: cancelling the run must drain gracefully through
		// Shutdown, not close connections mid-command.
		if err := s.resp.Serve(context.WithoutCancel(ctx), respLn); err != nil {
			errc <- fmt.Errorf("resp: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := s.http.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	}()
	close(s.ready)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		s.log.Error("listener failed; shutting down", "err", runErr)
	}
	shutdownErr := s.shutdown()
	wg.Wait()
	return errors.Join(runErr, shutdownErr)
}

func (s *Server) shutdown() error {
	s.stopping.Store(true)
	timeout := time.Duration(s.cfg.ShutdownTimeout)
	s.log.Info("shutting down", "timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	var respErr, httpErr error
	wg.Add(2)
	go func() { defer wg.Done(); respErr = s.resp.Shutdown(ctx) }()
	go func() { defer wg.Done(); httpErr = s.http.Shutdown(ctx) }()
	wg.Wait()
	if httpErr != nil {
		s.http.Close() // in-flight requests ran out of time
	}
	// Force-closed connections cancel their requests' contexts, so the
	// remaining handlers return promptly.
	s.httpGate.Lock()
	s.httpGate.closed = true
	s.httpGate.Unlock()
	s.httpGate.inflight.Wait()
	// Storage closes last, so every write a client was told succeeded is
	// already committed by the time files are closed.
	storeErr := s.closeStorage(ctx)
	if respErr != nil || httpErr != nil {
		s.log.Warn("shutdown timeout: connections closed with requests in flight", "resp", respErr, "http", httpErr)
	}
	if storeErr != nil {
		return fmt.Errorf("server: close storage: %w", storeErr)
	}
	s.log.Info("stopped")
	return nil
}

// countHTTPConn keeps the connection gauges for HTTP, as resp does for
// RESP.
func (s *Server) countHTTPConn(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		s.metrics.Connections.WithLabelValues("http").Inc()
		s.metrics.ConnectionsTotal.WithLabelValues("http").Inc()
	case http.StateClosed, http.StateHijacked:
		s.metrics.Connections.WithLabelValues("http").Dec()
	}
}

// Close releases a Server that was built but never Run (Run closes
// everything itself).
func (s *Server) Close() error {
	if !s.ran.CompareAndSwap(false, true) {
		return nil
	}
	return s.closeStorage(context.Background())
}

// closeStorage stops the cluster membership (handing leadership away
// while ctx lasts) and then the store.
func (s *Server) closeStorage(ctx context.Context) error {
	var clusterErr error
	if s.cluster != nil {
		clusterErr = s.cluster.close(ctx)
	}
	return errors.Join(clusterErr, s.store.Close())
}

// Ready is closed once both listeners accept connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// RESPAddr is the bound RESP address (valid after Ready).
func (s *Server) RESPAddr() string {
	s.addrs.Lock()
	defer s.addrs.Unlock()
	return s.addrs.resp
}

// HTTPAddr is the bound HTTP address (valid after Ready).
func (s *Server) HTTPAddr() string {
	s.addrs.Lock()
	defer s.addrs.Unlock()
	return s.addrs.http
}

// Store exposes the node's storage to in-process tests and tools.
func (s *Server) Store() *storage.Store { return s.store }

func (s *Server) readyErr() error {
	if s.stopping.Load() {
		return kv.Errorf(kv.CodeUnavailable, "shutting down")
	}
	select {
	case <-s.ready:
		return nil
	default:
		return kv.Errorf(kv.CodeUnavailable, "starting")
	}
}

// persistenceInfo is INFO's Persistence section: Redis's field names where
// they mean the same, Fulcrum's for the sync policy and loss window.
func (s *Server) persistenceInfo() []resp.InfoField {
	st := s.store.Stats()
	lastSync := int64(0)
	if !st.LastSync.IsZero() {
		lastSync = st.LastSync.Unix()
	}
	window := 0.0
	if !st.UnsyncedSince.IsZero() {
		window = s.now().Sub(st.UnsyncedSince).Seconds()
	}
	aof := "1"
	sync := string(st.Sync)
	if s.cluster != nil {
		// A member acknowledges a write once a majority has it in its
		// synced Raft log; the state machine's own sync policy is moot.
		sync, window = "raft_log", 0
	}
	return []resp.InfoField{
		{Name: "loading", Value: "0"},
		{Name: "aof_enabled", Value: aof},
		{Name: "fulcrum_sync", Value: sync},
		{Name: "fulcrum_sync_interval_ms", Value: strconv.FormatInt(st.SyncInterval.Milliseconds(), 10)},
		{Name: "fulcrum_last_sync_time", Value: strconv.FormatInt(lastSync, 10)},
		{Name: "fulcrum_unsynced_seconds", Value: strconv.FormatFloat(window, 'f', 3, 64)},
		{Name: "fulcrum_write_batches", Value: strconv.FormatInt(st.Batches, 10)},
		{Name: "fulcrum_commits", Value: strconv.FormatInt(st.Commits, 10)},
		{Name: "fulcrum_expired_keys", Value: strconv.FormatInt(st.ExpiredKeys, 10)},
		{Name: "fulcrum_disk_bytes", Value: strconv.FormatUint(st.DiskUsage, 10)},
		{Name: "fulcrum_data_dir", Value: s.cfg.Data.Dir},
	}
}

// redisConfig answers CONFIG GET for the parameters clients ask about at
// connect time, mapped from Fulcrum's configuration.
func (s *Server) redisConfig() map[string]string {
	fsync := map[string]string{config.SyncAlways: "always", config.SyncInterval: "everysec", config.SyncNone: "no"}[s.cfg.Data.Sync]
	return map[string]string{
		"appendonly":         "yes",
		"appendfsync":        fsync,
		"save":               "",
		"maxclients":         strconv.Itoa(s.cfg.RESP.MaxClients),
		"timeout":            strconv.FormatInt(int64(time.Duration(s.cfg.RESP.IdleTimeout).Seconds()), 10),
		"proto-max-bulk-len": strconv.FormatInt(int64(s.cfg.Limits.MaxValueSize), 10),
		"dir":                s.cfg.Data.Dir,
	}
}

// rowCacheSize maps the config's "0 disables" to storage's "negative
// disables".
func rowCacheSize(s config.Size) int64 {
	if s == 0 {
		return -1
	}
	return int64(s)
}
