package httpapi

import (
	"encoding/json"
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
	// Cluster only: the policy and shard layout.
	Policy *kv.Policy     `json:"policy,omitempty"`
	Shards []kv.ShardInfo `json:"shards,omitempty"`
}

// listNamespaces serves GET /v1/namespaces. Key counts are this node's
// (on a cluster member: of its replicas) and include expired keys not yet
// swept. On a cluster every namespace is listed, with its policy.
func (h *Handler) listNamespaces(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	stats := h.opts.Store.Keyspace()
	out := struct {
		Namespaces []namespaceJSON `json:"namespaces"`
	}{Namespaces: make([]namespaceJSON, 0, len(stats))}
	if h.opts.Namespaces != nil {
		list, err := h.opts.Namespaces.Namespaces(r.Context())
		if err != nil {
			return err
		}
		counts := make(map[string]kv.NamespaceStats, len(stats))
		for _, s := range stats {
			counts[s.Name] = s
		}
		for _, n := range list {
			p := n.Policy
			out.Namespaces = append(out.Namespaces, namespaceJSON{Name: n.Name, Keys: counts[n.Name].Keys, Expires: counts[n.Name].Expires, Policy: &p})
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
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

// adminRequest checks a /v1/namespaces/{ns} request (no query
// parameters) and returns the namespace admin and the name, or the
// refusal of a lone node.
func (h *Handler) adminRequest(r *http.Request) (NamespaceAdmin, string, error) {
	if h.opts.Namespaces == nil {
		return nil, "", kv.Errorf(kv.CodeDisabled, "this node runs alone: namespaces need no creating (they exist with their first key) and have no policy")
	}
	ns, err := namespace(r)
	if err != nil {
		return nil, "", err
	}
	if _, err := query(r); err != nil {
		return nil, "", err
	}
	return h.opts.Namespaces, ns, nil
}

// describeNamespace serves GET /v1/namespaces/{ns}.
func (h *Handler) describeNamespace(w http.ResponseWriter, r *http.Request) error {
	a, ns, err := h.adminRequest(r)
	if err != nil {
		return err
	}
	info, err := a.Namespace(r.Context(), ns)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

// createNamespace serves PUT /v1/namespaces/{ns} with a JSON policy body
// ({"consistency":"strong","replicas":3,"shards":16}; omitted fields take
// those defaults).
func (h *Handler) createNamespace(w http.ResponseWriter, r *http.Request) error {
	a, ns, err := h.adminRequest(r)
	if err != nil {
		return err
	}
	p := kv.Policy{Consistency: kv.ConsistencyStrong, Replicas: 3, Shards: 16}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return kv.Errorf(kv.CodeInvalid, "reading the body: %v", err)
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return kv.Errorf(kv.CodeInvalid, "policy: %v (want {\"consistency\":\"strong\",\"replicas\":3,\"shards\":16})", err)
		}
	}
	info, err := a.CreateNamespace(r.Context(), ns, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, info)
	return nil
}

// dropNamespace serves DELETE /v1/namespaces/{ns}.
func (h *Handler) dropNamespace(w http.ResponseWriter, r *http.Request) error {
	a, ns, err := h.adminRequest(r)
	if err != nil {
		return err
	}
	if err := a.DropNamespace(r.Context(), ns); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
