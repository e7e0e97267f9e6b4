package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/metrics"
)

// Store is what the HTTP front end needs from a storage engine.
// *storage.Store satisfies it.
type Store interface {
	Apply(ctx context.Context, b kv.Batch) ([]kv.Result, error)
	Get(ctx context.Context, ns string, key []byte) (kv.Value, bool, error)
	Scan(ctx context.Context, req kv.ScanRequest) (kv.ScanResult, error)
	Keyspace() []kv.NamespaceStats
}

// DefaultBodySlack is what the default MaxBodySize allows beyond
// Limits.MaxValueSize, so a JSON envelope around a value near the limit
// still fits.
const DefaultBodySlack = 16 << 10

// Options configure a Handler. Zero fields take the defaults noted.
type Options struct {
	// Store serves the data. Required.
	Store Store
	// Limits bound keys and values; zero fields take kv.DefaultLimits.
	// Use the same limits as the store, so oversized requests are refused
	// here before the body is read.
	Limits kv.Limits
	// MaxBodySize caps a request body in bytes; 0 means
	// Limits.MaxValueSize + DefaultBodySlack. Base64 in a JSON body is a
	// third larger than the value, so large values are best sent raw.
	MaxBodySize int64
	// Metrics receives request counts, latencies and byte counts; nil
	// means a private metrics.New().
	Metrics *metrics.Metrics
	// Logger records internal errors; nil discards.
	Logger *slog.Logger
	// EnablePprof mounts net/http/pprof under /debug/pprof/.
	EnablePprof bool
	// Ready reports whether the node can serve (/readyz); nil means always.
	Ready func() error
	// Now is the clock used to turn TTLs into absolute expiries and to
	// report remaining TTLs. It must be the store's clock. nil = time.Now.
	Now func() time.Time
	// Version is the server version reported in the Server header.
	Version string
	// Namespaces manages a cluster's namespaces (create, describe, drop).
	// nil on a node that runs alone, where namespaces spring into being
	// with their first key.
	Namespaces NamespaceAdmin
}

// NamespaceAdmin is the control plane's namespace management, as the HTTP
// API needs it.
type NamespaceAdmin interface {
	CreateNamespace(ctx context.Context, name string, p kv.Policy) (kv.NamespaceInfo, error)
	DropNamespace(ctx context.Context, name string) error
	Namespace(ctx context.Context, name string) (kv.NamespaceInfo, error)
	Namespaces(ctx context.Context) ([]kv.NamespaceInfo, error)
}

// Handler is Fulcrum's HTTP/JSON front end. It is safe for concurrent use
// and holds no state besides its configuration.
type Handler struct {
	opts Options
	mux  *http.ServeMux
}

var _ http.Handler = (*Handler)(nil)

