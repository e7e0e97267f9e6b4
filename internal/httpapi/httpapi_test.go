package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fulcrumdb/fulcrum/internal/fakeclock"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/metrics"
	"github.com/fulcrumdb/fulcrum/internal/storage"
)

// fakeClock is the one clock a test shares with its store and front end.
type fakeClock = fakeclock.Clock

func newFakeClock() *fakeClock { return fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

// testLimits are small so oversize tests stay cheap.
var testLimits = kv.Limits{MaxKeySize: 64, MaxValueSize: 1024}

type env struct {
	t       testing.TB
	clock   *fakeClock
	store   *storage.Store
	metrics *metrics.Metrics
	h       *Handler
}

func newEnv(t testing.TB, mut ...func(*Options)) *env {
	t.Helper()
	clock := newFakeClock()
	st, err := storage.Open(storage.Options{
		FS: vfs.NewMem(), Dir: "/data", Now: clock.Now, Limits: testLimits,
		SweepInterval: time.Hour, // expiry here is lazy; the sweeper would only race the clock
	})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	m := metrics.New()
	opts := Options{Store: st, Limits: testLimits, Metrics: m, Now: clock.Now, Version: "test"}
	for _, f := range mut {
		f(&opts)
	}
	h, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &env{t: t, clock: clock, store: st, metrics: m, h: h}
}

// do serves one request; headers come as "Name", "value" pairs.
func (e *env) do(method, target string, body any, headers ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader:
		rd = b
	default:
		e.t.Fatalf("bad body type %T", body)
	}
	req := httptest.NewRequest(method, target, rd)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	return w
}

// want checks a response's status.
func want(t testing.TB, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %s", w.Code, status, w.Body.String())
	}
}

// wantError checks an error answer's status, code and message. A message
// ending in "..." is matched as a prefix.
func wantError(t testing.TB, w *httptest.ResponseRecorder, status int, code kv.Code, msg string) {
	t.Helper()
	want(t, w, status)
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var eb errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil {
		t.Fatalf("error body %q: %v", w.Body.String(), err)
	}
	if eb.Code != code {
		t.Fatalf("code %s, want %s (message %q)", eb.Code, code, eb.Message)
	}
	if p, ok := strings.CutSuffix(msg, "..."); ok {
		if !strings.HasPrefix(eb.Message, p) {
			t.Fatalf("message %q, want prefix %q", eb.Message, p)
		}
	} else if msg != "" && eb.Message != msg {
		t.Fatalf("message %q, want %q", eb.Message, msg)
	}
}

func decode[T any](t testing.TB, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %q: %v", w.Body.String(), err)
	}
	return v
}

const k1 = "/v1/namespaces/default/keys/k1"

func TestNewValidatesAndDefaults(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without a store succeeded")
	}
	e := newEnv(t)
	for _, bad := range []Options{
		{Store: e.store, MaxBodySize: -1},
		{Store: e.store, Limits: kv.Limits{MaxKeySize: -1}},
		{Store: e.store, Limits: kv.Limits{MaxValueSize: kv.HardMaxValueSize + 1}},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", bad)
		}
	}
	h, err := New(Options{Store: e.store})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := h.opts.MaxBodySize, int64(kv.DefaultMaxValueSize+DefaultBodySlack); got != want {
		t.Errorf("default MaxBodySize %d, want %d", got, want)
	}
	if h.opts.Limits != kv.DefaultLimits() || h.opts.Metrics == nil || h.opts.Logger == nil || h.opts.Now == nil || h.opts.Ready == nil {
		t.Errorf("defaults not applied: %+v", h.opts)
	}
}

func TestPutGetRaw(t *testing.T) {
	e := newEnv(t)
	w := e.do("PUT", k1, "hello")
	want(t, w, http.StatusCreated)
	put := decode[entryJSON](t, w)
	if put.Version == 0 || put.Key == nil || *put.Key != "k1" || put.Namespace != "default" || put.Value != nil {
		t.Fatalf("put answer %+v", put)
	}
	if got, want := w.Header().Get("ETag"), fmt.Sprintf(`"%d"`, put.Version); got != want {
		t.Fatalf("ETag %s, want %s", got, want)
	}

	w = e.do("GET", k1, nil)
	want(t, w, http.StatusOK)
	if w.Body.String() != "hello" || w.Header().Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("got %q (%s), want hello as octet-stream", w.Body.String(), w.Header().Get("Content-Type"))
	}
	if got, want := w.Header().Get("Fulcrum-Version"), fmt.Sprint(put.Version); got != want {
		t.Fatalf("Fulcrum-Version %s, want %s", got, want)
	}
	if w.Header().Get("Fulcrum-Expire-At") != "" {
		t.Fatalf("Fulcrum-Expire-At set on a key without expiry")
	}

	w = e.do("PUT", k1, "world")
	want(t, w, http.StatusOK) // replaced, not created
	if v2 := decode[entryJSON](t, w).Version; v2 <= put.Version {
		t.Fatalf("version %d after %d, want it to grow", v2, put.Version)
	}
	w = e.do("HEAD", k1, nil)
	want(t, w, http.StatusOK)
	if w.Header().Get("Content-Length") != "5" {
		t.Fatalf("HEAD Content-Length %q, want 5", w.Header().Get("Content-Length"))
	}

	wantError(t, e.do("GET", "/v1/namespaces/default/keys/nope", nil), 404, kv.CodeNotFound, `key "nope" not found in namespace "default"`)
	wantError(t, e.do("GET", "/v1/namespaces/other/keys/k1", nil), 404, kv.CodeNotFound, "")
}

