package httpapi

import (
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// namespaceJSON describes one namespace.
type namespaceJSON struct {
	Name    string `json:"name"`
	Keys    int64  `json:"keys"`
	Expires int64  `json:"expires"`
}

// listNamespaces serves GET /v1/namespaces. Key counts include expired
// keys not yet swept.
func (h *Handler) listNamespaces(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	stats := h.opts.Store.Keyspace()
	out := struct {
		Namespaces []namespaceJSON `json:"namespaces"`
	}{Namespaces: make([]namespaceJSON, 0, len(stats))}
	for _, s := range stats {
		out.Namespaces = append(out.Namespaces, namespaceJSON{Name: s.Name, Keys: s.Keys, Expires: s.Expires})
	}
	slices.SortFunc(out.Namespaces, func(a, b namespaceJSON) int { return strings.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, out)
	return nil
}

// healthz serves /healthz: the process is up and serving HTTP.
func (h *Handler) healthz(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, "ok\n")
	return nil
}

// readyz serves /readyz: 200 when Options.Ready reports nil, else 503
// UNAVAILABLE with the reason and Retry-After.
func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if err := h.opts.Ready(); err != nil {
		return &kv.Error{Code: kv.CodeUnavailable, Message: "not ready: " + err.Error(), Err: err}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
	return nil
}
