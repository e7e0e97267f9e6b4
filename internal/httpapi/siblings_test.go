package httpapi

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// siblingStore is a store seen through a cluster router: reads answer a
// fixed ReadMeta, writes record the causal context they carried.
type siblingStore struct {
	Store
	mu       sync.Mutex
	meta     kv.ReadMeta
	contexts []string // per applied batch: its causal context, "-" for none
}

func (s *siblingStore) GetMeta(ctx context.Context, ns string, key []byte, r int) (kv.ReadMeta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.meta, nil
}

func (s *siblingStore) Apply(ctx context.Context, b kv.Batch) ([]kv.Result, error) {
	cc, ok := kv.CausalContextFrom(ctx)
	s.mu.Lock()
	if ok {
		s.contexts = append(s.contexts, string(cc))
	} else {
		s.contexts = append(s.contexts, "-")
	}
	s.mu.Unlock()
	return s.Store.Apply(ctx, b)
}

func (s *siblingStore) set(m kv.ReadMeta) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.meta = m
}

func (s *siblingStore) lastContext() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.contexts) == 0 {
		return ""
	}
	return s.contexts[len(s.contexts)-1]
}

// TestSiblingsHTTP: a GET of a key with concurrent values answers 300
// with every sibling and the context; one value answers 200 as before;
// every eventual GET carries Fulcrum-Context, and PUT and DELETE pass it
// on.
func TestSiblingsHTTP(t *testing.T) {
	cc := []byte{2, 1, 7, 2, 9}
	text := kv.FormatCausalContext(cc)
	st := &siblingStore{}
	e := newEnv(t, func(o *Options) {
		st.Store = o.Store
		o.Store = st
	})
	st.set(kv.ReadMeta{Found: true, Value: []byte("b"), Timestamp: 20, Writer: 2, Consistency: kv.ConsistencyEventual, Answered: 1, Agreed: 1, Required: 1,
		Siblings: []kv.Sibling{{Value: []byte("b"), Timestamp: 20, Writer: 2}, {Value: []byte("\xff"), Timestamp: 10, Logical: 3, Writer: 1}}, Context: cc})
	w := e.do(http.MethodGet, k1, nil)
	want(t, w, http.StatusMultipleChoices)
	if got := w.Header().Get(ContextHeader); got != text {
		t.Fatalf("%s %q, want %q", ContextHeader, got, text)
	}
	body := decode[siblingsJSON](t, w)
	if body.Context != text || body.Key == nil || *body.Key != "k1" || len(body.Siblings) != 2 ||
		body.Siblings[0].Value == nil || *body.Siblings[0].Value != "b" || body.Siblings[0].Timestamp != "20.0" || body.Siblings[0].Writer != 2 ||
		body.Siblings[1].ValueBase64 != "/w==" || body.Siblings[1].Timestamp != "10.3" {
		t.Fatalf("300 body %s", w.Body.String())
	}

	// One value: 200 with the value, and the context to overwrite it.
	st.set(kv.ReadMeta{Found: true, Value: []byte("b"), Timestamp: 20, Writer: 2, Consistency: kv.ConsistencyEventual, Answered: 1, Agreed: 1, Required: 1,
		Siblings: []kv.Sibling{{Value: []byte("b"), Timestamp: 20, Writer: 2}}, Context: cc})
	w = e.do(http.MethodGet, k1, nil)
	want(t, w, http.StatusOK)
	if w.Body.String() != "b" || w.Header().Get(ContextHeader) != text {
		t.Fatalf("200: %q %v", w.Body.String(), w.Header())
	}
	// Missing: 404, still with the context (of a tombstone, say).
	st.set(kv.ReadMeta{Consistency: kv.ConsistencyEventual, Answered: 1, Required: 1, Context: []byte{0}})
	w = e.do(http.MethodGet, k1, nil)
	want(t, w, http.StatusNotFound)
	if w.Header().Get(ContextHeader) != "AA" {
		t.Fatalf("404 %s %q, want AA", ContextHeader, w.Header().Get(ContextHeader))
	}

	want(t, e.do(http.MethodPut, k1, "c", ContextHeader, text), http.StatusCreated)
	if got := st.lastContext(); got != string(cc) {
		t.Fatalf("PUT with %s: the store got %x, want %x", ContextHeader, got, cc)
	}
	want(t, e.do(http.MethodPut, k1, "d"), http.StatusOK)
	if got := st.lastContext(); got != "-" {
		t.Fatalf("PUT without %s: the store got %x", ContextHeader, got)
	}
	want(t, e.do(http.MethodDelete, k1, nil, ContextHeader, text), http.StatusOK)
	if got := st.lastContext(); got != string(cc) {
		t.Fatalf("DELETE with %s: the store got %x, want %x", ContextHeader, got, cc)
	}
	wantError(t, e.do(http.MethodPut, k1, "c", ContextHeader, "!!"), http.StatusBadRequest, kv.CodeInvalid, "causal context...")
	wantError(t, e.do(http.MethodDelete, k1, nil, ContextHeader, text, ContextHeader, text), http.StatusBadRequest, kv.CodeInvalid, "2 Fulcrum-Context headers...")

	// A strong read keeps its form: no context.
	st.set(kv.ReadMeta{Found: true, Value: []byte("s"), Version: 4, Consistency: kv.ConsistencyStrong})
	if w := e.do(http.MethodGet, k1, nil); w.Code != http.StatusOK || w.Header().Get(ContextHeader) != "" {
		t.Fatalf("strong GET: %d %v", w.Code, w.Header())
	}
}

// TestSiblingsHTTPAlone: a node that runs alone refuses a causal context.
func TestSiblingsHTTPAlone(t *testing.T) {
	e := newEnv(t)
	wantError(t, e.do(http.MethodPut, k1, "v", ContextHeader, "AA"), http.StatusBadRequest, kv.CodeInvalid, "Fulcrum-Context: this node runs alone...")
	want(t, e.do(http.MethodPut, k1, "v"), http.StatusCreated)
}