func TestGetJSONAndBinary(t *testing.T) {
	e := newEnv(t)
	bin := []byte{0, 1, 0xff, 0xfe, 'x'}
	want(t, e.do("PUT", "/v1/namespaces/default/keys/bin", bin), http.StatusCreated)
	want(t, e.do("PUT", "/v1/namespaces/default/keys/text", "héllo"), http.StatusCreated)
	want(t, e.do("PUT", "/v1/namespaces/default/keys/empty", ""), http.StatusCreated)

	w := e.do("GET", "/v1/namespaces/default/keys/bin", nil)
	if !bytes.Equal(w.Body.Bytes(), bin) {
		t.Fatalf("raw binary %x, want %x", w.Body.Bytes(), bin)
	}
	for _, tc := range []struct {
		key, target, accept string
		value, b64          string
	}{
		{key: "bin", target: "?format=json", b64: "AAH//ng="},
		{key: "text", accept: "application/json", value: "héllo"},
		{key: "text", accept: "text/html, application/json;q=0.9", value: "héllo"},
		{key: "empty", target: "?format=json", value: ""},
	} {
		w := e.do("GET", "/v1/namespaces/default/keys/"+tc.key+tc.target, nil, "Accept", tc.accept)
		want(t, w, http.StatusOK)
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s: Content-Type %q", tc.key, ct)
		}
		got := decode[entryJSON](t, w)
		if tc.b64 != "" {
			if got.ValueBase64 != tc.b64 || got.Value != nil {
				t.Fatalf("%s: got value %v value_base64 %q, want value_base64 %q", tc.key, got.Value, got.ValueBase64, tc.b64)
			}
		} else if got.Value == nil || *got.Value != tc.value || got.ValueBase64 != "" {
			t.Fatalf("%s: got %s, want value %q", tc.key, w.Body.String(), tc.value)
		}
		if got.Namespace != "default" || *got.Key != tc.key || got.Version == 0 || got.Created == 0 ||
			got.Timestamp == "" || got.ExpireAtMs != 0 || got.TTLMs != -1 {
			t.Fatalf("%s: metadata %s", tc.key, w.Body.String())
		}
	}
	// q=0 means "not acceptable"; format=raw beats Accept.
	for _, tc := range []struct{ target, accept string }{
		{"", "application/json;q=0"},
		{"?format=raw", "application/json"},
	} {
		w := e.do("GET", "/v1/namespaces/default/keys/text"+tc.target, nil, "Accept", tc.accept)
		if w.Body.String() != "héllo" {
			t.Fatalf("%q %q: got %q, want raw", tc.target, tc.accept, w.Body.String())
		}
	}
	wantError(t, e.do("GET", "/v1/namespaces/default/keys/text?format=xml", nil), 400, kv.CodeInvalid, `format="xml": want json or raw`)
}

func TestPutJSONBody(t *testing.T) {
	e := newEnv(t)
	ct := []string{"Content-Type", "application/json; charset=utf-8"}
	want(t, e.do("PUT", k1, `{"value":"text"}`, ct...), http.StatusCreated)
	if got := e.do("GET", k1, nil).Body.String(); got != "text" {
		t.Fatalf("got %q, want text", got)
	}
	want(t, e.do("PUT", k1, `{"value_base64":"AP8="}`, ct...), http.StatusOK)
	if got := e.do("GET", k1, nil).Body.Bytes(); !bytes.Equal(got, []byte{0, 0xff}) {
		t.Fatalf("got %x, want 00ff", got)
	}
	w := e.do("PUT", k1, `{"value":"t","ttl_ms":5000}`, ct...)
	want(t, w, http.StatusOK)
	if got := decode[entryJSON](t, w).ExpireAtMs; got != e.clock.UnixMilli()+5000 {
		t.Fatalf("expire_at_ms %d, want %d", got, e.clock.UnixMilli()+5000)
	}
	// A JSON-looking body without the JSON content type is a raw value.
	want(t, e.do("PUT", k1, `{"value":"x"}`), http.StatusOK)
	if got := e.do("GET", k1, nil).Body.String(); got != `{"value":"x"}` {
		t.Fatalf("got %q, want the raw body", got)
	}

	for _, tc := range []struct{ target, body, msg string }{
		{k1, `{"value":"a","value_base64":"YQ=="}`, `JSON body: give "value" or "value_base64", not both`},
		{k1, `{}`, `JSON body: "value" or "value_base64" is required`},
		{k1, `{"value":"a","extra":1}`, `JSON body: json: unknown field "extra"`},
		{k1, `{"value":"a"} {}`, `JSON body: data after the object`},
		{k1, `{"value_base64":"!!"}`, `JSON body: value_base64: illegal base64 data at input byte 0`},
		{k1, `{"value":"a","ttl_ms":0}`, `JSON body: ttl_ms 0: must be at least 1`},
		{k1 + "?ttl=1s", `{"value":"a","ttl_ms":10}`, `TTL given in both the query and the JSON body`},
		{k1, `not json`, `JSON body: invalid character 'o' in literal null (expecting 'u')`},
	} {
		wantError(t, e.do("PUT", tc.target, tc.body, ct...), 400, kv.CodeInvalid, tc.msg)
	}
}