// New validates opts, fills defaults and returns the handler.
func New(opts Options) (*Handler, error) {
	if opts.Store == nil {
		return nil, errors.New("httpapi: Options.Store is required")
	}
	def := kv.DefaultLimits()
	if opts.Limits.MaxKeySize == 0 {
		opts.Limits.MaxKeySize = def.MaxKeySize
	}
	if opts.Limits.MaxValueSize == 0 {
		opts.Limits.MaxValueSize = def.MaxValueSize
	}
	if l := opts.Limits; l.MaxKeySize < 0 || l.MaxKeySize > kv.HardMaxKeySize ||
		l.MaxValueSize < 0 || l.MaxValueSize > kv.HardMaxValueSize {
		return nil, fmt.Errorf("httpapi: limits %v outside 1..%d / 1..%d", l, kv.HardMaxKeySize, kv.HardMaxValueSize)
	}
	if opts.MaxBodySize == 0 {
		opts.MaxBodySize = int64(opts.Limits.MaxValueSize) + DefaultBodySlack
	}
	if opts.MaxBodySize < 0 {
		return nil, fmt.Errorf("httpapi: negative MaxBodySize %d", opts.MaxBodySize)
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Ready == nil {
		opts.Ready = func() error { return nil }
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Handler{opts: opts, mux: http.NewServeMux()}
	h.routes()
	return h, nil
}

// method binds an HTTP method to a handler and its metrics name.
type method struct {
	method string
	name   string
	fn     handlerFunc
}

// handlerFunc serves one request. A returned error is written by
// writeError, so it must come before anything is written to w.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// unmatched is the metrics name of requests no route took (404, 405, bad
// paths).
const unmatched = "unmatched"

func (h *Handler) routes() {
	keyPath := "/v1/namespaces/{ns}/keys/{key...}"
	h.route(keyPath,
		method{http.MethodGet, "get_key", h.getKey},
		method{http.MethodHead, "get_key", h.getKey},
		method{http.MethodPut, "put_key", h.putKey},
		method{http.MethodDelete, "delete_key", h.deleteKey})
	h.route("/v1/namespaces/{ns}/keys",
		method{http.MethodGet, "list_keys", h.listKeys},
		method{http.MethodHead, "list_keys", h.listKeys})
	h.route("/v1/namespaces",
		method{http.MethodGet, "list_namespaces", h.listNamespaces},
		method{http.MethodHead, "list_namespaces", h.listNamespaces})
	h.route("/v1/namespaces/{ns}",
		method{http.MethodGet, "describe_namespace", h.describeNamespace},
		method{http.MethodPut, "create_namespace", h.createNamespace},
		method{http.MethodDelete, "drop_namespace", h.dropNamespace})
	h.route("/healthz",
		method{http.MethodGet, "healthz", h.healthz},
		method{http.MethodHead, "healthz", h.healthz})
	h.route("/readyz",
		method{http.MethodGet, "readyz", h.readyz},
		method{http.MethodHead, "readyz", h.readyz})
	prom := promhttp.HandlerFor(h.opts.Metrics.Registry, promhttp.HandlerOpts{})
	h.route("/metrics",
		method{http.MethodGet, "metrics", passThrough(prom)},
		method{http.MethodHead, "metrics", passThrough(prom)})
	if h.opts.EnablePprof {
		// pprof's handlers check methods themselves (Symbol takes POST).
		h.mux.Handle("/debug/pprof/", h.instrument("pprof", passThrough(http.HandlerFunc(pprof.Index))))
		h.mux.Handle("/debug/pprof/cmdline", h.instrument("pprof", passThrough(http.HandlerFunc(pprof.Cmdline))))
		h.mux.Handle("/debug/pprof/profile", h.instrument("pprof", passThrough(http.HandlerFunc(pprof.Profile))))
		h.mux.Handle("/debug/pprof/symbol", h.instrument("pprof", passThrough(http.HandlerFunc(pprof.Symbol))))
		h.mux.Handle("/debug/pprof/trace", h.instrument("pprof", passThrough(http.HandlerFunc(pprof.Trace))))
	}
	h.mux.Handle("/", h.instrument(unmatched, func(w http.ResponseWriter, r *http.Request) error {
		return kv.Errorf(kv.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path)
	}))
}

// route registers a method-less pattern and dispatches on the method itself:
// with ServeMux's own method patterns the catch-all "/" would swallow the
// 405s, and ServeMux's 404/405 bodies are plain text, not our JSON errors.
func (h *Handler) route(pattern string, methods ...method) {
	allow := make([]string, len(methods))
	for i, m := range methods {
		allow[i] = m.method
	}
	allowed := strings.Join(allow, ", ")
	byMethod := make(map[string]http.Handler, len(methods))
	for _, m := range methods {
		byMethod[m.method] = h.instrument(m.name, m.fn)
	}
	notAllowed := h.instrument(unmatched, func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Allow", allowed)
		return &statusError{status: http.StatusMethodNotAllowed,
			err: kv.Errorf(kv.CodeInvalid, "method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allowed)}
	})
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if hf, ok := byMethod[r.Method]; ok {
			hf.ServeHTTP(w, r)
			return
		}
		notAllowed.ServeHTTP(w, r)
	})
}

func passThrough(next http.Handler) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		next.ServeHTTP(w, r)
		return nil
	}
}

// ServeHTTP serves one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.opts.Version != "" {
		w.Header().Set("Server", "fulcrum/"+h.opts.Version)
	}
	// ServeMux would redirect a non-canonical path ("a//b", "a/../b") to its
	// cleaned form, which for a key path silently names a different key.
	// Refuse instead; clients percent-encode such keys.
	if p := r.URL.EscapedPath(); r.Method != http.MethodConnect && cleanPath(p) != p {
		h.instrument(unmatched, func(w http.ResponseWriter, r *http.Request) error {
			return kv.Errorf(kv.CodeInvalid, "path %q is not canonical (empty, . or .. segments); percent-encode '/' and '.' in keys", p)
		}).ServeHTTP(w, r)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// cleanPath mirrors ServeMux's canonicalization: path.Clean, keeping a
// trailing slash.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}
