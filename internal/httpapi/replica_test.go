package httpapi

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// replicaStore is a store seen through a cluster router holding a
// replication=primary namespace: reads answer a fixed ReadMeta and record
// the replica-read bound their context carried.
type replicaStore struct {
	Store
	mu     sync.Mutex
	meta   kv.ReadMeta
	bounds []string // per read: its bound, "-" for none (the primary answers)
}

func (s *replicaStore) GetMeta(ctx context.Context, ns string, key []byte, r int) (kv.ReadMeta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := kv.ReplicaReadsFrom(ctx); ok {
		s.bounds = append(s.bounds, d.String())
	} else {
		s.bounds = append(s.bounds, "-")
	}
	return s.meta, nil
}

func (s *replicaStore) set(m kv.ReadMeta) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.meta = m
}

func (s *replicaStore) lastBound() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bounds) == 0 {
		return ""
	}
	return s.bounds[len(s.bounds)-1]
}

// TestReplicaReadsHTTP: ?replica and ?max_staleness reach the store as
// the request's replica-read bound, bad values are refused with 400, and
// every read of a primary namespace reports who answered and its lag.
func TestReplicaReadsHTTP(t *testing.T) {
	st := &replicaStore{}
	e := newEnv(t, func(o *Options) {
		st.Store = o.Store
		o.Store = st
	})
	st.set(kv.ReadMeta{Found: true, Value: []byte("v"), Version: 9, Consistency: "primary-async",
		Role: "replica", Epoch: 3, LagEntries: 2, Lag: 1500*time.Millisecond + 700*time.Microsecond})
	for _, tc := range []struct {
		query, bound string
	}{
		{"", "-"},
		{"?replica=1", "-1ns"},
		{"?replica=true", "-1ns"},
		{"?replica", "-1ns"},
		{"?replica=false", "-"},
		{"?replica=0", "-"},
		{"?max_staleness=250", "250ms"},
		{"?max_staleness=0", "0s"},
		{"?replica=1&max_staleness=3600000", "1h0m0s"},
		{"?format=json&max_staleness=5", "5ms"},
	} {
		w := e.do(http.MethodGet, k1+tc.query, nil)
		want(t, w, http.StatusOK)
		if got := st.lastBound(); got != tc.bound {
			t.Errorf("GET %s: the store got bound %s, want %s", tc.query, got, tc.bound)
		}
		for h, v := range map[string]string{"Fulcrum-Role": "replica", "Fulcrum-Epoch": "3", "Fulcrum-Lag-Entries": "2",
			"Fulcrum-Lag-Ms": "1500", "Fulcrum-Consistency": "primary-async", "Fulcrum-Version": "9"} {
			if got := w.Header().Get(h); got != v {
				t.Errorf("GET %s: %s %q, want %q", tc.query, h, got, v)
			}
		}
	}

	// A primary's answer, and a missing key: still who answered.
	st.set(kv.ReadMeta{Consistency: "primary-sync", Role: "primary", Epoch: 4})
	w := e.do(http.MethodHead, k1+"?replica=1", nil)
	want(t, w, http.StatusNotFound)
	if w.Header().Get("Fulcrum-Role") != "primary" || w.Header().Get("Fulcrum-Epoch") != "4" ||
		w.Header().Get("Fulcrum-Lag-Entries") != "0" || w.Header().Get("Fulcrum-Lag-Ms") != "0" {
		t.Fatalf("404 of a primary namespace: headers %v", w.Header())
	}

	for _, tc := range []struct{ query, msg string }{
		{"?max_staleness=abc", `max_staleness="abc": want milliseconds from 0 to 3600000`},
		{"?max_staleness=-1", `max_staleness="-1": want milliseconds from 0 to 3600000`},
		{"?max_staleness=3600001", `max_staleness="3600001": want milliseconds from 0 to 3600000`},
		{"?max_staleness=", `max_staleness="": want milliseconds from 0 to 3600000`},
		{"?replica=maybe", `replica="maybe": want true or false`},
		{"?replica=false&max_staleness=5", "max_staleness=5 with replica=false: max_staleness is a bound on replica reads"},
		{"?max_staleness=5&max_staleness=6", `query parameter "max_staleness" given 2 times`},
		{"?replicas=1", `unknown query parameter "replicas" (allowed: format, r, replica, max_staleness)`},
	} {
		wantError(t, e.do(http.MethodGet, k1+tc.query, nil), http.StatusBadRequest, kv.CodeInvalid, tc.msg)
	}

	// Other namespaces' reads carry no role.
	st.set(kv.ReadMeta{Found: true, Value: []byte("s"), Version: 4, Consistency: kv.ConsistencyStrong})
	w = e.do(http.MethodGet, k1+"?replica=1", nil)
	want(t, w, http.StatusOK)
	if w.Header().Get("Fulcrum-Role") != "" || w.Header().Get("Fulcrum-Lag-Ms") != "" {
		t.Fatalf("strong GET: role headers %v", w.Header())
	}
}

// TestReplicaReadsHTTPAlone: a node that runs alone has one copy; it
// takes the parameters (checked as anywhere) and answers from it.
func TestReplicaReadsHTTPAlone(t *testing.T) {
	e := newEnv(t)
	want(t, e.do(http.MethodPut, k1, "v"), http.StatusCreated)
	w := e.do(http.MethodGet, k1+"?replica=1&max_staleness=10", nil)
	want(t, w, http.StatusOK)
	if w.Body.String() != "v" || w.Header().Get("Fulcrum-Role") != "" {
		t.Fatalf("GET alone: %q %v", w.Body.String(), w.Header())
	}
	wantError(t, e.do(http.MethodGet, k1+"?max_staleness=x", nil), http.StatusBadRequest, kv.CodeInvalid, "max_staleness=\"x\"...")
}