func TestConditionalWrites(t *testing.T) {
	e := newEnv(t)
	v1 := decode[entryJSON](t, e.do("PUT", k1, "a")).Version

	// If-Match with the current version applies; a stale one is 412 with
	// the current version in the message.
	w := e.do("PUT", k1, "b", "If-Match", fmt.Sprintf(`"%d"`, v1))
	want(t, w, http.StatusOK)
	v2 := decode[entryJSON](t, w).Version
	wantError(t, e.do("PUT", k1, "c", "If-Match", fmt.Sprintf(`"%d"`, v1)), 412, kv.CodeConflict,
		fmt.Sprintf("version mismatch: key is at version %d, If-Match wants %d", v2, v1))
	if got := e.do("GET", k1, nil).Body.String(); got != "b" {
		t.Fatalf("failed If-Match wrote: got %q, want b", got)
	}
	wantError(t, e.do("PUT", "/v1/namespaces/default/keys/new", "x", "If-Match", `"7"`), 412, kv.CodeConflict,
		"key does not exist; If-Match wants version 7")
	wantError(t, e.do("PUT", "/v1/namespaces/default/keys/new", "x", "If-Match", "*"), 412, kv.CodeConflict, "key does not exist")
	want(t, e.do("PUT", k1, "c", "If-Match", "*"), http.StatusOK)

	// Create-only.
	wantError(t, e.do("PUT", k1, "d", "If-None-Match", "*"), 412, kv.CodeConflict, "key exists at version ...")
	want(t, e.do("PUT", "/v1/namespaces/default/keys/k2", "d", "If-None-Match", "*"), http.StatusCreated)
	wantError(t, e.do("PUT", "/v1/namespaces/default/keys/k2?nx=true", "e"), 412, kv.CodeConflict, "key exists at version ...")
	want(t, e.do("PUT", "/v1/namespaces/default/keys/k3?nx", "e"), http.StatusCreated)
	wantError(t, e.do("PUT", "/v1/namespaces/default/keys/k4?xx=true", "e"), 412, kv.CodeConflict, "key does not exist")
	want(t, e.do("PUT", "/v1/namespaces/default/keys/k3?xx=1", "f"), http.StatusOK)
	want(t, e.do("PUT", "/v1/namespaces/default/keys/k3?nx=false", "g"), http.StatusOK)

	for _, tc := range []struct {
		target  string
		headers []string
		msg     string
	}{
		{k1 + "?nx=true&xx=true", nil, "conflicting conditions nx, xx: give at most one"},
		{k1 + "?nx=true", []string{"If-Match", `"1"`}, "conflicting conditions nx, If-Match: give at most one"},
		{k1, []string{"If-Match", `"1"`, "If-None-Match", "*"}, "conflicting conditions If-None-Match, If-Match: give at most one"},
		{k1, []string{"If-Match", `W/"1"`}, `If-Match "W/\"1\"": want one strong ETag "<version>" or *`},
		{k1, []string{"If-Match", `"1", "2"`}, `If-Match "\"1\", \"2\"": want one strong ETag "<version>" or *`},
		{k1, []string{"If-Match", `"abc"`}, `If-Match "\"abc\"": want one strong ETag "<version>" or *`},
		{k1, []string{"If-None-Match", `"1"`}, `If-None-Match "\"1\"": writes support only *`},
	} {
		wantError(t, e.do("PUT", tc.target, "z", tc.headers...), 400, kv.CodeInvalid, tc.msg)
	}
}

