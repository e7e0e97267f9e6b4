package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// fakeAPI imitates the documented HTTP API of a node (internal/httpapi) over
// an in-memory map, and records each request as "METHOD escaped-path?query".
// The real end-to-end test runs the CLI against a real node.
type fakeAPI struct {
	mu   sync.Mutex
	data map[string]map[string]string // namespace -> key -> value
	reqs []string
}

func newFakeAPI(t *testing.T) (*fakeAPI, *httptest.Server) {
	f := &fakeAPI{data: map[string]map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/namespaces/{ns}/keys/{key...}", f.get)
	mux.HandleFunc("PUT /v1/namespaces/{ns}/keys/{key...}", f.put)
	mux.HandleFunc("DELETE /v1/namespaces/{ns}/keys/{key...}", f.del)
	mux.HandleFunc("GET /v1/namespaces/{ns}/keys", f.list)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		line := r.Method + " " + r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			line += "?" + r.URL.RawQuery
		}
		f.reqs = append(f.reqs, line)
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeAPI) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

func (f *fakeAPI) set(ns, key, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.data[ns] == nil {
		f.data[ns] = map[string]string{}
	}
	f.data[ns][key] = value
}

func apiErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}

func (f *fakeAPI) get(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	v, ok := f.data[r.PathValue("ns")][r.PathValue("key")]
	f.mu.Unlock()
	if !ok {
		apiErr(w, 404, "NOT_FOUND", fmt.Sprintf("key %q not found", r.PathValue("key")))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	io.WriteString(w, v)
}

func (f *fakeAPI) put(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	q := r.URL.Query()
	for name := range q {
		if name != "ttl" && name != "nx" && name != "xx" {
			apiErr(w, 400, "INVALID", fmt.Sprintf("unknown query parameter %q", name))
			return
		}
	}
	if r.Header.Get("Content-Type") != "application/octet-stream" {
		apiErr(w, 400, "INVALID", "want a raw body")
		return
	}
	ns, key := r.PathValue("ns"), r.PathValue("key")
	f.mu.Lock()
	_, exists := f.data[ns][key]
	f.mu.Unlock()
	switch {
	case q.Get("nx") == "true" && exists:
		apiErr(w, 412, "CONFLICT", "key exists at version 1")
		return
	case q.Get("xx") == "true" && !exists:
		apiErr(w, 412, "CONFLICT", "key does not exist")
		return
	}
	f.set(ns, key, string(body))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(201)
	io.WriteString(w, `{"key":"k","version":1}`)
}

func (f *fakeAPI) del(w http.ResponseWriter, r *http.Request) {
	ns, key := r.PathValue("ns"), r.PathValue("key")
	f.mu.Lock()
	_, ok := f.data[ns][key]
	delete(f.data[ns], key)
	f.mu.Unlock()
	if !ok {
		apiErr(w, 404, "NOT_FOUND", "no such key")
		return
	}
	io.WriteString(w, `{"deleted":true,"version":1}`)
}

// list pages through the sorted keys; its cursor is "c" + the last key.
func (f *fakeAPI) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 1 || limit > 10000 {
		apiErr(w, 400, "INVALID", "bad limit")
		return
	}
	after, hasCursor := strings.CutPrefix(q.Get("cursor"), "c")
	f.mu.Lock()
	var keys []string
	for k := range f.data[r.PathValue("ns")] {
		if strings.HasPrefix(k, q.Get("prefix")) && (!hasCursor || k > after) {
			keys = append(keys, k)
		}
	}
	f.mu.Unlock()
	slices.Sort(keys)
	resp := struct {
		Namespace  string   `json:"namespace"`
		Keys       []string `json:"keys"`
		KeysBase64 []string `json:"keys_base64,omitempty"`
		Cursor     string   `json:"cursor"`
	}{Namespace: r.PathValue("ns"), Keys: []string{}}
	if len(keys) > limit {
		keys = keys[:limit]
		resp.Cursor = "c" + keys[limit-1]
	}
	for _, k := range keys {
		if utf8.ValidString(k) {
			resp.Keys = append(resp.Keys, k)
		} else {
			resp.KeysBase64 = append(resp.KeysBase64, base64.StdEncoding.EncodeToString([]byte(k)))
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

func runClient(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	m, stdout, stderr := testMain(t)
	code := m.Run(context.Background(), args)
	return code, stdout.String(), stderr.String()
}

func TestClientSetGetDel(t *testing.T) {
	f, srv := newFakeAPI(t)
	addr := "--addr=" + srv.URL
	steps := []struct {
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
		wantReq    string // the request the step sent last
	}{
		{[]string{"get", addr, "k"}, 1, "", "(nil)\n", "GET /v1/namespaces/default/keys/k"},
		{[]string{"set", addr, "k", "v 1\n"}, 0, "OK\n", "", "PUT /v1/namespaces/default/keys/k"},
		{[]string{"get", "k", addr}, 0, "v 1\n", "", "GET /v1/namespaces/default/keys/k"},
		{[]string{"set", "k", "v2", addr, "--nx"}, 1, "", "error: CONFLICT key exists at version 1\n", "PUT /v1/namespaces/default/keys/k?nx=true"},
		{[]string{"set", "--xx", "--ttl", "1m30s", addr, "k", "v2"}, 0, "OK\n", "", "PUT /v1/namespaces/default/keys/k?ttl=1m30s&xx=true"},
		{[]string{"set", addr, "--xx", "absent", "v"}, 1, "", "error: CONFLICT key does not exist\n", "PUT /v1/namespaces/default/keys/absent?xx=true"},
		{[]string{"set", addr, "--namespace", "other", "k", "o"}, 0, "OK\n", "", "PUT /v1/namespaces/other/keys/k"},
		{[]string{"get", addr, "k"}, 0, "v2", "", "GET /v1/namespaces/default/keys/k"},
		{[]string{"get", addr, "-namespace", "other", "k"}, 0, "o", "", "GET /v1/namespaces/other/keys/k"},
		// Keys that would change the path's shape are percent-encoded.
		{[]string{"set", addr, "a/b ../é", "x"}, 0, "OK\n", "", "PUT /v1/namespaces/default/keys/a%2Fb%20%2E%2E%2F%C3%A9"},
		{[]string{"get", addr, "a/b ../é"}, 0, "x", "", "GET /v1/namespaces/default/keys/a%2Fb%20%2E%2E%2F%C3%A9"},
		{[]string{"set", addr, "--", "-dash", "-1"}, 0, "OK\n", "", "PUT /v1/namespaces/default/keys/-dash"},
		{[]string{"get", addr, "--", "-dash"}, 0, "-1", "", "GET /v1/namespaces/default/keys/-dash"},
		{[]string{"set", addr, "", "empty key"}, 0, "OK\n", "", "PUT /v1/namespaces/default/keys/"},
		{[]string{"get", addr, ""}, 0, "empty key", "", "GET /v1/namespaces/default/keys/"},
		{[]string{"del", addr, "k", "missing", "--", "-dash"}, 0, "2\n", "", "DELETE /v1/namespaces/default/keys/-dash"},
		{[]string{"get", addr, "k"}, 1, "", "(nil)\n", "GET /v1/namespaces/default/keys/k"},
		{[]string{"get", addr, "--namespace", "other", "k"}, 0, "o", "", "GET /v1/namespaces/other/keys/k"},
	}
	for i, s := range steps {
		code, stdout, stderr := runClient(t, s.args...)
		if code != s.wantCode || stdout != s.wantStdout || stderr != s.wantStderr {
			t.Errorf("step %d %q: code %d stdout %q stderr %q; want %d %q %q", i, s.args, code, stdout, stderr, s.wantCode, s.wantStdout, s.wantStderr)
		}
		if reqs := f.requests(); len(reqs) == 0 || reqs[len(reqs)-1] != s.wantReq {
			t.Errorf("step %d %q: last request %q, want %q", i, s.args, reqs[len(reqs)-1], s.wantReq)
		}
	}
}

func TestClientScan(t *testing.T) {
	f, srv := newFakeAPI(t)
	var want []string
	for i := range 2500 {
		k := fmt.Sprintf("user:%04d", i)
		f.set("default", k, "v")
		want = append(want, k)
	}
	f.set("default", "other", "v")
	f.set("default", "user:\xff", "binary")
	f.set("ns2", "user:0001", "v")

	code, stdout, stderr := runClient(t, "scan", "--addr", srv.URL, "--prefix", "user:")
	if code != 0 {
		t.Fatalf("scan: code %d stderr %q", code, stderr)
	}
	if got := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n"); !slices.Equal(got, append(slices.Clone(want), "user:\xff")) {
		t.Errorf("scan printed %d keys (first %q, last %q), want %d user: keys then the binary one", len(got), got[0], got[len(got)-1], len(want)+1)
	}
	reqs := f.requests()
	wantReqs := []string{
		"GET /v1/namespaces/default/keys?limit=1000&prefix=user%3A",
		"GET /v1/namespaces/default/keys?cursor=cuser%3A0999&limit=1000&prefix=user%3A",
		"GET /v1/namespaces/default/keys?cursor=cuser%3A1999&limit=1000&prefix=user%3A",
	}
	if !slices.Equal(reqs, wantReqs) {
		t.Errorf("requests:\n got %q\nwant %q", reqs, wantReqs)
	}

	code, stdout, _ = runClient(t, "scan", "--addr", srv.URL, "--limit", "1001")
	if lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n"); code != 0 || len(lines) != 1001 || lines[0] != "other" || lines[1000] != "user:0999" {
		t.Errorf("scan --limit 1001: code %d, %d lines", code, len(lines))
	}
	if got, want := f.requests()[3:], []string{
		"GET /v1/namespaces/default/keys?limit=1000",
		"GET /v1/namespaces/default/keys?cursor=cuser%3A0998&limit=1",
	}; !slices.Equal(got, want) {
		t.Errorf("requests with --limit:\n got %q\nwant %q", got, want)
	}

	code, stdout, _ = runClient(t, "scan", "--addr", srv.URL, "--namespace", "empty")
	if code != 0 || stdout != "" {
		t.Errorf("scan of an empty namespace: code %d stdout %q", code, stdout)
	}
}

func TestClientErrors(t *testing.T) {
	_, srv := newFakeAPI(t)
	// hang answers only when the client gives up, so the client's timeout
	// is what ends the request.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
	}))
	defer proxy.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string // prefix
	}{
		{"timeout", []string{"get", "--addr", hang.URL, "--timeout", "50ms", "k"}, 1,
			"error: TIMEOUT no answer from " + strings.TrimPrefix(hang.URL, "http://") + " within 50ms\n"},
		{"refused", []string{"get", "--addr", closedURL, "k"}, 1, "error: UNAVAILABLE Get \"" + closedURL + "/v1/namespaces/default/keys/k\": dial tcp"},
		{"not json", []string{"set", "--addr", proxy.URL, "k", "v"}, 1, "error: HTTP_502 <html>bad gateway</html>\n"},
		{"limit 0 is no limit", []string{"scan", "--addr", srv.URL, "--namespace", "x", "--limit", "0"}, 0, ""},
		{"del stops at error", []string{"del", "--addr", proxy.URL, "a", "b"}, 1, "error: HTTP_502 <html>bad gateway</html> (after deleting 0 of 2 keys)\n"},
		{"addr without scheme", []string{"get", "--addr", strings.TrimPrefix(srv.URL, "http://"), "k"}, 1, "(nil)\n"},
		{"bad addr", []string{"get", "--addr", "ftp://x", "k"}, 2, "fulcrum get: --addr \"ftp://x\" is not an http:// or https:// URL\n\nUsage: fulcrum get"},
		{"bad namespace", []string{"get", "--addr", srv.URL, "--namespace", "a b", "k"}, 2, "fulcrum get: --namespace: namespace name \"a b\": character ' ' not allowed (use A-Z a-z 0-9 _ . -)\n"},
		{"get no key", []string{"get"}, 2, "fulcrum get: want exactly one KEY, got 0 arguments\n"},
		{"set one arg", []string{"set", "k"}, 2, "fulcrum set: want KEY and VALUE, got 1 arguments\n"},
		{"nx and xx", []string{"set", "--nx", "--xx", "k", "v"}, 2, "fulcrum set: --nx and --xx exclude each other\n"},
		{"negative ttl", []string{"set", "--ttl", "-1s", "k", "v"}, 2, "fulcrum set: --ttl must not be negative\n"},
		{"del no key", []string{"del"}, 2, "fulcrum del: missing KEY\n"},
		{"scan arg", []string{"scan", "x"}, 2, "fulcrum scan: unexpected argument \"x\"\n"},
		{"scan negative limit", []string{"scan", "--limit", "-1"}, 2, "fulcrum scan: --limit must not be negative\n"},
		{"bad timeout", []string{"get", "--timeout", "0s", "k"}, 2, "fulcrum get: --timeout must be > 0\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runClient(t, tt.args...)
			if code != tt.wantCode || !strings.HasPrefix(stderr, tt.wantStderr) {
				t.Errorf("code %d stderr %q; want %d and stderr starting %q", code, stderr, tt.wantCode, tt.wantStderr)
			}
			if code != 0 && stdout != "" {
				t.Errorf("stdout = %q on failure, want nothing", stdout)
			}
		})
	}
}
