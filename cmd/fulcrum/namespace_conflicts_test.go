package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// TestNamespaceCreateConflicts: --conflicts reaches the API as the
// policy's "conflicts" field, and the answer shows it.
func TestNamespaceCreateConflicts(t *testing.T) {
	var (
		mu  sync.Mutex
		got kv.Policy
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p kv.Policy
		if r.Method != http.MethodPut || r.URL.Path != "/v1/namespaces/carts" || json.Unmarshal(body, &p) != nil {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = p
		mu.Unlock()
		p = p.WithDefaults()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(kv.NamespaceInfo{Name: "carts", Policy: p})
	}))
	defer srv.Close()
	m, stdout, stderr := testMain(t)
	addr := strings.TrimPrefix(srv.URL, "http://")
	if code := m.Run(context.Background(), []string{"namespace", "create", "carts", "--consistency", "eventual", "--conflicts", "siblings", "--addr", addr}); code != 0 {
		t.Fatalf("create: exit %d: %s", code, stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Conflicts != kv.ConflictsSiblings || got.Consistency != kv.ConsistencyEventual {
		t.Fatalf("the API got policy %+v, want eventual with conflicts siblings", got)
	}
	if out := stdout.String(); !strings.Contains(out, "conflicts=siblings") {
		t.Fatalf("create printed %q, want conflicts=siblings", out)
	}
}