func TestCompareAndSwapCounter(t *testing.T) {
	// Concurrent read-modify-write loops with If-Match lose no increment:
	// the version check and the write are one atomic store batch.
	e := newEnv(t)
	want(t, e.do("PUT", k1, "0"), http.StatusCreated)
	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < each; {
				req := httptest.NewRequest("GET", k1, nil)
				w := httptest.NewRecorder()
				e.h.ServeHTTP(w, req)
				var n int
				if _, err := fmt.Sscan(w.Body.String(), &n); err != nil {
					errs <- fmt.Errorf("GET: %d %q", w.Code, w.Body.String())
					return
				}
				req = httptest.NewRequest("PUT", k1, strings.NewReader(fmt.Sprint(n+1)))
				req.Header.Set("If-Match", w.Header().Get("ETag"))
				w = httptest.NewRecorder()
				e.h.ServeHTTP(w, req)
				switch w.Code {
				case http.StatusOK:
					done++
				case http.StatusPreconditionFailed: // lost the race; retry
				default:
					errs <- fmt.Errorf("PUT: %d %s", w.Code, w.Body.String())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := e.do("GET", k1, nil).Body.String(); got != fmt.Sprint(workers*each) {
		t.Fatalf("counter %s, want %d", got, workers*each)
	}
}

func TestIfNoneMatchRead(t *testing.T) {
	e := newEnv(t)
	tag := e.do("PUT", k1, "a").Header().Get("ETag")
	for _, inm := range []string{tag, "W/" + tag, `"999", ` + tag, "*"} {
		w := e.do("GET", k1, nil, "If-None-Match", inm)
		want(t, w, http.StatusNotModified)
		if w.Body.Len() != 0 || w.Header().Get("ETag") != tag {
			t.Fatalf("If-None-Match %s: body %q ETag %q", inm, w.Body.String(), w.Header().Get("ETag"))
		}
	}
	want(t, e.do("GET", k1, nil, "If-None-Match", `"999"`), http.StatusOK)
	want(t, e.do("PUT", k1, "b"), http.StatusOK)
	w := e.do("GET", k1, nil, "If-None-Match", tag)
	want(t, w, http.StatusOK)
	if w.Body.String() != "b" {
		t.Fatalf("got %q, want b", w.Body.String())
	}
}

func TestDelete(t *testing.T) {
	e := newEnv(t)
	v1 := decode[entryJSON](t, e.do("PUT", k1, "a")).Version
	wantError(t, e.do("DELETE", k1, nil, "If-Match", `"1000"`), 412, kv.CodeConflict,
		fmt.Sprintf("version mismatch: key is at version %d, If-Match wants 1000", v1))
	w := e.do("DELETE", k1, nil, "If-Match", fmt.Sprintf(`"%d"`, v1))
	want(t, w, http.StatusOK)
	if got := decode[deleteJSON](t, w); !got.Deleted || got.Version != v1 {
		t.Fatalf("delete answer %+v, want deleted version %d", got, v1)
	}
	want(t, e.do("GET", k1, nil), http.StatusNotFound)
	wantError(t, e.do("DELETE", k1, nil), 404, kv.CodeNotFound, `key "k1" not found in namespace "default"`)
	wantError(t, e.do("DELETE", k1, nil, "If-Match", `"5"`), 404, kv.CodeNotFound, "")
	wantError(t, e.do("DELETE", k1+"?force=1", nil), 400, kv.CodeInvalid, `unknown query parameter "force" (allowed: w)`)
	wantError(t, e.do("DELETE", k1, nil, "If-None-Match", "*"), 400, kv.CodeInvalid, "If-None-Match is not supported on DELETE")
	want(t, e.do("PUT", k1, "b"), http.StatusCreated)
	want(t, e.do("DELETE", k1, nil), http.StatusOK)
}

func TestTTLWithFakeClock(t *testing.T) {
	e := newEnv(t)
	start := e.clock.UnixMilli()
	w := e.do("PUT", k1+"?ttl=10s", "v")
	want(t, w, http.StatusCreated)
	if got, want := w.Header().Get("Fulcrum-Expire-At"), fmt.Sprint(start+10_000); got != want {
		t.Fatalf("Fulcrum-Expire-At %s, want %s", got, want)
	}
	e.clock.Advance(9 * time.Second)
	w = e.do("GET", k1+"?format=json", nil)
	want(t, w, http.StatusOK)
	if got := decode[entryJSON](t, w); got.ExpireAtMs != start+10_000 || got.TTLMs != 1000 {
		t.Fatalf("expire_at_ms %d ttl_ms %d, want %d and 1000", got.ExpireAtMs, got.TTLMs, start+10_000)
	}
	// keepttl keeps the expiry; a plain PUT clears it.
	want(t, e.do("PUT", k1+"?keepttl=true", "v2"), http.StatusOK)
	e.clock.Advance(time.Second)
	wantError(t, e.do("GET", k1, nil), 404, kv.CodeNotFound, "")

	want(t, e.do("PUT", k1+"?ttl_ms=1500", "v"), http.StatusCreated)
	want(t, e.do("PUT", k1, "v"), http.StatusOK)
	e.clock.Advance(time.Hour)
	w = e.do("GET", k1+"?format=json", nil)
	want(t, w, http.StatusOK)
	if got := decode[entryJSON](t, w); got.ExpireAtMs != 0 || got.TTLMs != -1 {
		t.Fatalf("plain PUT kept the expiry: %+v", got)
	}

	// Expired keys disappear from listings too.
	want(t, e.do("PUT", "/v1/namespaces/default/keys/short?ttl_ms=1", "v"), http.StatusCreated)
	e.clock.Advance(time.Millisecond)
	if got := decode[listJSON](t, e.do("GET", "/v1/namespaces/default/keys", nil)).Keys; !slices.Equal(got, []string{"k1"}) {
		t.Fatalf("keys %q, want [k1]", got)
	}
}

func TestBadQueryParams(t *testing.T) {
	e := newEnv(t)
	want(t, e.do("PUT", k1, "v"), http.StatusCreated)
	list := "/v1/namespaces/default/keys"
	for _, tc := range []struct{ method, target, msg string }{
		{"PUT", k1 + "?ttl=abc", `ttl="abc": not a duration (examples: 1500ms, 10s, 2h45m)`},
		{"PUT", k1 + "?ttl=-1s", `ttl="-1s": must be at least 1ms`},
		{"PUT", k1 + "?ttl=0", `ttl="0": must be at least 1ms`},
		{"PUT", k1 + "?ttl=500us", `ttl="500us": must be at least 1ms`},
		{"PUT", k1 + "?ttl_ms=x", `ttl_ms="x": not an integer`},
		{"PUT", k1 + "?ttl_ms=0", `ttl_ms="0": must be at least 1`},
		{"PUT", k1 + "?ttl_ms=9223372036854775807", `ttl of 9223372036854775807 ms is too large`},
		{"PUT", k1 + "?ttl=1s&ttl_ms=5", `give ttl or ttl_ms, not both`},
		{"PUT", k1 + "?ttl=1s&keepttl=true", `give a ttl or keepttl, not both`},
		{"PUT", k1 + "?nx=maybe", `nx="maybe": want true or false`},
		{"PUT", k1 + "?tll=10s", `unknown query parameter "tll" (allowed: ttl, ttl_ms, nx, xx, keepttl, w)`},
		{"PUT", k1 + "?ttl=1s&ttl=2s", `query parameter "ttl" given 2 times`},
		{"PUT", k1 + "?ttl=%zz", `malformed query string: invalid URL escape "%zz"`},
		{"GET", k1 + "?ttl=1s", `unknown query parameter "ttl" (allowed: format, r, replica, max_staleness)`},
		{"GET", list + "?limit=0", `limit="0": want an integer from 1 to 10000`},
		{"GET", list + "?limit=10001", `limit="10001": want an integer from 1 to 10000`},
		{"GET", list + "?limit=ten", `limit="ten": want an integer from 1 to 10000`},
		{"GET", list + "?cursor=@@", `cursor "@@" was not returned by this API`},
		{"GET", list + "?cursor=eA", `cursor "eA" was not returned by this API`},
		{"GET", list + "?values=2", `values="2": want true or false`},
		{"GET", list + "?prefix=%ff", `prefix is not valid UTF-8`},
		{"GET", "/v1/namespaces?x=1", `unknown query parameter "x" (this route takes none)`},
	} {
		wantError(t, e.do(tc.method, tc.target, "v"), 400, kv.CodeInvalid, tc.msg)
	}
	// Nothing above changed the key.
	w := e.do("GET", k1+"?format=json", nil)
	if got := decode[entryJSON](t, w); *got.Value != "v" || got.ExpireAtMs != 0 {
		t.Fatalf("key changed by refused requests: %s", w.Body.String())
	}
}

func TestKeyAndNamespaceValidation(t *testing.T) {
	e := newEnv(t)
	wantError(t, e.do("PUT", "/v1/namespaces/default/keys/a%ffb", "v"), 400, kv.CodeInvalid, "key is not valid UTF-8")
	wantError(t, e.do("GET", "/v1/namespaces/default/keys/%c3", nil), 400, kv.CodeInvalid, "key is not valid UTF-8")
	long := strings.Repeat("k", testLimits.MaxKeySize+1)
	wantError(t, e.do("PUT", "/v1/namespaces/default/keys/"+long, "v"), 413, kv.CodeTooLarge, "key is 65 bytes, limit is 64")
	wantError(t, e.do("GET", "/v1/namespaces/default/keys/"+long, nil), 413, kv.CodeTooLarge, "")
	want(t, e.do("PUT", "/v1/namespaces/default/keys/"+long[1:], "v"), http.StatusCreated)

	for _, tc := range []struct{ ns, msg string }{
		{"a%20b", `namespace name "a b": character ' ' not allowed (use A-Z a-z 0-9 _ . -)`},
		{"a%2Fb", `namespace name "a/b": character '/' not allowed (use A-Z a-z 0-9 _ . -)`},
		{strings.Repeat("n", 65), "namespace name is 65 characters, limit is 64"},
	} {
		wantError(t, e.do("PUT", "/v1/namespaces/"+tc.ns+"/keys/k", "v"), 400, kv.CodeInvalid, tc.msg)
		wantError(t, e.do("GET", "/v1/namespaces/"+tc.ns+"/keys", nil), 400, kv.CodeInvalid, tc.msg)
	}

	// Keys with slashes, spaces and unicode round-trip through percent
	// encoding; non-canonical paths are refused, not redirected.
	for _, tc := range []struct{ target, key string }{
		{"/v1/namespaces/default/keys/a/b", "a/b"},
		{"/v1/namespaces/default/keys/a%2F%2Fb", "a//b"},
		{"/v1/namespaces/default/keys/x/%2E%2E/", "x/../"},
		{"/v1/namespaces/default/keys/sp%20ce+", "sp ce+"},
		{"/v1/namespaces/default/keys/%E2%9C%93", "✓"},
		{"/v1/namespaces/default/keys/", ""},
	} {
		target, key := tc.target, tc.key
		want(t, e.do("PUT", target, "v:"+key), http.StatusCreated)
		w := e.do("GET", target+"?format=json", nil)
		want(t, w, http.StatusOK)
		if got := decode[entryJSON](t, w); *got.Key != key || *got.Value != "v:"+key {
			t.Fatalf("%s: key %q value %q, want %q", target, *got.Key, *got.Value, key)
		}
	}
	for _, p := range []string{"/v1/namespaces/default/keys/a//b", "/v1/namespaces/default/keys/x/../y", "/v1//namespaces"} {
		wantError(t, e.do("PUT", p, "v"), 400, kv.CodeInvalid, fmt.Sprintf("path %q is not canonical...", p))
	}
}

// endlessReader yields bytes forever and counts them, to show a body was
// not read past its limit.
type endlessReader struct{ n atomic.Int64 }

func (r *endlessReader) Read(p []byte) (int, error) {
	clear(p)
	r.n.Add(int64(len(p)))
	return len(p), nil
}

func TestOversizedBodies(t *testing.T) {
	e := newEnv(t)
	maxV := testLimits.MaxValueSize
	bodyMax := int64(maxV + DefaultBodySlack)

	// Over the limit by Content-Length: refused before any byte is read.
	for _, tc := range []struct {
		ct  string
		cl  int64
		msg string
	}{
		{"", int64(maxV) + 1, fmt.Sprintf("value is %d bytes, limit is %d", maxV+1, maxV)},
		{"", 1 << 40, fmt.Sprintf("value is %d bytes, limit is %d", int64(1<<40), maxV)},
		{"application/json", bodyMax + 1, fmt.Sprintf("request body is %d bytes, limit is %d", bodyMax+1, bodyMax)},
	} {
		body := &endlessReader{}
		req := httptest.NewRequest("PUT", k1, body)
		req.ContentLength = tc.cl
		req.Header.Set("Content-Type", tc.ct)
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		wantError(t, w, 413, kv.CodeTooLarge, tc.msg)
		if n := body.n.Load(); n != 0 {
			t.Fatalf("Content-Length %d: read %d body bytes, want 0", tc.cl, n)
		}
	}
	// A chunked body (no Content-Length) is cut off one byte past the limit.
	for _, tc := range []struct {
		ct    string
		limit int64
	}{{"application/octet-stream", int64(maxV)}, {"application/json", bodyMax}} {
		body := &endlessReader{}
		req := httptest.NewRequest("PUT", k1, body)
		req.ContentLength = -1
		req.Header.Set("Content-Type", tc.ct)
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		wantError(t, w, 413, kv.CodeTooLarge, fmt.Sprintf("request body exceeds %d bytes", tc.limit))
		if n := body.n.Load(); n > tc.limit+1 {
			t.Fatalf("%s: read %d bytes of a body limited to %d", tc.ct, n, tc.limit)
		}
	}
	// Exactly at the limit is fine; a JSON value that decodes over it is not.
	want(t, e.do("PUT", k1, bytes.Repeat([]byte("v"), maxV)), http.StatusCreated)
	big := fmt.Sprintf(`{"value":%q}`, strings.Repeat("v", maxV+1))
	wantError(t, e.do("PUT", k1, big, "Content-Type", "application/json"), 413, kv.CodeTooLarge,
		fmt.Sprintf("value is %d bytes, limit is %d", maxV+1, maxV))

	// The store still serves.
	want(t, e.do("PUT", k1, "small"), http.StatusOK)
	if got := e.do("GET", k1, nil).Body.String(); got != "small" {
		t.Fatalf("got %q, want small", got)
	}
}

func TestOverRealServer(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)

	// The 413 arrives although the client never sends the gigabyte it
	// announced: the server does not wait for the body.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", k1, 1<<30)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}

	// Percent-encoded keys survive the real request parser.
	req, _ := http.NewRequest("PUT", srv.URL+"/v1/namespaces/default/keys/a%2Fb%20c", strings.NewReader("ok"))
	if resp, err = srv.Client().Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = srv.Client().Get(srv.URL + "/v1/namespaces/default/keys/a%2Fb%20c?format=json")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(got), `"key":"a/b c","value":"ok"`) {
		t.Fatalf("GET: %d %s", resp.StatusCode, got)
	}
}

func TestListPagination(t *testing.T) {
	e := newEnv(t)
	var all []string
	for i := range 53 {
		k := fmt.Sprintf("user:%03d", i)
		all = append(all, k)
		want(t, e.do("PUT", "/v1/namespaces/default/keys/"+k, "v"+k), http.StatusCreated)
	}
	for _, k := range []string{"a", "zz", "user"} {
		want(t, e.do("PUT", "/v1/namespaces/default/keys/"+k, "x"), http.StatusCreated)
	}
	want(t, e.do("PUT", "/v1/namespaces/other/keys/user:999", "x"), http.StatusCreated)

	for _, limit := range []int{1, 7, 53, 100} {
		var got []string
		cursor, pages := "", 0
		for {
			w := e.do("GET", fmt.Sprintf("/v1/namespaces/default/keys?prefix=user:&limit=%d&cursor=%s", limit, cursor), nil)
			want(t, w, http.StatusOK)
			page := decode[listJSON](t, w)
			if len(page.Keys) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(page.Keys))
			}
			got = append(got, page.Keys...)
			pages++
			if cursor = page.Cursor; cursor == "" {
				break
			}
			if pages > 100 {
				t.Fatalf("limit %d: no end after %d pages", limit, pages)
			}
		}
		if !slices.Equal(got, all) {
			t.Fatalf("limit %d: listed %d keys %q, want %d", limit, len(got), got, len(all))
		}
	}

	// values=true carries values and metadata.
	w := e.do("GET", "/v1/namespaces/default/keys?prefix=user:00&limit=3&values=true", nil)
	page := decode[listValuesJSON](t, w)
	if len(page.Entries) != 3 || page.Cursor == "" {
		t.Fatalf("page %s", w.Body.String())
	}
	for i, en := range page.Entries {
		if k := fmt.Sprintf("user:%03d", i); *en.Key != k || *en.Value != "v"+k || en.Version == 0 || en.Namespace != "" {
			t.Fatalf("entry %d: %+v", i, en)
		}
	}
	// The default page is 100 keys.
	if got := decode[listJSON](t, e.do("GET", "/v1/namespaces/default/keys", nil)); len(got.Keys) != 56 || got.Cursor != "" {
		t.Fatalf("default listing: %d keys, cursor %q", len(got.Keys), got.Cursor)
	}
	// An empty namespace lists as an empty array, not null.
	if got := e.do("GET", "/v1/namespaces/nothing/keys", nil).Body.String(); got != `{"namespace":"nothing","keys":[],"cursor":""}`+"\n" {
		t.Fatalf("empty listing %s", got)
	}
}

func TestListBinaryAndEmptyKeys(t *testing.T) {
	e := newEnv(t)
	// Binary keys come from RESP; write one straight into the store.
	bin := []byte{0xff, 0x00}
	if _, err := e.store.Apply(context.Background(), kv.Batch{Ops: []kv.Op{
		{Kind: kv.OpSet, Namespace: "default", Key: bin, Value: []byte{0xfe}},
		{Kind: kv.OpSet, Namespace: "default", Key: []byte{}, Value: []byte("empty")},
		{Kind: kv.OpSet, Namespace: "default", Key: []byte("b"), Value: []byte("b")},
	}}); err != nil {
		t.Fatal(err)
	}
	got := decode[listJSON](t, e.do("GET", "/v1/namespaces/default/keys", nil))
	if !slices.Equal(got.Keys, []string{"", "b"}) || !slices.Equal(got.KeysBase64, []string{"/wA="}) {
		t.Fatalf("listing %+v", got)
	}
	vals := decode[listValuesJSON](t, e.do("GET", "/v1/namespaces/default/keys?values=1", nil))
	if last := vals.Entries[2]; last.KeyBase64 != "/wA=" || last.ValueBase64 != "/g==" || last.Key != nil {
		t.Fatalf("binary entry %+v", last)
	}
	// A cursor resuming after the empty key is not the empty string, which
	// would mean "done".
	after := encodeCursor([]byte{})
	if after == "" {
		t.Fatal("cursor after the empty key is empty")
	}
	if k, err := decodeCursor(after); err != nil || k == nil || len(k) != 0 {
		t.Fatalf("decodeCursor(%q) = %q, %v; want the empty key", after, k, err)
	}
	page := decode[listJSON](t, e.do("GET", "/v1/namespaces/default/keys?limit=1&cursor="+after, nil))
	if !slices.Equal(page.Keys, []string{"b"}) || page.Cursor == "" {
		t.Fatalf("page after the empty key: %+v", page)
	}
	page = decode[listJSON](t, e.do("GET", "/v1/namespaces/default/keys?limit=1&cursor="+page.Cursor, nil))
	if len(page.Keys) != 0 || !slices.Equal(page.KeysBase64, []string{"/wA="}) || page.Cursor != "" {
		t.Fatalf("last page: %+v", page)
	}
}

func TestNamespaces(t *testing.T) {
	e := newEnv(t)
	want(t, e.do("PUT", "/v1/namespaces/zeta/keys/a", "1"), http.StatusCreated)
	want(t, e.do("PUT", "/v1/namespaces/alpha/keys/a?ttl=1h", "1"), http.StatusCreated)
	want(t, e.do("PUT", "/v1/namespaces/alpha/keys/b", "1"), http.StatusCreated)
	w := e.do("GET", "/v1/namespaces", nil)
	want(t, w, http.StatusOK)
	got := decode[struct{ Namespaces []namespaceJSON }](t, w).Namespaces
	wantNS := []namespaceJSON{{Name: "alpha", Keys: 2, Expires: 1}, {Name: "zeta", Keys: 1}}
	if !reflect.DeepEqual(got, wantNS) {
		t.Fatalf("namespaces %+v, want %+v", got, wantNS)
	}
	// A lone node has no namespace administration.
	wantError(t, e.do("PUT", "/v1/namespaces/new", `{"shards":4}`), http.StatusForbidden, kv.CodeDisabled, "this node runs alone: namespaces need no creating (they exist with their first key) and have no policy")
	wantError(t, e.do("GET", "/v1/namespaces/alpha", nil), http.StatusForbidden, kv.CodeDisabled, "")
}

func TestProbesAndMetrics(t *testing.T) {
	var notReady atomic.Pointer[error]
	e := newEnv(t, func(o *Options) {
		o.Ready = func() error {
			if p := notReady.Load(); p != nil {
				return *p
			}
			return nil
		}
	})
	w := e.do("GET", "/healthz", nil)
	want(t, w, http.StatusOK)
	if w.Body.String() != "ok\n" || w.Header().Get("Server") != "fulcrum/test" {
		t.Fatalf("healthz %q, Server %q", w.Body.String(), w.Header().Get("Server"))
	}
	want(t, e.do("GET", "/readyz", nil), http.StatusOK)
	errDraining := errors.New("draining")
	notReady.Store(&errDraining)
	w = e.do("GET", "/readyz", nil)
	wantError(t, w, 503, kv.CodeUnavailable, "not ready: draining")
	if w.Header().Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q, want 1", w.Header().Get("Retry-After"))
	}
	notReady.Store(nil)
	want(t, e.do("GET", "/readyz", nil), http.StatusOK)

	want(t, e.do("PUT", k1, "12345"), http.StatusCreated)
	want(t, e.do("GET", k1, nil), http.StatusOK)
	want(t, e.do("GET", "/v1/namespaces/default/keys/missing", nil), http.StatusNotFound)
	w = e.do("GET", "/metrics", nil)
	want(t, w, http.StatusOK)
	body := w.Body.String()
	for _, line := range []string{
		`fulcrum_requests_total{command="put_key",proto="http",result="ok"} 1`,
		`fulcrum_requests_total{command="get_key",proto="http",result="ok"} 1`,
		`fulcrum_requests_total{command="get_key",proto="http",result="NOT_FOUND"} 1`,
		`fulcrum_requests_total{command="readyz",proto="http",result="UNAVAILABLE"} 1`,
		`fulcrum_request_duration_seconds_count{command="put_key",proto="http"} 1`,
		`fulcrum_bytes_in_total{proto="http"} 5`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if !strings.Contains(body, `fulcrum_bytes_out_total{proto="http"}`) {
		t.Errorf("/metrics lacks fulcrum_bytes_out_total")
	}
}

func TestRoutingErrors(t *testing.T) {
	e := newEnv(t)
	w := e.do("POST", k1, "v")
	wantError(t, w, 405, kv.CodeInvalid, "method POST not allowed on /v1/namespaces/default/keys/k1 (allowed: GET, HEAD, PUT, DELETE)")
	if got := w.Header().Get("Allow"); got != "GET, HEAD, PUT, DELETE" {
		t.Fatalf("Allow %q", got)
	}
	w = e.do("DELETE", "/v1/namespaces", nil)
	wantError(t, w, 405, kv.CodeInvalid, "")
	if got := w.Header().Get("Allow"); got != "GET, HEAD" {
		t.Fatalf("Allow %q", got)
	}
	for _, p := range []string{"/", "/v2/x", "/v1/namespaces/default/nope", "/debug/pprof/"} {
		wantError(t, e.do("GET", p, nil), 404, kv.CodeNotFound, "no route for GET "+p)
	}
	if got := testutilCount(t, e, `fulcrum_requests_total{command="unmatched",proto="http",result="NOT_FOUND"} 4`); !got {
		t.Fatal("unmatched requests not counted")
	}
}

func testutilCount(t *testing.T, e *env, line string) bool {
	t.Helper()
	return strings.Contains(e.do("GET", "/metrics", nil).Body.String(), line+"\n")
}

func TestPprof(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.EnablePprof = true })
	w := e.do("GET", "/debug/pprof/", nil)
	want(t, w, http.StatusOK)
	want(t, e.do("GET", "/debug/pprof/goroutine?debug=1", nil), http.StatusOK)
	want(t, e.do("GET", "/debug/pprof/cmdline", nil), http.StatusOK)
}

// faultyStore fails on demand: a fake around the real store to show how
// store errors reach the client.
type faultyStore struct {
	*storage.Store
	mu       sync.Mutex
	batchErr error // whole-batch error from Apply
	opErr    error // per-op Result.Err
	getErr   error
}

func (f *faultyStore) Apply(ctx context.Context, b kv.Batch) ([]kv.Result, error) {
	f.mu.Lock()
	batchErr, opErr := f.batchErr, f.opErr
	f.mu.Unlock()
	if batchErr != nil {
		return nil, batchErr
	}
	if opErr != nil {
		return []kv.Result{{Err: opErr}}, nil
	}
	return f.Store.Apply(ctx, b)
}

func (f *faultyStore) Get(ctx context.Context, ns string, key []byte) (kv.Value, bool, error) {
	f.mu.Lock()
	err := f.getErr
	f.mu.Unlock()
	if err != nil {
		return kv.Value{}, false, err
	}
	return f.Store.Get(ctx, ns, key)
}

func (f *faultyStore) set(batchErr, opErr, getErr error) {
	f.mu.Lock()
	f.batchErr, f.opErr, f.getErr = batchErr, opErr, getErr
	f.mu.Unlock()
}

func TestStoreErrorsSurface(t *testing.T) {
	var fs *faultyStore
	var logs bytes.Buffer
	var logMu sync.Mutex
	e := newEnv(t, func(o *Options) {
		fs = &faultyStore{Store: o.Store.(*storage.Store)}
		o.Store = fs
		o.Logger = slogTo(&logs, &logMu)
	})
	for _, tc := range []struct {
		batchErr, opErr, getErr error
		method                  string
		status                  int
		code                    kv.Code
		msg                     string
	}{
		{opErr: kv.Errorf(kv.CodeTooLarge, "value is 9 bytes, limit is 8"), method: "PUT", status: 413, code: kv.CodeTooLarge, msg: "value is 9 bytes, limit is 8"},
		{opErr: kv.ErrWrongType, method: "DELETE", status: 400, code: kv.CodeWrongType, msg: "WRONGTYPE"},
		{batchErr: storage.ErrClosed, method: "PUT", status: 503, code: kv.CodeUnavailable, msg: "storage is closed"},
		{batchErr: fmt.Errorf("apply: %w", context.DeadlineExceeded), method: "PUT", status: 504, code: kv.CodeTimeout, msg: "apply: context deadline exceeded"},
		{getErr: kv.Errorf(kv.CodeNotLeader, "ask node 2"), method: "GET", status: 503, code: kv.CodeNotLeader, msg: "ask node 2"},
		{getErr: errors.New("disk on fire"), method: "GET", status: 500, code: kv.CodeInternal, msg: "disk on fire"},
	} {
		fs.set(tc.batchErr, tc.opErr, tc.getErr)
		w := e.do(tc.method, k1, "v")
		wantError(t, w, tc.status, tc.code, tc.msg)
		if ra := w.Header().Get("Retry-After"); (tc.status == 503) != (ra == "1") {
			t.Fatalf("%d: Retry-After %q", tc.status, ra)
		}
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "disk on fire") {
		t.Fatalf("internal error not logged: %q", logs.String())
	}
}

// lockedWriter serializes log writes into a buffer the test reads.
type lockedWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func slogTo(buf *bytes.Buffer, mu *sync.Mutex) *slog.Logger {
	return slog.New(slog.NewTextHandler(lockedWriter{mu: mu, buf: buf}, nil))
}

func TestTimeoutHeader(t *testing.T) {
	e := newEnv(t)
	want(t, e.do("PUT", k1, "v", TimeoutHeader, "250ms"), http.StatusCreated)
	want(t, e.do("GET", k1, nil, TimeoutHeader, "2s"), http.StatusOK)
	for _, bad := range []string{"soon", "0s", "-1s", "1h"} {
		wantError(t, e.do("GET", k1, nil, TimeoutHeader, bad), 400, kv.CodeInvalid, TimeoutHeader+`: "`+bad+`" is not a duration from 1ms to 5m`)
	}
}
